"""`dinosim watch RUN [--stage N]`: a trained policy live in MuJoCo's viewer (needs a display)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from dinosim.species import STAGES


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--stage", type=click.IntRange(STAGES[0], STAGES[-1]), default=None,
              help="Stage to watch [default: the last stage with a trained model].")
@click.option("--deterministic/--stochastic", default=True, show_default=True)
def watch(run_dir: Path, stage: Optional[int], deterministic: bool) -> int:
    """Play a run's best policy live in the MuJoCo viewer, episode after episode, until the window is closed.

    Needs a display; without one (no $DISPLAY on Linux) it exits 2 and points to `dinosim evaluate RUN --gif`.
    """
    from dinosim.tracking.watch import check_display, watch_policy, watch_stage_dir

    check_display(run_dir)
    folder = watch_stage_dir(run_dir, stage)
    from dinosim.training.builders import configure_torch_threads, load_model

    configure_torch_threads()
    watch_policy(folder, load_model, deterministic=deterministic)
    return 0
