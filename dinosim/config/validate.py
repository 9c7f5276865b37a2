"""Check keys and coerce values against the schema read from the consuming code.

Rules: an int is accepted where a float is expected; a float with an integral value (``2048.0``) is accepted where an
int is expected and becomes an int; anything else of the wrong type, a non-finite number, or an unknown key is an
error with a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

from dinosim.config.schema import KeySpec
from dinosim.errors import ConfigError

_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true/false", "str": "a string",
               "list": "a list", "dict": "a table", "none": "None"}


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key(where: str, name: str, choices: Iterable[str]) -> ConfigError:
    return ConfigError(f"unknown key {name!r} in {where}{did_you_mean(name, choices)}")


def coerce(where: str, spec: KeySpec, value: Any) -> Any:  # noqa: C901 - one flat case per TOML type
    """Return ``value`` converted to a type ``spec`` admits, or raise ConfigError naming ``where``."""
    types = spec.types
    if value is None:
        if "none" in types:
            return None
        raise _wrong(where, spec, value)
    if isinstance(value, bool):
        if "bool" in types:
            return value
        raise _wrong(where, spec, value)
    if isinstance(value, int):
        if "int" in types:
            return value
        if "float" in types:
            return float(value)
        raise _wrong(where, spec, value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r} is not a finite number")
        if "float" in types:
            return value
        if "int" in types:
            if value.is_integer():
                return int(value)
            raise ConfigError(f"{where} = {value!r} must be an integer")
        raise _wrong(where, spec, value)
    if isinstance(value, str):
        if "str" in types:
            return value
        raise _wrong(where, spec, value)
    if isinstance(value, (list, tuple)):
        if "list" in types:
            return [_check_plain(f"{where}[{i}]", v) for i, v in enumerate(value)]
        raise _wrong(where, spec, value)
    if isinstance(value, dict):
        if "dict" in types:
            return coerce_table(where, spec, value)
        raise _wrong(where, spec, value)
    raise _wrong(where, spec, value)


def coerce_table(where: str, spec: KeySpec, table: dict) -> dict:
    """Check a dict value; when ``spec.children`` is known, its keys are validated one by one."""
    out = {}
    for key, value in table.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where} has a non-string key {key!r}")
        if spec.children is None or value is None:  # None removes the key when the table is stored
            out[key] = _check_plain(f"{where}.{key}", value)
            continue
        child = spec.children.get(key)
        if child is None:
            raise unknown_key(where, key, spec.children)
        out[key] = coerce(f"{where}.{key}", child, value)
    return out


def _check_plain(where: str, value: Any) -> Any:
    """Values inside free-form lists and tables: TOML-expressible, finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} = {value!r} is not a finite number")
    if isinstance(value, (list, tuple)):
        return [_check_plain(f"{where}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _check_plain(f"{where}.{k}", v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(f"{where} = {value!r} is not a TOML value")


def _wrong(where: str, spec: KeySpec, value: Any) -> ConfigError:
    expected = " or ".join(_TYPE_NAMES[t] for t in sorted(spec.types))
    return ConfigError(f"{where} = {value!r} has the wrong type: expected {expected}")
