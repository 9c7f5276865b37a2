"""``dinosim sweep report SWEEP``: top trials, parameter importance and plots of a sweep's study.

SWEEP is the sweep YAML (its study is found in ``<runs>/sweeps/<stem>/`` unless ``--storage``/``--sweep-dir`` say
otherwise) or the sweep folder itself (it holds ``sweep.yaml`` and ``study.journal``).

Outputs (in ``<sweep folder>/report/`` unless ``--out``): ``importance.png`` (horizontal bars),
``history.png`` (every complete trial's value and the best so far), ``parallel.png`` (parallel coordinates of the
top trials, each axis scaled to its own range, log axes for log-sampled parameters), ``report.json``. Importance is
computed over every sampled parameter together (PPO and reward weights alike) with Optuna's fANOVA when scikit-learn
is installed, else PED-ANOVA (good set: the best max(10%, 4 trials), at most half).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from dinosim.errors import ConfigError
from dinosim.runfolder import atomic_write_text
from dinosim.sweeps.storage import (
    OVER_CAP,
    STUDY_FILE,
    damaged_study_is_config_error,
    make_storage,
    redact,
    storage_url,
    trial_params,
)
from dinosim.sweeps.study import SPEC_COPY, default_sweep_dir
from dinosim.sweeps.yaml_spec import SweepSpec, load_sweep


@dataclass
class LoadedSweep:
    spec: SweepSpec
    study: Any
    sweep_dir: Path


def load_study(sweep: str | Path, storage: Optional[str] = None, sweep_dir: Optional[Path] = None) -> LoadedSweep:
    """The spec and Optuna study of SWEEP (a YAML file or a sweep folder). ConfigError when there is no study."""
    import optuna

    path = Path(sweep)
    if path.is_dir():
        sweep_dir = path
        if not (path / SPEC_COPY).exists():
            raise ConfigError(f"{path}: not a sweep folder (no {SPEC_COPY})")
        storage = storage or storage_url(path, None)
        with damaged_study_is_config_error(storage):
            names = optuna.get_all_study_names(make_storage(storage))
        if len(names) != 1:
            raise ConfigError(f"{path}: expected one study in {redact(storage)}, found {len(names)}")
        spec = load_sweep(path / SPEC_COPY)
        study_name = names[0]
        spec.name = str(spec.raw.get("name") or study_name)
    else:
        spec = load_sweep(path)
        sweep_dir = sweep_dir or default_sweep_dir(spec)
        storage = storage_url(sweep_dir, storage)
        if storage.startswith("journal:") and not Path(storage[len("journal:"):]).exists():
            raise ConfigError(f"no study for {path} in {sweep_dir / STUDY_FILE}: run `dinosim sweep run {path}` first")
        study_name = path.stem
    with damaged_study_is_config_error(storage):
        try:
            study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
        except KeyError:
            raise ConfigError(f"no study {study_name!r} in {redact(storage)}") from None
    return LoadedSweep(spec, study, sweep_dir)


def top_trials(loaded: LoadedSweep, k: int = 10) -> list[Any]:
    """The ``k`` best complete trials, best first."""
    from optuna.trial import TrialState

    done = [t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return sorted(done, key=lambda t: t.value, reverse=loaded.spec.goal == "maximize")[:k]


def importances(loaded: LoadedSweep) -> tuple[dict[str, float], str]:
    """(parameter -> importance, evaluator name); empty with the reason when it cannot be computed."""
    import optuna

    try:
        evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
        name = "fanova"
        result = optuna.importance.get_param_importances(loaded.study, evaluator=evaluator)
    except ImportError:
        # PED-ANOVA compares the top `target_quantile` of trials with all of them; with few trials the default 10%
        # is one or two trials, so take at least 4 (at most half).
        from optuna.trial import TrialState

        n = len(loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        quantile = min(0.5, max(0.1, 4 / max(n, 1)))
        name = f"ped-anova, top {quantile:.0%}"
        try:
            result = optuna.importance.get_param_importances(
                loaded.study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
            )
        except Exception as exc:  # noqa: BLE001 - too few / degenerate trials
            return {}, f"unavailable ({exc})"
    except Exception as exc:  # noqa: BLE001
        return {}, f"unavailable ({exc})"
    return {k: float(v) for k, v in result.items()}, name


@dataclass
class Report:
    sweep: str
    metric: str
    goal: str
    counts: dict[str, int]
    top: list[dict[str, Any]]
    importance: dict[str, float]
    importance_method: str
    plots: list[str] = field(default_factory=list)
    symptoms: dict[str, int] = field(default_factory=dict)  # symptom id -> trials showing it, most frequent first
    diagnosed_trials: int = 0

    def to_text(self) -> str:
        c = self.counts
        lines = [f"sweep {self.sweep}: {self.goal} {self.metric}; " + ", ".join(f"{k} {v}" for k, v in c.items())]
        lines.append(f"top {len(self.top)} trials:")
        for row in self.top:
            params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
            lines.append(f"  #{row['number']:<4} {row['value']:<12.6g} {params}")
        lines.append(f"parameter importance ({self.importance_method}):")
        for k, v in self.importance.items():
            lines.append(f"  {k:<40} {v:6.3f} {'#' * int(round(v * 40))}")
        if self.diagnosed_trials:
            lines.append(f"most frequent symptoms (`dinosim diagnose`) across {self.diagnosed_trials} trials:")
            lines += [f"  {k:<40} {v:4d} ({v / self.diagnosed_trials:.0%})" for k, v in self.symptoms.items()]
            if not self.symptoms:
                lines.append("  none")
        lines += [f"wrote {p}" for p in self.plots]
        return "\n".join(lines)


def build_report(loaded: LoadedSweep, k: int = 10, out_dir: Optional[Path] = None, plots: bool = True) -> Report:
    """Compute the report and write its PNGs and ``report.json``."""
    from optuna.trial import TrialState

    trials = loaded.study.get_trials(deepcopy=False)
    counts = {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED and not t.user_attrs.get("skipped") for t in trials),
        "skipped": sum(bool(t.user_attrs.get("skipped")) for t in trials),
        "failed": sum(t.state == TrialState.FAIL and not t.user_attrs.get(OVER_CAP)
                      and not t.user_attrs.get("interrupted") for t in trials),
        "interrupted": sum(bool(t.user_attrs.get("interrupted")) for t in trials),  # queued again on resume
        "over_cap": sum(bool(t.user_attrs.get(OVER_CAP)) for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
    }
    top = [{"number": t.number, "value": t.value, "params": trial_params(t)} for t in top_trials(loaded, k)]
    imp, method = importances(loaded)
    report = Report(loaded.spec.name, loaded.spec.metric, loaded.spec.goal, counts, top, imp, method)
    report.symptoms, report.diagnosed_trials = symptom_counts(trials)
    out = out_dir or loaded.sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        from dinosim.sweeps.plots import plot_history, plot_importance, plot_parallel

        report.plots = [str(p) for p in (
            plot_importance(imp, out / "importance.png", method),
            plot_history(loaded, out / "history.png"),
            plot_parallel(loaded, top_trials(loaded, max(k, 20)), out / "parallel.png"),
        ) if p is not None]
    atomic_write_text(out / "report.json", json.dumps(report.__dict__, indent=2, default=_json_default) + "\n")
    return report


def trial_run_dirs(trial: Any) -> list[Path]:
    """Run folders a trial's program wrote: ``<trial_dir>/runs/<species>/<stamp>/`` (the engine sets
    ``DINOSIM_RUNS_DIR`` to ``<trial_dir>/runs``)."""
    trial_dir = trial.user_attrs.get("trial_dir")
    if not trial_dir:
        return []
    return sorted(p.parent for p in Path(trial_dir, "runs").glob("*/*/summary.json"))


def symptom_counts(trials: list[Any]) -> tuple[dict[str, int], int]:
    """(symptom id -> number of trials whose runs show it, most frequent first; trials diagnosed). Each trial counts
    a symptom once, whichever of its runs/stages shows it; trials whose runs cannot be read are left out."""
    from dinosim.errors import DinosimError
    from dinosim.tracking.diagnose import diagnose

    counts: dict[str, int] = {}
    diagnosed = 0
    for trial in trials:
        runs = trial_run_dirs(trial)
        if not runs:
            continue
        try:
            ids = {s.id for s in diagnose(runs).symptoms()}
        except DinosimError:
            continue
        diagnosed += 1
        for symptom_id in ids:
            counts[symptom_id] = counts.get(symptom_id, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))), diagnosed


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)
