"""``dinosim sweep run``: run a W&B sweep YAML offline with Optuna.

* method grid -> GridSampler, random -> RandomSampler, bayes -> TPESampler (multivariate);
  ``early_terminate: hyperband`` -> HyperbandPruner(min_resource=min_iter, max_resource=max_iter or "auto",
  reduction_factor=round(eta)), fed with each eval result as the trial reports it.
* Each trial runs the YAML's own ``command``, expanded like ``wandb agent`` (:mod:`dinosim.sweeps.macros`), with
  ``${interpreter}`` = this Python. Its value is the last reported metric value (the W&B summary value).
* ``--seeds M``: the trial runs M times, with ``--seed K`` (K = 0..M-1) appended to its expanded command: the
  `train`/`curriculum` option that ``wandb agent`` passes (as ``--seed=K``, through ``${args}``) for a sweep
  parameter ``seed: {values: [0, 1, 2]}``. The value is the mean over seeds; only seed 0 reports to the pruner.
* Trial states: COMPLETE (value), PRUNED (pruner; or skipped by a ``--skip-if`` constraint: user attr ``skipped``
  holds the reason, no process runs when the constraint can be decided from the sampled values), FAIL (non-zero
  exit, NaN/inf metric, no metric; user attr ``fail_reason``). A failing trial never stops the sweep.
* Budget: ``run_cap`` bounds the trials in the study (interrupted ones excepted), ``--count`` the trials of this
  invocation, a grid its size; ``metric.target`` reached -> no new trials start.
* Storage: default ``<runs>/sweeps/<yaml-stem>/study.journal`` (Optuna JournalFileBackend) so a sweep resumes; trials
  interrupted by Ctrl-C, SIGTERM, SIGHUP or a crash of the engine are queued again (once) on resume; trial
  processes die with the engine even when it is killed outright (:mod:`dinosim.sweeps.orphan_guard`).
  ``--storage URL`` (e.g. ``postgresql://...``, ``sqlite:///...``) shares one study between machines.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from dinosim.errors import ConfigError
from dinosim.runfolder import atomic_write_text, process_alive, runs_root
from dinosim.sweeps.distributions import grid_search_space, suggest
from dinosim.sweeps.macros import expand_command
from dinosim.sweeps.progress import Progress
from dinosim.sweeps.storage import (
    PARAMS_ATTR,
    damaged_study_is_config_error,
    make_storage,
    redact,
    storage_url,
    trial_params,
)
from dinosim.sweeps.trial import ProcessRegistry, run_process, trial_env
from dinosim.sweeps.yaml_spec import SweepSpec
from dinosim.training.stop_signals import STOP_SIGNALS, Terminated

SPEC_COPY = "sweep.yaml"


class TrialFailed(Exception):
    """A trial that crashed, reported NaN, or reported nothing; recorded FAIL and the sweep goes on."""


@dataclass
class EngineOptions:
    count: Optional[int] = None
    workers: int = 1
    storage: Optional[str] = None
    seeds: int = 1
    sweep_dir: Optional[Path] = None
    sampler_seed: Optional[int] = None
    interpreter: str = sys.executable
    cwd: Optional[Path] = None
    poll_interval: float = 0.5
    term_timeout: float = 10.0


@dataclass
class SweepResult:
    study_name: str
    storage: str  # for display: the password of a database URL is replaced by ***
    sweep_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    best_value: Optional[float] = None
    best_params: Optional[dict[str, Any]] = None
    target_reached: bool = False


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


def _requeue_interrupted(study: Any, sweep_dir: Path) -> None:
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


def counted_trials(study: Any) -> int:
    """Trials that count toward run_cap: started ones, except interrupted ones (they are queued again)."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.WAITING and not t.user_attrs.get("interrupted"))


def _program_cwd(spec: SweepSpec, explicit: Optional[Path]) -> Path:
    if explicit is not None:
        return explicit
    prog = spec.program
    if not prog or Path(prog).is_absolute():
        return Path.cwd()
    for base in (Path.cwd(), spec.path.parent.resolve(), spec.path.parent.resolve().parent):
        if (base / prog).exists():
            return base
    raise ConfigError(f"program {prog} not found from {Path.cwd()} or next to {spec.path}")


class _Objective:
    """The Optuna objective: sample, check constraints, run the seeds, return the mean final metric."""

    def __init__(self, spec: SweepSpec, opts: EngineOptions, sweep_dir: Path, progress: Progress) -> None:
        self.spec, self.opts, self.sweep_dir, self.progress = spec, opts, sweep_dir, progress
        self.cwd = _program_cwd(spec, opts.cwd)
        self.registry = ProcessRegistry()
        self.stop_new = threading.Event()
        self.pruner_lock = threading.Lock()  # Optuna's HyperbandPruner initialises itself lazily, not thread-safely

    def __call__(self, trial: Any) -> float:
        import optuna

        spec = self.spec
        params = {n: suggest(trial, p, grid=spec.method == "grid") for n, p in spec.parameters.items()}
        trial.set_user_attr(PARAMS_ATTR, _jsonable(params))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("engine_pid", os.getpid())
        trial.set_user_attr("boot_id", boot_id())
        for c in spec.constraints:
            if c.evaluate_partial(params):
                reason = f"skip-if: {c.text}"
                trial.set_user_attr("skipped", reason)
                raise optuna.TrialPruned(reason)
        if self.stop_new.is_set() or self.registry.stopping.is_set():
            trial.set_user_attr("interrupted", True)
            raise TrialFailed("sweep stopping")
        self.progress.started(trial.number)
        tdir = self.sweep_dir / "trials" / f"{trial.number:04d}"
        tdir.mkdir(parents=True, exist_ok=True)
        finals: list[float] = []
        for k in range(self.opts.seeds):
            finals.append(self._run_seed(trial, params, tdir, k))
        value = sum(finals) / len(finals)
        trial.set_user_attr("seed_values", finals)
        if spec.reaches_target(value):
            self.stop_new.set()
        return value

    def _run_seed(self, trial: Any, params: dict[str, Any], tdir: Path, k: int) -> float:
        import optuna

        suffix = f"-seed{k}" if self.opts.seeds > 1 else ""
        metrics = tdir / f"metrics{suffix}.jsonl"
        metrics.unlink(missing_ok=True)
        json_file = tdir / f"args{suffix}.json"
        atomic_write_text(json_file, json.dumps(params))
        argv = expand_command(
            self.spec.command, params, self.spec.program or "", interpreter=self.opts.interpreter,
            args_json_file=str(json_file),
        )
        if self.opts.seeds > 1:
            argv += ["--seed", str(k)]
        trial.set_user_attr(f"argv{suffix}", argv)
        trial.set_user_attr("trial_dir", str(tdir))

        def on_value(step: int, value: float) -> bool:
            if k != 0:
                return False
            with self.pruner_lock:
                trial.report(value, step)
                prune = trial.should_prune()
            self.progress.reported(trial.number, step, value)
            return prune

        outcome = run_process(
            argv, self.cwd, trial_env(metrics, tdir / "runs"), metrics, tdir / f"log{suffix}.txt",
            self.spec.metric, on_value, self.registry, self.opts.poll_interval, self.opts.term_timeout,
        )
        if outcome.interrupted:
            trial.set_user_attr("interrupted", True)
            raise TrialFailed("interrupted")
        if outcome.skipped:
            trial.set_user_attr("skipped", outcome.skipped)
            raise optuna.TrialPruned(outcome.skipped)
        if outcome.pruned:
            raise optuna.TrialPruned(f"pruned at report {len(outcome.values)}")
        if outcome.non_finite:
            return self._fail(trial, f"non-finite {self.spec.metric} reported")
        if outcome.returncode != 0:
            return self._fail(trial, f"exit code {outcome.returncode}: {outcome.log_tail[-800:]}")
        if not outcome.values:
            return self._fail(trial, f"exited without reporting {self.spec.metric}")
        return outcome.values[-1]

    def _fail(self, trial: Any, reason: str) -> float:
        trial.set_user_attr("fail_reason", reason)
        raise TrialFailed(reason)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=str))


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


def _best(spec: SweepSpec, study: Any) -> tuple[Optional[float], Optional[dict[str, Any]]]:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not done:
        return None, None
    best = max(done, key=lambda t: t.value) if spec.goal == "maximize" else min(done, key=lambda t: t.value)
    return best.value, trial_params(best)


def run_sweep(  # noqa: C901 - not split yet (issue 15): worker loop
    spec: SweepSpec, opts: EngineOptions, progress: Optional[Progress] = None,
) -> SweepResult:
    """Run (or resume) the sweep until its budget is spent, the target is reached, or Ctrl-C."""
    import optuna

    if opts.workers < 1 or opts.seeds < 1:
        raise ConfigError("--workers and --seeds must be at least 1")
    if opts.seeds > 1 and "seed" in spec.parameters:
        raise ConfigError("--seeds cannot be used with a sweep that has a `seed` parameter")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _quiet_failed_trials()
    sweep_dir = opts.sweep_dir or default_sweep_dir(spec)
    study = open_study(spec, sweep_dir, opts.storage, opts.sampler_seed)
    _requeue_interrupted(study, sweep_dir)
    progress = progress or Progress.create(spec)
    objective = _Objective(spec, opts, sweep_dir, progress)
    result = SweepResult(study.study_name, redact(storage_url(sweep_dir, opts.storage)), sweep_dir)
    best, _ = _best(spec, study)
    if best is not None and spec.reaches_target(best):
        result.target_reached = True
    budget = trial_budget(spec, study, opts.count)

    def after(st: Any, ft: Any) -> None:
        progress.finished(ft, spec)
        if objective.registry.stopping.is_set():
            st.stop()
        elif objective.stop_new.is_set():
            result.target_reached = True
            st.stop()
        elif spec.run_cap is not None and counted_trials(st) >= spec.run_cap:
            st.stop()

    received: list[int] = []

    def on_stop_signal(signum: int, frame: Any) -> None:
        # First Ctrl-C / SIGTERM / SIGHUP: stop every trial process (their trials are recorded as interrupted and
        # re-run once on resume) and start no new trial; the sweep then unwinds by itself. A second one interrupts
        # at once. Trials of an engine killed outright die with it (dinosim.sweeps.orphan_guard).
        if objective.registry.stopping.is_set():
            raise _interruption(signum)
        received.append(signum)
        objective.registry.stopping.set()
        threading.Thread(target=objective.registry.terminate_all, args=(opts.term_timeout,), daemon=True).start()

    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_stop_signal) for s in (signal.SIGINT, *STOP_SIGNALS)} if in_main else {}
    progress.start(study)
    try:
        if not result.target_reached and budget != 0:
            study.optimize(objective, n_trials=budget, n_jobs=opts.workers, catch=(TrialFailed,), callbacks=[after],
                           gc_after_trial=False, show_progress_bar=False)
    except KeyboardInterrupt:
        objective.registry.terminate_all(opts.term_timeout)
        raise
    finally:
        progress.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if objective.registry.stopping.is_set():
        raise _interruption(received[0] if received else signal.SIGINT)
    from optuna.trial import TrialState

    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING):
        result.counts[state.name.lower()] = len(study.get_trials(deepcopy=False, states=(state,)))
    result.counts["skipped"] = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("skipped"))
    result.best_value, result.best_params = _best(spec, study)
    if result.best_value is not None and spec.reaches_target(result.best_value):
        result.target_reached = True
    return result


class _NoTracebackForFailedTrials(logging.Filter):
    """Optuna logs every failed trial with the traceback of the exception; a :class:`TrialFailed` (crash, NaN,
    interrupted) is fully described by its one-line message, so its traceback is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TrialFailed):
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_failed_trials() -> None:
    import optuna

    root = optuna.logging._get_library_root_logger()  # noqa: SLF001 - where Optuna attaches its handler
    for handler in root.handlers:
        if not any(isinstance(f, _NoTracebackForFailedTrials) for f in handler.filters):
            handler.addFilter(_NoTracebackForFailedTrials())


def _interruption(signum: int) -> KeyboardInterrupt:
    """KeyboardInterrupt for Ctrl-C, :class:`Terminated` (a KeyboardInterrupt, exit 128 + signal) for the others."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


__all__ = ["EngineOptions", "SweepResult", "TrialFailed", "run_sweep", "open_study", "default_sweep_dir"]
