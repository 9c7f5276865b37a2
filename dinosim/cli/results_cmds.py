"""`dinosim plot` and `dinosim summary`: look at a run folder's logs (attached by :mod:`dinosim.cli`).

Bad input (not a run folder, no logs yet, unsupported output type) raises :class:`DinosimError` before
matplotlib or TensorBoard is imported; this module imports only click, the standard library and light dinosim
modules.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import click

from dinosim.errors import DinosimError

PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Image to write (.png/.svg/.pdf) [default: RUN_DIR/curves.png for one run, "
                   "./compare.png for several].")
@click.option("--label", "labels", multiple=True,
              help="Legend label of each run, in order (repeat once per run) [default: <species>/<folder>].")
@click.option("--title", default=None, help="Figure title.")
@click.option("--dpi", type=click.IntRange(30, 600), default=110, show_default=True, help="Resolution of the image.")
@click.option("--include-zero", is_flag=True, help="Also draw reward components that are 0 throughout.")
def plot(run_dirs: tuple[Path, ...], out: Optional[Path], labels: tuple[str, ...], title: Optional[str], dpi: int,
         include_zero: bool) -> int:
    """Plot reward components, eval return and success rate of one or more runs, with stage boundaries and gates.

    Several runs overlay in one figure, one colour each, to compare configs component by component.
    """
    from dinosim.tracking.plots import check_runs

    paths = check_runs(run_dirs)
    if labels and len(labels) != len(paths):
        raise DinosimError(f"--label given {len(labels)} times for {len(paths)} runs; give one per run or none")
    target = out or (paths[0] / "curves.png" if len(paths) == 1 else Path("compare.png"))
    if target.suffix.lower() not in PLOT_SUFFIXES:
        raise DinosimError(f"--out {target}: unsupported image type; use {', '.join(PLOT_SUFFIXES)}")
    if not target.resolve().parent.is_dir():
        raise DinosimError(f"--out {target}: folder {target.parent} does not exist")

    from dinosim.tracking.plots import plot_runs, save_figure

    fig = plot_runs(paths, labels=list(labels) or None, title=title, include_zero=include_zero)
    save_figure(fig, target, dpi=dpi)
    panels = sum(1 for ax in fig.axes if ax.get_visible())
    click.echo(f"wrote {target} ({panels} panels, {len(paths)} run{'s' if len(paths) > 1 else ''})")
    return 0


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True,
              help="Reward components listed per stage.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def summary(run_dir: Path, top: int, as_json: bool) -> int:
    """Per stage: timesteps, wall time, gate (passed at which step), best/final eval reward, success rate and the
    reward components with the largest share of the return."""
    from dinosim.tracking.summary import format_table, summarize_run

    table = summarize_run(run_dir, top=top)
    if as_json:
        click.echo(json.dumps(asdict(table), indent=2, default=str))
    else:
        click.echo(format_table(table))
    return 0


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--stage", type=click.IntRange(min=1), default=None, help="Diagnose only this stage.")
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON (schema in docs/diagnose.md).")
def diagnose(run_dirs: tuple[Path, ...], stage: Optional[int], as_json: bool) -> int:
    """Name what went wrong in each stage of one or more runs: symptoms ranked by confidence, the evidence (numbers
    and steps) and --override values to try, derived from the run's own config. Several runs of the same stage are
    also compared with each other (spread across seeds)."""
    from dinosim.tracking.diagnose import diagnose as run_diagnosis
    from dinosim.tracking.diagnose import format_text

    result = run_diagnosis(list(run_dirs), stage=stage)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else format_text(result))
    return 0
