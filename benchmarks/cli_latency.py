"""Median wall time of `--help`, `--dry-run` and a config error, each run several times in fresh processes.

Usage: python benchmarks/cli_latency.py [--repeats N]
Goal: each under 0.5 s on the 2-core dev machine (no torch / SB3 / wandb import on these paths).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = str(Path(__file__).resolve().parent.parent / "scripts" / "train_sb3.py")
CASES = {
    "--help": ["--help"],
    "train --help": ["train", "--help"],
    "curriculum --dry-run": ["curriculum", "--dry-run"],
    "curriculum --species trex --dry-run (overrides)": [
        "curriculum", "--species", "trex", "--override", "1.ppo.learning_rate=3e-4", "2.ppo.learning_rate=1e-4",
        "--dry-run"],
    "config error (unknown key)": ["train", "--stage", "1", "--override", "ppo.learnin_rate=1"],
    "python -c pass (interpreter floor)": None,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'case':50s} {'median s':>9s} {'min s':>7s}")
    for name, cli_args in CASES.items():
        command = [sys.executable, "-c", "pass"] if cli_args is None else [sys.executable, SCRIPT, *cli_args]
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=False)
            times.append(time.perf_counter() - start)
        print(f"{name:50s} {statistics.median(times):9.3f} {min(times):7.3f}")


if __name__ == "__main__":
    main()
