"""Value rules: small declarative checks that a config value must pass (standard library only).

Each consumer owns a table ``{key: Rule}`` (:mod:`dinosim.config.env_rules` for the env constructors,
:mod:`dinosim.config.algo_rules` for the SB3 constructors, :mod:`dinosim.config.curriculum_rules` for
``CurriculumSettings``); the dry run, the real run and the env constructors all call the same tables. A rule's
:meth:`Rule.problem` returns ``None`` for a good value or the reason it is bad (``"must be in (0, 1]"``);
:func:`table_problems` turns a table into ``(dotted key, one-line message)`` pairs.

Rules see values after type coercion (:mod:`dinosim.config.validate`): ints where ints are expected, floats (an int
is accepted) where numbers are, lists for tuples. ``None`` means "unset" (the consumer's default) and always passes,
except where a rule says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

Problem = tuple[str, str]
"""(dotted key such as ``ppo.gamma``, one-line message naming the key, the value and what is allowed). A problem
of a combination names its keys joined by ``|``, the likeliest culprit first."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Rule:
    """A check of one value. Subclasses implement :meth:`problem` and :meth:`describe`."""

    def problem(self, value: Any) -> Optional[str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Number(Rule):
    """A finite number within ``[lo, hi]`` (either end open with ``lo_open``/``hi_open``, unbounded with None)."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    why: str = ""  # appended to the message, e.g. "(a penalty: the sign is in the reward)"

    def problem(self, value: Any) -> Optional[str]:
        if value is None:
            return None
        if not _is_number(value) or (self.integer and not isinstance(value, int)):
            return f"must be {'an integer' if self.integer else 'a number'} {self.describe()}".rstrip()
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        too_low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        too_high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if too_low or too_high:
            return f"must be {self.describe()}" + (f" {self.why}" if self.why else "")
        return None

    def describe(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return f"in {'(' if self.lo_open else '['}{_num(lo)}, {_num(hi)}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(lo)}"
        if hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(hi)}"
        return "(any finite number)"


def _num(x: float) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return str(int(x))
    return f"{x:g}"


@dataclass(frozen=True)
class OneOf(Rule):
    """One of a fixed set of values (strings, numbers, None)."""

    choices: tuple[Any, ...]
    what: str = ""  # e.g. "a task of velociraptor"

    def problem(self, value: Any) -> Optional[str]:
        if value in self.choices and type(value) in {type(c) for c in self.choices}:
            return None
        return f"is not {self.what or 'allowed'}: choose from {self._choices()}"

    def _choices(self) -> str:
        return ", ".join(repr(c) for c in self.choices)

    def describe(self) -> str:
        return f"one of {self._choices()}"


@dataclass(frozen=True)
class Flag(Rule):
    """true or false (or ``"auto"`` with ``auto`` set); with ``only`` set, only that value is accepted (``why``
    says why)."""

    only: Optional[bool] = None
    why: str = ""
    auto: bool = False

    def problem(self, value: Any) -> Optional[str]:
        if value is None or (self.auto and value == "auto"):
            return None
        if not isinstance(value, bool):
            return 'must be true, false or "auto"' if self.auto else "must be true or false"
        if self.only is not None and value is not self.only:
            return f"must be {str(self.only).lower()}" + (f" ({self.why})" if self.why else "")
        return None

    def describe(self) -> str:
        if self.only is not None:
            return f"{str(self.only).lower()} only"
        return 'true/false/"auto"' if self.auto else "true/false"


@dataclass(frozen=True)
class Ordered(Rule):
    """A list of ``length`` numbers, each passing ``item``, in non-decreasing order (``[min, max]`` ranges) unless
    ``increasing`` is False."""

    item: Number
    length: int = 2
    increasing: bool = True

    def problem(self, value: Any) -> Optional[str]:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or len(value) != self.length:
            return f"must be {self.describe()}"
        for v in value:
            bad = self.item.problem(v)
            if bad is not None:
                return f"has the element {v!r} that {bad}"
        if self.increasing and list(value) != sorted(value):
            return "must be in increasing order (min <= max)"
        return None

    def describe(self) -> str:
        if not self.increasing:
            return f"a list of {self.length} numbers, each {self.item.describe()}"
        return f"[min, max], each {self.item.describe()}, min <= max"


@dataclass(frozen=True)
class LayerSizes(Rule):
    """A network architecture: a list of 1..``max_layers`` layer widths in [1, ``max_width``], or (``keys``
    given) a table of such lists, e.g. ``{pi = [64, 64], vf = [64, 64]}``. Larger networks are refused because
    they do not fit a CPU training run (and take minutes to build)."""

    keys: tuple[str, ...] = ()
    max_width: int = 1024
    max_layers: int = 8

    def _list_problem(self, value: Any) -> Optional[str]:
        if not isinstance(value, (list, tuple)) or len(value) > self.max_layers:
            return f"must be a list of at most {self.max_layers} layer widths"
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= self.max_width:
                return f"has the layer width {v!r}: widths are integers in [1, {self.max_width}]"
        return None

    def problem(self, value: Any) -> Optional[str]:
        if value is None:
            return None
        if isinstance(value, dict) and self.keys:
            unknown = sorted(set(value) - set(self.keys))
            if unknown:
                return f"has the key(s) {', '.join(map(repr, unknown))}: a table takes {', '.join(self.keys)}"
            for key, sizes in value.items():
                bad = self._list_problem(sizes)
                if bad is not None:
                    return f"[{key!r}] {bad}"
            return None
        return self._list_problem(value)

    def describe(self) -> str:
        table = f" or a table of such lists ({', '.join(self.keys)})" if self.keys else ""
        return f"a list of 1-{self.max_layers} layer widths in [1, {self.max_width}]{table}"


@dataclass(frozen=True)
class Table(Rule):
    """A free-form table whose keys the consumer fixes: only ``rules``' keys, each passing its rule."""

    rules: Mapping[str, Rule] = field(default_factory=dict)
    why: str = ""

    def problem(self, value: Any) -> Optional[str]:
        if value is None:
            return None
        if not isinstance(value, dict):
            return "must be a table"
        for key, item in value.items():
            rule = self.rules.get(key)
            if rule is None:
                allowed = f"allowed: {', '.join(self.rules)}" if self.rules else "it takes no keys"
                why = f"; {self.why}" if self.why else ""
                return f"has the key {key!r}, which its consumer does not take ({allowed}{why})"
            bad = rule.problem(item)
            if bad is not None:
                return f"[{key!r}] = {item!r} {bad}"
        return None

    def describe(self) -> str:
        return "a table of " + (", ".join(self.rules) if self.rules else "no keys")


@dataclass(frozen=True)
class Unsettable(Rule):
    """A key the constructor accepts but dinosim sets itself (a value here would clash or be ignored)."""

    why: str

    def problem(self, value: Any) -> Optional[str]:
        return None if value is None else f"cannot be set here: {self.why}"

    def describe(self) -> str:
        return f"not settable ({self.why})"


@dataclass(frozen=True)
class AnyOf(Rule):
    """Passes when one of ``rules`` passes; the message lists what each would accept."""

    rules: Sequence[Rule]

    def problem(self, value: Any) -> Optional[str]:
        if value is None or any(r.problem(value) is None for r in self.rules):
            return None
        return f"must be {self.describe()}"

    def describe(self) -> str:
        return " or ".join(r.describe() for r in self.rules)


def message(dotted: str, value: Any, reason: str) -> str:
    """``ppo.gamma = 1.5 must be in (0, 1]``."""
    return f"{dotted} = {value!r} {reason}"


def table_problems(section: str, rules: Mapping[str, Rule], values: Mapping[str, Any]) -> list[Problem]:
    """Problems of every key of ``values`` that has a rule (keys without a rule are not checked here)."""
    out: list[Problem] = []
    for key, value in values.items():
        rule = rules.get(key)
        if rule is None:
            continue
        reason = rule.problem(value)
        if reason is not None:
            dotted = f"{section}.{key}"
            out.append((dotted, message(dotted, value, reason)))
    return out
