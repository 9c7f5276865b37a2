"""Parse override values: TOML literals, then Python literals as `wandb agent` renders them, else a plain string.

Parsing uses ``tomllib`` and ``ast.literal_eval`` only, never ``eval``.
"""

from __future__ import annotations

import ast
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"2e-4"`` -> 2e-4, ``"true"``/``"True"`` -> True, ``"[256, 256]"`` -> [256, 256],
    ``"{'a': 1}"`` -> {"a": 1}, ``"None"`` -> None, ``"auto"`` -> "auto". Tuples become lists."""
    stripped = text.strip()
    if "\n" not in stripped:
        try:
            return _lists(tomllib.loads(f"v = {stripped}")["v"])
        except tomllib.TOMLDecodeError:
            pass
    try:
        return _lists(ast.literal_eval(stripped))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value
