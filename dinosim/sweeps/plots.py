"""Matplotlib (Agg) figures of a sweep: importance bars, optimisation history, parallel coordinates."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_importance(importance: dict[str, float], path: Path, method: str) -> Optional[Path]:
    """Horizontal bars, most important on top; None when there is nothing to plot."""
    if not importance:
        return None
    plt = _plt()
    names = list(importance)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    ax.barh(names, [importance[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance ({method})")
    ax.set_title("parameter importance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_history(loaded: Any, path: Path) -> Optional[Path]:
    """Value of each complete trial by trial number, with the best-so-far line."""
    from optuna.trial import TrialState

    done = sorted((t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.value is not None), key=lambda t: t.number)
    if not done:
        return None
    plt = _plt()
    maximize = loaded.spec.goal == "maximize"
    xs = [t.number for t in done]
    ys = [t.value for t in done]
    best, run = [], None
    for y in ys:
        run = y if run is None else (max(run, y) if maximize else min(run, y))
        best.append(run)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(xs, ys, s=14, label="trial")
    ax.step(xs, best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(loaded.spec.metric)
    ax.set_title(f"optimisation history ({loaded.spec.name})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _axis_value(v: Any) -> Optional[float]:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def plot_parallel(loaded: Any, trials: list[Any], path: Path) -> Optional[Path]:
    """One polyline per trial over every swept parameter and the metric; colour = metric value.

    Numeric axes are min-max scaled (log10 first for log-sampled parameters); categorical axes (lists, strings)
    place their values evenly in order of first appearance.
    """
    from dinosim.sweeps.storage import trial_params

    if len(trials) < 2:
        return None
    plt = _plt()
    names = [n for n, s in loaded.spec.parameters.items() if not s.is_constant]
    logs = {n for n, s in loaded.spec.parameters.items() if "log" in s.distribution}
    columns: list[list[float]] = []
    labels: list[str] = []
    ends: list[tuple[str, str]] = []  # (bottom, top) tick text of each axis
    for n in names:
        raw = [trial_params(t).get(n) for t in trials]
        nums = [_axis_value(v) for v in raw]
        if all(x is not None for x in nums):
            vals = [math.log10(x) if n in logs and x > 0 else x for x in nums]  # type: ignore[arg-type]
            ends.append((f"{min(nums):.3g}", f"{max(nums):.3g}"))  # type: ignore[type-var]
        else:
            keys = list(dict.fromkeys(json.dumps(v) for v in raw))
            vals = [float(keys.index(json.dumps(v))) for v in raw]
            ends.append((keys[0], keys[-1]))
        columns.append(vals)
        labels.append(("log " if n in logs else "") + n)
    metric = [float(t.value) for t in trials]
    columns.append(metric)
    labels.append(loaded.spec.metric)
    ends.append((f"{min(metric):.4g}", f"{max(metric):.4g}"))
    scaled = []
    for col in columns:
        lo, hi = min(col), max(col)
        scaled.append([0.5 if hi == lo else (v - lo) / (hi - lo) for v in col])
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(labels)), 4.5))
    cmap = plt.get_cmap("viridis")
    lo, hi = min(metric), max(metric)
    for i in range(len(trials)):
        c = cmap(0.5 if hi == lo else (metric[i] - lo) / (hi - lo))
        ax.plot(range(len(labels)), [col[i] for col in scaled], color=c, alpha=0.8, lw=1.2)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks([])
    for x, (bottom, top) in enumerate(ends):
        ax.axvline(x, color="grey", lw=0.5)
        ax.text(x, -0.04, bottom, ha="center", va="top", fontsize=7)
        ax.text(x, 1.04, top, ha="center", va="bottom", fontsize=7)
    ax.set_ylim(-0.12, 1.12)
    ax.set_title(f"parallel coordinates, top {len(trials)} trials")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
