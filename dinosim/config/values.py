"""Parse override values: TOML literals, then Python literals as `wandb agent` renders them, else a plain string.

Parsing uses ``tomllib`` (via :mod:`dinosim.config.loader`) and ``ast.literal_eval`` only, never ``eval``.
"""

from __future__ import annotations

import ast
from typing import Any

from dinosim.config.loader import TOMLDecodeError, loads_toml


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"2e-4"`` -> 2e-4, ``"true"``/``"True"`` -> True, ``"[256, 256]"`` -> [256, 256],
    ``"{'a': 1}"`` -> {"a": 1}, ``"None"`` -> None, ``"auto"`` -> "auto". Tuples become lists."""
    stripped = text.strip()
    if "\n" not in stripped:
        try:
            return _lists(loads_toml(f"v = {stripped}")["v"])
        except TOMLDecodeError:
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
