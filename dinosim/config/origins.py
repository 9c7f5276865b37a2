"""Where a resolved value came from, to name the culprit of a config error: the override that set it, else the
line of the stage file that holds it (standard library only)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dinosim.config.overrides import Override


def line_of(path: Path, key: str) -> str:
    """``<path>:<line>`` of the first line that sets ``key`` or opens a table ``[key...]``; else ``<path>``."""
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.match(rf"\s*({re.escape(key)}\s*=|\[\s*{re.escape(key)}\s*[.\]])", line):
                return f"{path}:{number}"
    except OSError:
        pass
    return str(path)


@dataclass
class Origins:
    """Where a stage's values came from, to name the culprit of a problem: the override that set a key, else the
    line of the stage file that holds it, else nothing (a default or a combination)."""

    path: Optional[Path]  # None: the stage file is not known (a RunConfig read back from run.json or built in code)
    overrides: list[Override]

    def of(self, keys: str) -> str:
        """``override '...': ``, ``<file>:<line>: `` or an empty string for ``keys`` (``a.b`` or ``a.b|c.d``)."""
        for dotted in keys.split("|"):
            for override in reversed(self.overrides):
                mine = override.dotted
                if mine == dotted or dotted.startswith(mine + ".") or mine.startswith(dotted + "."):
                    return f"override {override.raw!r}: "
        section, _, rest = keys.split("|")[0].partition(".")
        if rest and self.path is not None:
            line = line_of(self.path, rest.split(".")[-1])
            if line != str(self.path):
                return f"{line}: "
        return ""
