"""Constraints that skip bad hyperparameter combinations: ``--skip-if "ppo.learning_rate > 5e-4 and ppo.n_epochs > 8"``.

A constraint is a boolean expression over dotted config keys (the override spelling: ``ppo.learning_rate``,
``stage2.ppo.learning_rate``, ``env.fall_penalty``, ``ppo.policy_kwargs.net_arch``), numbers, strings, ``True``/
``False``/``None``, lists/tuples of literals, the comparisons ``< <= > >= == != in not in``, the arithmetic
``+ - * / // % **`` and ``and``/``or``/``not``. When it evaluates true, the run is skipped.

Limits (:data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` levels of nesting, integers of :data:`MAX_INT_BITS` bits,
sequences of :data:`MAX_SEQUENCE` items) keep checking cheap; beyond them the error is one line.

The text is parsed with :func:`ast.parse` in ``eval`` mode and the tree is walked with a whitelist of node types; it is
never passed to :func:`eval`. Anything else (calls, subscripts, lambdas, comprehensions, attribute access on
non-names, ...) is rejected by :func:`parse_constraint` with a :class:`ConstraintError`.

Where constraints are enforced:

* the training program: :func:`enforce_skip_if` is called by ``dinosim train``/``curriculum --skip-if EXPR`` (so runs
  started by ``wandb agent`` obey them: the run ends at once with exit code 0 and is marked skipped);
* the offline engine (``dinosim sweep run``) evaluates them on the sampled parameters before starting a trial, when
  every key they name is a sweep parameter; otherwise the trial's program decides and reports the skip through the
  ``DINOSIM_TRIAL_METRICS`` file (``{"skipped": true, "reason": ...}``).
"""

from __future__ import annotations

import ast
import json
import math
import operator
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from dinosim.errors import ConfigError

if TYPE_CHECKING:
    from dinosim.config.resolve import RunConfig


class ConstraintError(ConfigError):
    """A constraint that does not parse, names an unknown key, or compares values of incompatible types."""


# Limits that keep a constraint cheap to check: a run's config is a few hundred small values, so no sensible
# constraint comes near them, while `a ** 10 ** 10` or ten thousand nested parentheses would hang or crash.
MAX_LENGTH = 1000  # characters
MAX_DEPTH = 50  # levels of nested sub-expressions
MAX_INT_BITS = 1024  # integers computed on the way (about 308 decimal digits)
MAX_SEQUENCE = 10_000  # items of a list/string built by `*` or `+`


def _depth(tree: ast.AST) -> int:
    """Nesting depth of ``tree``, counted without recursion (the tree may be deeper than Python's stack)."""
    deepest, todo = 0, [(tree, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _bounded_binary(op: type, left: Any, right: Any) -> Any:
    """``left <op> right`` unless its result would exceed the magnitude limits (checked before computing it)."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if op is ast.Pow and is_int(left) and is_int(right) and right > 0:
        if abs(left) > 1 and right * math.log2(abs(left)) > MAX_INT_BITS:
            raise OverflowError(f"{left} ** {right} is too large (limit {MAX_INT_BITS} bits)")
    if op is ast.Mult and isinstance(left, (str, list, tuple)) != isinstance(right, (str, list, tuple)):
        count, seq = (right, left) if isinstance(left, (str, list, tuple)) else (left, right)
        if isinstance(count, int) and count * max(len(seq), 1) > MAX_SEQUENCE:
            raise OverflowError(f"a sequence of more than {MAX_SEQUENCE} items")
    result = _BINARY[op](left, right)
    if is_int(result) and result.bit_length() > MAX_INT_BITS:
        raise OverflowError(f"an intermediate integer exceeds {MAX_INT_BITS} bits")
    if isinstance(result, (str, list, tuple)) and len(result) > MAX_SEQUENCE:
        raise OverflowError(f"a sequence of more than {MAX_SEQUENCE} items")
    return result


_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}


def _dotted_name(node: ast.AST) -> Optional[str]:
    """``a.b.c`` for a chain of Attribute nodes ending in a Name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _check(node: ast.AST, text: str) -> set[str]:
    """Validate ``node`` against the whitelist; return the config keys it references."""
    if isinstance(node, ast.Expression):
        return _check(node.body, text)
    if isinstance(node, ast.BoolOp) and isinstance(node.op, (ast.And, ast.Or)):
        return set().union(*(_check(v, text) for v in node.values))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(node.operand, text)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _check(node.left, text) | _check(node.right, text)
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        return _check(node.left, text).union(*(_check(c, text) for c in node.comparators))
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return set()
    if isinstance(node, (ast.List, ast.Tuple)) and isinstance(node.ctx, ast.Load):
        return set().union(*(_check(e, text) for e in node.elts)) if node.elts else set()
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted_name(node)
        if name is None:
            raise ConstraintError(
                f"constraint {text!r}: only dotted config keys may be used, got {ast.unparse(node)!r}")
        if name in ("True", "False", "None"):
            return set()
        return {name}
    raise ConstraintError(f"constraint {text!r}: {type(node).__name__} ({ast.unparse(node)!r}) is not allowed")


@dataclass(frozen=True)
class Constraint:
    """A parsed ``--skip-if`` expression. ``evaluate`` returns True when the configuration must be skipped."""

    text: str
    tree: ast.Expression
    keys: frozenset[str]

    def evaluate(self, flat_config: Mapping[str, Any]) -> bool:
        """Truth value of the expression over ``flat_config`` (keys in override spelling).

        Raises ConstraintError if a referenced key is missing or an operation fails on the given values.
        """
        missing = sorted(k for k in self.keys if k not in flat_config)
        if missing:
            raise ConstraintError(f"constraint {self.text!r}: unknown config key(s) {', '.join(missing)}")
        try:
            return bool(self._eval(self.tree.body, flat_config))
        except (TypeError, ZeroDivisionError, OverflowError, ValueError, RecursionError, MemoryError) as exc:
            raise ConstraintError(f"constraint {self.text!r}: {exc}") from None

    def evaluate_partial(self, values: Mapping[str, Any]) -> Optional[bool]:
        """Like :meth:`evaluate`, but None (undecided) when ``values`` lacks a referenced key."""
        if not self.keys.issubset(values):
            return None
        return self.evaluate(values)

    def _eval(self, node: ast.AST, env: Mapping[str, Any]) -> Any:  # noqa: C901 - one case per node type
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                result: Any = True
                for v in node.values:
                    result = self._eval(v, env)
                    if not result:
                        return result
                return result
            result = False
            for v in node.values:
                result = self._eval(v, env)
                if result:
                    return result
            return result
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, env))
        if isinstance(node, ast.BinOp):
            return _bounded_binary(type(node.op), self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(comp, env)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List):
            return [self._eval(e, env) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self._eval(e, env) for e in node.elts)
        name = _dotted_name(node)
        if name == "True":
            return True
        if name == "False":
            return False
        if name == "None":
            return None
        value = env[name]  # type: ignore[index]
        return list(value) if isinstance(value, tuple) else value


def parse_constraint(text: str) -> Constraint:
    """Parse one ``--skip-if`` expression; ConstraintError (exit 2 in the CLI) when it is not a valid constraint or
    exceeds the limits (:data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` levels of nesting)."""
    if not isinstance(text, str) or not text.strip():
        raise ConstraintError("constraint: empty expression")
    if len(text) > MAX_LENGTH:
        raise ConstraintError(f"constraint {text[:40]!r}...: {len(text)} characters; the limit is {MAX_LENGTH}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConstraintError(f"constraint {text!r}: syntax error at column {exc.offset}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ConstraintError(f"constraint {text[:40]!r}...: nested too deeply (limit {MAX_DEPTH})") from None
    if _depth(tree) > MAX_DEPTH:
        raise ConstraintError(f"constraint {text[:40]!r}...: nested too deeply (limit {MAX_DEPTH})")
    keys = _check(tree, text)
    return Constraint(text=text.strip(), tree=tree, keys=frozenset(keys))


def _as_flat(config: Any) -> Mapping[str, Any]:
    """A flat mapping as is; a RunConfig flattened with :func:`dinosim.config.flatten.flatten_config`."""
    if isinstance(config, Mapping):
        return config
    from dinosim.config.flatten import flatten_config

    return flatten_config(config)


def first_violated(
    expressions: Sequence["str | Constraint"], config: "RunConfig | Mapping[str, Any]"
) -> Optional[Constraint]:
    """Pure check: the first constraint that holds for ``config`` (the run must be skipped), else None.

    ``expressions`` are strings (parsed here) or Constraints; ``config`` is a RunConfig or an already flat mapping.
    Raises ConstraintError for an expression that does not parse or names a key the config does not have.
    """
    constraints = [e if isinstance(e, Constraint) else parse_constraint(e) for e in expressions]
    if not constraints:
        return None
    flat = _as_flat(config)
    for c in constraints:
        if c.evaluate(flat):
            return c
    return None


SKIP_MARKER_KEY = "skipped"


def write_skip_marker(reason: str, path: Optional[str] = None) -> None:
    """Append ``{"skipped": true, "reason": ...}`` to the trial metrics file (``DINOSIM_TRIAL_METRICS``) if set."""
    target = path or os.environ.get("DINOSIM_TRIAL_METRICS")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({SKIP_MARKER_KEY: True, "reason": reason}) + "\n")


def enforce_skip_if(expressions: Sequence[str], run_config: "RunConfig") -> Optional[str]:
    """The training program's ``--skip-if`` check (not for ``--dry-run``): call it after the config is resolved.

    Returns None when the run may go on. When a constraint holds it returns the reason (``skip-if: <expr>``) after
    recording the skip: a marker line in ``DINOSIM_TRIAL_METRICS`` (offline engine) and, under ``wandb agent``, a
    short W&B run tagged ``skipped`` (offline when W&B is unreachable). The caller then prints
    ``skipped: <reason>`` and exits 0. Raises ConstraintError like :func:`first_violated`.
    """
    from dinosim.config.flatten import flatten_config

    if not expressions:
        return None
    flat = flatten_config(run_config)
    hit = first_violated(expressions, flat)
    if hit is None:
        return None
    reason = f"skip-if: {hit.text}"
    write_skip_marker(reason)
    from dinosim.tracking.wandb_run import mark_skipped_under_agent, wandb_enabled_from_env

    if wandb_enabled_from_env():
        mark_skipped_under_agent(flat, reason)
    return reason
