"""A sweep's Optuna study: where it lives by default, how it is opened (sampler, pruner, the YAML it was made from),
which trials an earlier engine left interrupted (queued again, once), how many trials this invocation may start,
and its best trial so far."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Optional

from dinosim.errors import ConfigError
from dinosim.runfolder import atomic_write_text, process_alive, runs_root
from dinosim.sweeps.distributions import grid_search_space
from dinosim.sweeps.storage import (
    OVER_CAP,
    damaged_study_is_config_error,
    make_storage,
    redact,
    storage_url,
    trial_params,
)
from dinosim.sweeps.yaml_spec import SweepSpec

SPEC_COPY = "sweep.yaml"


def default_sweep_dir(spec: SweepSpec) -> Path:
    return runs_root() / "sweeps" / spec.path.stem


def make_sampler(spec: SweepSpec, seed: Optional[int]) -> Any:
    import optuna

    if spec.method == "grid":
        return optuna.samplers.GridSampler(grid_search_space(spec.parameters), seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    import warnings

    with warnings.catch_warnings():  # multivariate TPE is flagged experimental; it models joint PPO/reward effects
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)


def make_pruner(spec: SweepSpec) -> Any:
    import optuna

    hb = spec.hyperband
    if hb is None:
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(
        min_resource=hb.min_iter, max_resource=hb.max_iter or "auto", reduction_factor=max(2, round(hb.eta))
    )


def open_study(spec: SweepSpec, sweep_dir: Path, storage: Optional[str], sampler_seed: Optional[int] = None) -> Any:
    """Create or load the sweep's study (name = YAML stem); the YAML text is kept as a study attribute."""
    import optuna

    sweep_dir.mkdir(parents=True, exist_ok=True)
    with damaged_study_is_config_error(storage_url(sweep_dir, storage)):
        study = optuna.create_study(
            study_name=spec.path.stem,
            storage=make_storage(storage_url(sweep_dir, storage)),
            sampler=make_sampler(spec, sampler_seed),
            pruner=make_pruner(spec),
            direction=spec.direction,
            load_if_exists=True,
        )
    text = spec.path.read_text(encoding="utf-8")
    if study.user_attrs.get("sweep_yaml") not in (None, text):
        where = redact(storage_url(sweep_dir, storage))
        raise ConfigError(f"study {spec.path.stem} in {where} was made from a different YAML")
    study.set_user_attr("sweep_yaml", text)
    study.set_user_attr("metric", spec.metric)
    atomic_write_text(sweep_dir / SPEC_COPY, text)
    return study


def requeue_interrupted(study: Any, sweep_dir: Path) -> None:
    """Queue again, once, trials of an earlier invocation that were interrupted (Ctrl-C, SIGTERM, SIGHUP) or left
    RUNNING by a dead engine. Engines on one machine starting together take turns (a lock file in the sweep folder),
    so each sees the others' ``requeued`` list and no trial is queued twice."""
    import fcntl

    with open(sweep_dir / ".requeue.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
        _requeue_locked(study)


def _requeue_locked(study: Any) -> None:
    from optuna.trial import TrialState

    host = socket.gethostname()
    done: list[int] = list(study.user_attrs.get("requeued", []))
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING and t.user_attrs.get("host") == host:
            pid = t.user_attrs.get("engine_pid")
            rebooted = t.user_attrs.get("boot_id") not in (None, boot_id())  # its PID may belong to anyone now
            if pid is not None and (rebooted or not process_alive(int(pid))):
                study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                t = study._storage.get_trial(t._trial_id)
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in done:
            study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number}, skip_if_exists=False)
            done.append(t.number)
    study.set_user_attr("requeued", done)


def boot_id() -> Optional[str]:
    """The kernel's id of this boot (Linux), so a PID recorded before a reboot is not mistaken for a live engine."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def counts_toward_cap(trial: Any) -> bool:
    """Trials that count toward run_cap: started ones, except interrupted ones (they are queued again) and ones that
    found the cap already reached when they started (:func:`over_cap`)."""
    from optuna.trial import TrialState

    attrs = trial.user_attrs
    return trial.state != TrialState.WAITING and not attrs.get("interrupted") and not attrs.get(OVER_CAP)


def counted_trials(study: Any, before: Optional[int] = None) -> int:
    """How many trials count toward run_cap (only those numbered below ``before``, if given)."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if counts_toward_cap(t) and (before is None or t.number < before))


def over_cap(spec: SweepSpec, study: Any, number: int) -> bool:
    """Whether trial ``number`` must not run: the counted trials numbered below it already reach run_cap.

    Each engine checks run_cap before it starts a trial, but engines sharing a study (``--storage``) can both start
    one when one place is left. Optuna numbers a study's trials densely in the order they are created, across
    engines, so "lower numbers first" settles it the same way in every engine."""
    return spec.run_cap is not None and counted_trials(study, before=number) >= spec.run_cap


def trial_budget(spec: SweepSpec, study: Any, count: Optional[int]) -> Optional[int]:
    """How many trials this invocation may start (None = unbounded): min of --count, run_cap left, grid left."""
    from optuna.trial import TrialState

    limits = [count] if count is not None else []
    if spec.run_cap is not None:
        limits.append(spec.run_cap - counted_trials(study))
    if spec.method == "grid":
        finished = {
            t.system_attrs.get("grid_id") for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.RUNNING and not t.user_attrs.get("interrupted") and "grid_id" in t.system_attrs
        }
        queued = sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING)
        limits.append(spec.grid_size - len(finished) + queued)  # type: ignore[operator]
    return max(0, min(limits)) if limits else None


def best_trial(spec: SweepSpec, study: Any) -> tuple[Optional[float], Optional[dict[str, Any]]]:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not done:
        return None, None
    best = max(done, key=lambda t: t.value) if spec.goal == "maximize" else min(done, key=lambda t: t.value)
    return best.value, trial_params(best)
