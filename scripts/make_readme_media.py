"""Regenerate the README's pictures from trained run folders: one GIF per species and the reward-curve plot.

    python scripts/make_readme_media.py --raptor RUN[:2,3] --trex RUN[:2,3] --brachiosaurus RUN[:2,3] \
        [--curves RUN [RUN ...]] [--out docs]

Each ``--<species> RUN[:STAGES]`` renders the given stages of that run (default: its last trained stage) into
``<out>/<species>_stage<N>.gif`` with each stage's best policy (``best/``: the evaluation with the highest lower
bound), deterministic, headless, 200 px wide, every 2nd step, at most 100 frames (8 s), so each GIF stays under
about 1 MB. ``--curves RUN ...`` draws ``dinosim plot RUN`` into ``<out>/curves_<species>.png`` for each run.
Prints each file with the rendered episodes' returns.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

SPECIES = ("velociraptor", "trex", "brachiosaurus")


def _split(spec: str) -> tuple[Path, list[int]]:
    path, _, stages = spec.partition(":")
    return Path(path), [int(s) for s in stages.split(",") if s]


def _last_stage(run_dir: Path) -> int:
    stages = sorted(int(p.name[5:]) for p in run_dir.glob("stage[0-9]") if (p / "config.toml").exists())
    if not stages:
        raise SystemExit(f"{run_dir}: no trained stage")
    return stages[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raptor", dest="velociraptor", metavar="RUN[:STAGE]")
    parser.add_argument("--trex", metavar="RUN[:STAGE]")
    parser.add_argument("--brachiosaurus", metavar="RUN[:STAGE]")
    parser.add_argument("--curves", type=Path, nargs="+", default=[], metavar="RUN",
                        help="run folders whose curves the README shows")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--episodes", type=int, default=2)
    args = parser.parse_args()

    from dinosim.tracking.render import render_best_policy
    from dinosim.training.builders import load_model

    args.out.mkdir(parents=True, exist_ok=True)
    for species in SPECIES:
        spec = getattr(args, species)
        if spec is None:
            continue
        run_dir, stages = _split(spec)
        for stage in stages or [_last_stage(run_dir)]:
            out = args.out / f"{species}_stage{stage}.gif"
            result = render_best_policy(run_dir / f"stage{stage}", out, load_model=load_model,
                                        episodes=args.episodes, max_frames=100, width=200, frame_every=2)
            returns = ", ".join(f"{r:.1f}" for r in result.episode_returns)
            print(f"{out}: {result.frames} frames, {out.stat().st_size / 1e6:.2f} MB, episode lengths "
                  f"{result.episode_lengths}, returns {returns}")
    for run_dir in args.curves:
        import json

        species = json.loads((run_dir / "summary.json").read_text())["species"]
        out = args.out / f"curves_{species}.png"
        subprocess.run([sys.executable, "-m", "dinosim", "plot", str(run_dir), "--out", str(out), "--dpi", "70"],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
