#!/usr/bin/env python
"""Train dinosaurs with Stable-Baselines3: the `dinosim` CLI (see `--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from dinosim.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
