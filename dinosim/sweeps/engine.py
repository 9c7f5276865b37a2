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
  invocation, a grid its size; ``metric.target`` reached -> no new trials start. A trial that finds run_cap reached
  by lower-numbered trials (engines sharing a study can both start the last one) ends at once, unrun: FAIL with
  user attr ``over_cap``, counted as ``over_cap``, not as failed.
* Storage: default ``<runs>/sweeps/<yaml-stem>/study.journal`` (Optuna JournalFileBackend) so a sweep resumes; trials
  interrupted by Ctrl-C, SIGTERM, SIGHUP or a crash of the engine are queued again (once) on resume; trial
  processes die with the engine even when it is killed outright (:mod:`dinosim.sweeps.orphan_guard`).
  ``--storage URL`` (e.g. ``postgresql://...``, ``sqlite:///...``) shares one study between machines. Opening the
  study, requeueing and the budget are in :mod:`dinosim.sweeps.study`.
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
from typing import Any, Callable, Optional

from dinosim.errors import ConfigError
from dinosim.runfolder import atomic_write_text
from dinosim.sweeps.distributions import suggest
from dinosim.sweeps.macros import expand_command
from dinosim.sweeps.progress import Progress
from dinosim.sweeps.storage import OVER_CAP, PARAMS_ATTR, redact, storage_url
from dinosim.sweeps.study import (
    best_trial,
    boot_id,
    counted_trials,
    default_sweep_dir,
    open_study,
    over_cap,
    requeue_interrupted,
    trial_budget,
)
from dinosim.sweeps.trial import ProcessRegistry, run_process, trial_env
from dinosim.sweeps.yaml_spec import SweepSpec
from dinosim.training.stop_signals import STOP_SIGNALS, Terminated


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
        if over_cap(spec, trial.study, trial.number):
            trial.set_user_attr(OVER_CAP, True)
            raise TrialFailed(f"not run: run_cap {spec.run_cap} was reached by trials started earlier")
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


def run_sweep(spec: SweepSpec, opts: EngineOptions, progress: Optional[Progress] = None) -> SweepResult:
    """Run (or resume) the sweep until its budget is spent, the target is reached, or Ctrl-C."""
    _check_options(spec, opts)
    _quiet_optuna()
    sweep_dir = opts.sweep_dir or default_sweep_dir(spec)
    study = open_study(spec, sweep_dir, opts.storage, opts.sampler_seed)
    requeue_interrupted(study, sweep_dir)
    progress = progress or Progress.create(spec)
    objective = _Objective(spec, opts, sweep_dir, progress)
    result = SweepResult(study.study_name, redact(storage_url(sweep_dir, opts.storage)), sweep_dir)
    result.target_reached = _reaches_target(spec, study)
    budget = trial_budget(spec, study, opts.count)
    _optimize(study, objective, budget, result)
    _record_outcome(spec, study, result)
    return result


def _check_options(spec: SweepSpec, opts: EngineOptions) -> None:
    if opts.workers < 1 or opts.seeds < 1:
        raise ConfigError("--workers and --seeds must be at least 1")
    if opts.seeds > 1 and "seed" in spec.parameters:
        raise ConfigError("--seeds cannot be used with a sweep that has a `seed` parameter")


def _reaches_target(spec: SweepSpec, study: Any) -> bool:
    best, _ = best_trial(spec, study)
    return best is not None and spec.reaches_target(best)


def _optimize(study: Any, objective: _Objective, budget: Optional[int], result: SweepResult) -> None:
    """Run up to ``budget`` trials (None: unbounded; none once the target is reached) under :class:`_StopSignals`;
    a stop signal ends in :func:`_interruption` after every trial process has been stopped."""
    opts, progress = objective.opts, objective.progress
    with _StopSignals(objective.registry, opts.term_timeout) as stopper:
        progress.start(study)
        try:
            if not result.target_reached and budget != 0:
                study.optimize(objective, n_trials=budget, n_jobs=opts.workers, catch=(TrialFailed,),
                               callbacks=[_after_trial(objective, result)], gc_after_trial=False,
                               show_progress_bar=False)
        except KeyboardInterrupt:
            objective.registry.terminate_all(opts.term_timeout)
            raise
        finally:
            progress.stop()
    if objective.registry.stopping.is_set():
        raise _interruption(stopper.received[0] if stopper.received else signal.SIGINT)


def _after_trial(objective: _Objective, result: SweepResult) -> Callable[[Any, Any], None]:
    """Optuna's callback after each trial: show it, and stop the study once stopping, the target or run_cap says so."""
    spec = objective.spec

    def after(study: Any, trial: Any) -> None:
        objective.progress.finished(trial, spec)
        if objective.registry.stopping.is_set():
            study.stop()
        elif objective.stop_new.is_set():
            result.target_reached = True
            study.stop()
        elif spec.run_cap is not None and counted_trials(study) >= spec.run_cap:
            study.stop()

    return after


class _StopSignals:
    """While entered (in the main thread): the first Ctrl-C / SIGTERM / SIGHUP stops every trial process (their
    trials are recorded as interrupted and re-run once on resume) and starts no new trial, so the sweep unwinds by
    itself; a second one interrupts at once. Trials of an engine killed outright die with it
    (:mod:`dinosim.sweeps.orphan_guard`)."""

    def __init__(self, registry: ProcessRegistry, term_timeout: float) -> None:
        self.registry, self.term_timeout = registry, term_timeout
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, *STOP_SIGNALS)}
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.registry.stopping.is_set():
            raise _interruption(signum)
        self.received.append(signum)
        self.registry.stopping.set()
        threading.Thread(target=self.registry.terminate_all, args=(self.term_timeout,), daemon=True).start()


def _record_outcome(spec: SweepSpec, study: Any, result: SweepResult) -> None:
    """Trial counts by state (and skipped), the best value and parameters, whether the target is reached."""
    from optuna.trial import TrialState

    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING):
        result.counts[state.name.lower()] = len(study.get_trials(deepcopy=False, states=(state,)))
    trials = study.get_trials(deepcopy=False)
    result.counts["skipped"] = sum(1 for t in trials if t.user_attrs.get("skipped"))
    result.counts["over_cap"] = sum(1 for t in trials if t.user_attrs.get(OVER_CAP))
    result.counts["interrupted"] = sum(1 for t in trials if t.user_attrs.get("interrupted"))  # queued again
    result.counts["fail"] -= result.counts["over_cap"] + result.counts["interrupted"]
    result.best_value, result.best_params = best_trial(spec, study)
    if result.best_value is not None and spec.reaches_target(result.best_value):
        result.target_reached = True


class _NoTracebackForFailedTrials(logging.Filter):
    """Optuna logs every failed trial with the traceback of the exception; a :class:`TrialFailed` (crash, NaN,
    interrupted) is fully described by its one-line message, so its traceback is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TrialFailed):
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_optuna() -> None:
    """Optuna logs warnings only, and failed trials without a traceback."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    root = optuna.logging._get_library_root_logger()  # noqa: SLF001 - where Optuna attaches its handler
    for handler in root.handlers:
        if not any(isinstance(f, _NoTracebackForFailedTrials) for f in handler.filters):
            handler.addFilter(_NoTracebackForFailedTrials())


def _interruption(signum: int) -> KeyboardInterrupt:
    """KeyboardInterrupt for Ctrl-C, :class:`Terminated` (a KeyboardInterrupt, exit 128 + signal) for the others."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


__all__ = ["EngineOptions", "SweepResult", "TrialFailed", "run_sweep"]
