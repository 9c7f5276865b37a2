"""The override grammar: ``[N.|stageN.]section.key[.subkey...]=value``.

- ``section.key=value`` applies to every stage; ``2.section.key=value`` and ``stage2.section.key=value`` to stage 2.
- A stage-scoped value wins over a global one whatever the order; among equals the last one wins
  (see :func:`ordered_for_application`).
- Values are parsed by :func:`dinosim.config.values.parse_value`.
- On the command line, ``--override a=1 b=2``, repeated ``--override``, and ``--section.key=value`` options
  (W&B's default ``${args}`` rendering) are all overrides (see :func:`extract_override_tokens`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from dinosim.config.values import parse_value
from dinosim.errors import ConfigError

_KEY = re.compile(r"^(?:(?:stage)?(?P<stage>\d+)\.)?(?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)$")


@dataclass(frozen=True)
class Override:
    """One parsed override: stage (None = every stage), section, key path inside the section, and value."""

    stage: Optional[int]
    section: str
    path: tuple[str, ...]
    value: Any
    raw: str

    @property
    def dotted(self) -> str:
        """The key without stage prefix, e.g. ``ppo.policy_kwargs.net_arch``."""
        return ".".join((self.section,) + self.path)


def parse_override(text: str) -> Override:
    """Parse one ``key=value`` string. Raises ConfigError naming the malformed override."""
    if "=" not in text:
        raise ConfigError(f"malformed override {text!r}: expected section.key=value")
    key, _, value_text = text.partition("=")
    key = key.strip()
    match = _KEY.match(key)
    if match is None:
        raise ConfigError(
            f"malformed override key {key!r} in {text!r}: expected section.key, N.section.key or stageN.section.key"
        )
    if value_text.strip() == "":
        raise ConfigError(f"override {text!r} has no value")
    section, *path = match.group("path").split(".")
    stage = int(match.group("stage")) if match.group("stage") is not None else None
    return Override(stage, section, tuple(path), parse_value(value_text), text)


RUN_KEYS = ("seed",)
"""Run-wide settings that may be given as a bare ``key=value`` override (as ``${args_no_hyphens}`` renders a
``seed`` sweep parameter); they set the command's option of the same name."""


def split_run_overrides(texts: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Take ``seed=N`` out of the override strings: (run settings, remaining overrides). Last one wins."""
    run: dict[str, int] = {}
    rest: list[str] = []
    for text in texts:
        key, sep, value = text.partition("=")
        if sep and key.strip() in RUN_KEYS:
            parsed = parse_value(value)
            if isinstance(parsed, float) and parsed.is_integer():
                parsed = int(parsed)
            if isinstance(parsed, bool) or not isinstance(parsed, int):
                raise ConfigError(f"override {text!r}: {key.strip()} must be an integer")
            run[key.strip()] = parsed
        else:
            rest.append(text)
    return run, rest


def parse_overrides(texts: Sequence[str]) -> list[Override]:
    """Parse override strings in the order given."""
    return [parse_override(t) for t in texts]


def ordered_for_application(overrides: Sequence[Override]) -> list[Override]:
    """Global overrides first, then stage-scoped ones, each group in the order given: applying them in this
    order makes stage-scoped values win over global ones, and the last of equals win."""
    return [o for o in overrides if o.stage is None] + [o for o in overrides if o.stage is not None]


def extract_override_tokens(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split a command line into (override strings in order, remaining args for click).

    Recognised: ``--override K=V [K=V ...]``, ``-o K=V``, ``--override=K=V`` and ``--section.key=value``.
    Raises ConfigError for ``--override`` without a value and for ``--section.key`` without ``=value``.
    """
    overrides: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in ("--override", "-o"):
            j = i + 1
            while j < len(args) and not args[j].startswith("-"):
                overrides.append(args[j])
                j += 1
            if j == i + 1:
                raise ConfigError(f"{arg} needs at least one section.key=value")
            i = j
            continue
        if arg.startswith("--override="):
            overrides.append(arg[len("--override="):])
        elif arg.startswith("--") and "." in arg.split("=", 1)[0]:
            if "=" not in arg:
                raise ConfigError(f"option-style override {arg!r} needs a value: write {arg}=VALUE")
            overrides.append(arg[2:])
        else:
            rest.append(arg)
        i += 1
    return overrides, rest
