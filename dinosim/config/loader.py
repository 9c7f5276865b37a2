"""Read a stage's TOML file; syntax errors name the file and line.

This is the one module that imports ``tomllib`` (``tomli`` on Python 3.10): everything else parses TOML through
:func:`loads_toml` and catches :data:`TOMLDecodeError` from here (a test greps the package for other imports).
"""

from __future__ import annotations

import copy
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from dinosim.errors import ConfigError
from dinosim.species import CONFIGS_DIR, SPECIES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


def loads_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads`` on every supported Python (``tomli`` before 3.11). Raises :data:`TOMLDecodeError`."""
    return tomllib.loads(text)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file. Raises ConfigError ``<path>:<line>: <reason>`` on a missing file or bad syntax.

    The parse is cached per (path, modification time, size) for in-process repeats (``sweep validate`` dry-runs
    dozens of trials); callers get a fresh copy they may change."""
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None:
        return _parse_toml(path)
    return copy.deepcopy(_cached_parse(path, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=64)
def _cached_parse(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    return _parse_toml(path)


def _parse_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    try:
        return loads_toml(text)
    except TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = message[: match.start()].strip() if match else message
        where = f"{path}:{match.group(1)}:{match.group(2)}" if match else str(path)
        raise ConfigError(f"{where}: TOML syntax error: {reason}") from None


def stage_file(species: str, stage: int, config_dir: Path = CONFIGS_DIR) -> Path:
    """The committed config file of a species' stage."""
    return config_dir / species / SPECIES[species].stage_files[stage - 1]
