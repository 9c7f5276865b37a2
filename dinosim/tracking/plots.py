"""Training curves of one or more runs, from each run folder's own logs (see :mod:`dinosim.tracking.run_logs`).

:func:`plot_runs` is pure: it reads the run folders and returns a matplotlib ``Figure`` (Agg canvas, never a
window), so tests can inspect it; :func:`save_figure` writes it. Panels, in order:

* ``Eval return`` (``eval/mean_reward``) with each stage's ``min_avg_reward`` gate as a dashed segment,
* ``Eval success rate`` (``eval/success_rate``) with each stage's ``min_success_rate`` gate,
* one panel per reward component ``reward/<term>`` (the union over all runs), titled ``reward/<term>``
  (training-rollout means from TensorBoard; the eval component means when a run has no TensorBoard events).

Every run has one colour and one data line per panel where it logged that quantity; several runs overlay so two
configs can be compared component by component. Stage boundaries are vertical dotted lines in the run's colour
on every panel. Artists carry a ``gid`` for inspection: ``"data:<label>"``, ``"stage-boundary:<label>:<stage>"``
and ``"gate:<label>:<stage>"``. The figure legend names every run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from dinosim.errors import DinosimError
from dinosim.tracking.run_logs import (
    EVAL_REWARD,
    EVAL_SUCCESS,
    RunLogs,
    Series,
    check_has_logs,
    check_run_dir,
    load_run,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

EVAL_REWARD_TITLE = "Eval return (eval/mean_reward)"
EVAL_SUCCESS_TITLE = "Eval success rate (eval/success_rate)"
MAX_COLUMNS = 3
MARKERS = ("o", "s", "^", "D", "v", "P")
_EMPTY = Series((), ())


def check_runs(run_dirs: Sequence[Path]) -> list[Path]:
    """Validate every folder before anything heavy is imported (standard library only)."""
    if not run_dirs:
        raise DinosimError("no run folder given; pass one or more runs/<species>/<stamp> folders")
    checked = []
    for run_dir in run_dirs:
        path = check_run_dir(Path(run_dir))
        check_has_logs(path)
        checked.append(path)
    return checked


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Short, unique legend labels: ``<species>/<folder>``, or the full path where those collide."""
    short = [f"{Path(p).parent.name}/{Path(p).name}" for p in run_dirs]
    if len(set(short)) == len(short):
        return short
    return [str(p) for p in run_dirs]


def plot_runs(
    run_dirs: Sequence[Path], labels: Optional[Sequence[str]] = None, title: Optional[str] = None,
    include_zero: bool = False,
) -> "Figure":
    """A Figure with the panels described in the module docstring, one colour (and marker) per run.

    Reward components that are exactly 0 at every logged point of every run (terms inactive in these stages) get
    no panel unless ``include_zero``; they are named in a note under the title instead. All panels share one
    x range (global steps).

    Raises :class:`DinosimError` for a folder that is not a run or has no logs yet.
    """
    runs = _load_runs(run_dirs, labels)
    terms, zero_terms = _component_terms(runs, include_zero)
    titles = [EVAL_REWARD_TITLE, EVAL_SUCCESS_TITLE] + [f"reward/{t}" for t in terms]
    fig, axes = _panel_grid(len(titles))
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for ax, panel_title in zip(axes, titles):
        _draw_panel(ax, panel_title, runs, colors)
    _share_step_range(axes, runs)
    _add_legend(fig, runs, colors)
    heading = title or _default_title(runs)
    if zero_terms:
        heading += "\nreward terms always 0 (no panel): " + ", ".join(zero_terms)
    fig.suptitle(heading, fontsize=11)
    return fig


def _load_runs(run_dirs: Sequence[Path], labels: Optional[Sequence[str]]) -> list[RunLogs]:
    """Check the folders and labels (one distinct label per run), then read each run's logs."""
    paths = check_runs(run_dirs)
    if labels is not None and len(labels) != len(paths):
        raise DinosimError(f"{len(labels)} labels for {len(paths)} runs")
    names = list(labels) if labels is not None else run_labels(paths)
    if len(set(names)) != len(names):
        raise DinosimError("two runs have the same label; give distinct labels")
    return [load_run(p, label) for p, label in zip(paths, names)]


def _component_terms(runs: list[RunLogs], include_zero: bool) -> tuple[list[str], list[str]]:
    """(reward terms that get a panel, terms left out because they are 0 at every point of every run)."""
    terms = sorted({t for run in runs for t in run.reward_terms()})
    zero_terms = [t for t in terms if not any(any(v != 0.0 for v in (run.component_series(t) or _EMPTY).values)
                                              for run in runs)]
    if include_zero:
        return terms, []
    return [t for t in terms if t not in zero_terms], zero_terms


def _panel_grid(n_panels: int) -> tuple["Figure", list["Axes"]]:
    """A figure with up to MAX_COLUMNS panels a row; the visible axes, in reading order."""
    from matplotlib.figure import Figure

    ncols = min(MAX_COLUMNS, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.2 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


def _panel_series(run: RunLogs, panel_title: str) -> tuple[Optional[Series], Optional[str]]:
    """The run's data for a panel and the gate key drawn on it (None: no gate)."""
    if panel_title == EVAL_REWARD_TITLE:
        return run.series(EVAL_REWARD), "min_avg_reward"
    if panel_title == EVAL_SUCCESS_TITLE:
        return run.series(EVAL_SUCCESS), "min_success_rate"
    return run.component_series(panel_title[len("reward/"):]), None


def _draw_panel(ax: "Axes", panel_title: str, runs: list[RunLogs], colors: list[str]) -> None:
    """Every run's line, gate segments and stage boundaries on one panel; "not logged" where no run has data."""
    ax.set_title(panel_title, fontsize=10)
    ax.set_xlabel("global step")
    ax.grid(True, alpha=0.3)
    plotted = 0
    for index, (run, color) in enumerate(zip(runs, colors)):
        series, gate_key = _panel_series(run, panel_title)
        if series:
            marker = MARKERS[index % len(MARKERS)] if len(series) <= 40 else None
            ax.plot(series.steps, series.values, color=color, marker=marker, markersize=3.5, linewidth=1.4,
                    label=run.label, gid=f"data:{run.label}")
            plotted += 1
        if gate_key:
            _draw_gates(ax, run, gate_key, color)
        _draw_boundaries(ax, run, color)
    if panel_title == EVAL_SUCCESS_TITLE:
        ax.set_ylim(-0.05, 1.05)
    elif panel_title == EVAL_REWARD_TITLE:
        _keep_data_in_view(ax)
    if not plotted:
        ax.text(0.5, 0.8, "not logged", transform=ax.transAxes, ha="center", va="center", color="0.5")


def _share_step_range(axes: list["Axes"], runs: list[RunLogs]) -> None:
    """Every panel spans 0 .. the last logged global step of any run."""
    last_steps = [step for run in runs if (step := run.last_step()) is not None]
    if last_steps:
        for ax in axes:
            ax.set_xlim(0, max(last_steps) * 1.02)


def _add_legend(fig: "Figure", runs: list[RunLogs], colors: list[str]) -> None:
    """One entry per run (its colour and marker), plus the boundary and gate line styles."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, linewidth=2, marker=MARKERS[i % len(MARKERS)], label=run.label)
               for i, (run, c) in enumerate(zip(runs, colors))]
    handles.append(Line2D([], [], color="0.3", linestyle=":", label="stage boundary"))
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="stage gate threshold"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=9)


def save_figure(fig: "Figure", path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (format from its suffix: .png, .svg, .pdf) with the Agg canvas; returns path."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        raise DinosimError(f"{path}: unsupported image type; use .png, .svg, .pdf or .jpg")
    if path.parent and not path.parent.exists():
        raise DinosimError(f"{path.parent}: no such folder")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return path


def _draw_boundaries(ax: "Axes", run: RunLogs, color: str) -> None:
    for step, stage in run.boundaries():
        ax.axvline(step, color=color, linestyle=":", linewidth=1.1, alpha=0.9, label="_nolegend_",
                   gid=f"stage-boundary:{run.label}:{stage}")
        ax.text(step, 1.0, f" S{stage}", transform=ax.get_xaxis_transform(), color=color, fontsize=7,
                va="top", ha="left")


def _draw_gates(ax: "Axes", run: RunLogs, gate_key: str, color: str) -> None:
    """A dashed horizontal segment per stage spanning its global steps at the stage's gate threshold."""
    last = run.last_step()
    for stage in sorted(run.stages.values(), key=lambda s: s.stage):
        threshold = getattr(stage.gate, gate_key)
        if threshold is None:
            continue
        start = stage.start_step if stage.start_step is not None else 0
        end = stage.end_step if stage.end_step is not None else last
        if end is None or end <= start:
            end = start + 1
        ax.plot([start, end], [threshold, threshold], color=color, linestyle="--", linewidth=1.0, alpha=0.8,
                label="_nolegend_", gid=f"gate:{run.label}:{stage.stage}")


def _keep_data_in_view(ax: "Axes") -> None:
    """Gate segments far outside the data's range (more than one data span away) would squash the curves: limit
    the y axis to the data plus the near gates, and name each off-scale gate in a corner note."""
    data = [y for line in ax.get_lines() if (line.get_gid() or "").startswith("data:") for y in line.get_ydata()]
    gates = [line for line in ax.get_lines() if (line.get_gid() or "").startswith("gate:")]
    if not data or not gates:
        return
    low, high = min(data), max(data)
    span = max(high - low, abs(high) * 0.1, 1.0)
    near = [line.get_ydata()[0] for line in gates if low - span <= line.get_ydata()[0] <= high + span]
    far = [line for line in gates if not low - span <= line.get_ydata()[0] <= high + span]
    if not far:
        return
    low, high = min([low, *near]), max([high, *near])
    pad = 0.08 * max(high - low, 1e-9)
    ax.set_ylim(low - pad, high + pad)
    note = "off scale: " + ", ".join(dict.fromkeys(
        f"S{line.get_gid().rsplit(':', 1)[1]} gate {line.get_ydata()[0]:g}" for line in far))
    ax.text(0.99, 0.02, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")


def _default_title(runs: list[RunLogs]) -> str:
    if len(runs) == 1:
        return f"dinosim run {runs[0].label}"
    return "dinosim runs compared: " + " vs ".join(r.label for r in runs)

