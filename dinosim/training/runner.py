"""Entry points the CLI calls: :func:`run` (train / curriculum), :func:`resume` and :func:`evaluate` (defined in
:mod:`dinosim.training.evaluate_run`).

Contract: bad input (a folder that is not a run, a finished run, an ``init_from`` without a model, a stage that was
never trained, ...) raises :class:`~dinosim.errors.DinosimError` with one line BEFORE torch or SB3 is imported.
Exit codes returned: 0 done, 1 training stopped (NaN/inf, ``strict_gates``), 130 interrupted by Ctrl-C, 143 by
SIGTERM, 129 by SIGHUP (each: a checkpoint was saved and the ``dinosim resume <run_dir>`` command printed).
`train` and `resume` hold the run folder's lock (:mod:`dinosim.run_lock`) while they run: a second process on the
same folder is refused with one line (exit 2).

Tracker hooks: ``run(request, hooks=RunHooks(...))`` / ``resume(..., hooks=...)`` accept a
:class:`dinosim.training.curriculum.RunHooks` (``extra_output_formats``: SB3 ``KVWriter`` objects receiving every
logger record at the global step; ``extra_callbacks``; ``eval_sinks`` receiving each metrics.jsonl record;
``on_stage_start`` / ``on_stage_end``). With ``request.wandb.enabled`` the W&B tracker is attached this way.
Without hooks the terminal output follows ``request.output`` (see :mod:`dinosim.training.console`); with hooks the
caller's ``log_stdout`` and eval sinks stand (``QUIET`` still turns the progress bar and the "run folder" line off).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from dinosim.errors import DinosimError
from dinosim.run_lock import lock_run_dir
from dinosim.runfolder import (
    RUN_FILE,
    SUMMARY_FILE,
    TRIAL_METRICS_ENV,
    append_json_line,
    new_run_dir,
    stage_dir,
)
from dinosim.training.evaluate_run import evaluate  # noqa: F401 (re-exported: the CLI's evaluate)
from dinosim.training.preflight import find_init_source, preflight  # noqa: F401 (find_init_source re-exported)
from dinosim.training.request import NORMAL, QUIET, VERBOSE, RunRequest, WandbOptions
from dinosim.training.state import RunSummary, StageState, read_run_file, write_run_file
from dinosim.training.stop_signals import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,  # noqa: F401 (re-exported)
    EXIT_OK,
    exit_code_for,
    signal_name,
    stop_signals_interrupt,
)

if TYPE_CHECKING:
    from dinosim.config.resolve import RunConfig
    from dinosim.training.curriculum import RunHooks, RunPlan



# -- bad-input checks (standard library only; see also dinosim.training.preflight) ---------------------------------
def check_resumable(run_dir: Path) -> tuple[dict, RunSummary]:
    """(run.json, summary) of a run that `resume` may continue; DinosimError (one line) otherwise. The caller holds
    the run's lock (:mod:`dinosim.run_lock`), so no other process is training it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (not (run_dir / RUN_FILE).exists() and not (run_dir / SUMMARY_FILE).exists()):
        raise DinosimError(f"{run_dir}: not a dinosim run folder (no {RUN_FILE} and {SUMMARY_FILE})")
    summary = RunSummary.load(run_dir)
    run_data = read_run_file(run_dir, summary.run_file_sha256)
    if set(summary.stages) != {int(s) for s in run_data["config"]["run"]["stages"]}:
        raise DinosimError(f"{run_dir / SUMMARY_FILE}: its stages do not match {run_dir / RUN_FILE}")
    if summary.status == "finished":
        raise DinosimError(f"{run_dir}: the run already finished; nothing to resume")
    stopped = [s for s in summary.stages.values()
               if s.status == "finished" and not s.gate_passed and run_data.get("strict_gates")]
    if stopped:
        raise DinosimError(f"{run_dir}: stopped by --strict-gates after stage {stopped[0].stage}; nothing to resume")
    return run_data, summary


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("dinosim", "stable-baselines3", "sb3-contrib", "torch", "gymnasium", "mujoco", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _git_commit() -> str:
    from dinosim.config.flatten import git_commit

    return git_commit() or "unknown"


# -- run / resume -----------------------------------------------------------------------------------------------------
def run(request: RunRequest, hooks: Optional["RunHooks"] = None) -> int:
    """`train` (one stage) or `curriculum` (its stages in order) in a new run folder; returns the exit code."""
    config = request.config
    checked = preflight(request)  # the same checks as --dry-run, before the run folder exists
    if request.output > QUIET:
        for note in checked.notes:  # what --dry-run shows as comments: values left out, lowered, without effect
            print(f"note: {note}", file=sys.stderr, flush=True)
    init = checked.init
    check_device(request.device)
    run_dir = new_run_dir(config.species, request.name, request.run_dir)
    with lock_run_dir(run_dir):  # held until the run stops; the OS drops it if the process dies
        if request.run_dir is not None and (run_dir / RUN_FILE).exists():  # another `train` won the race
            raise DinosimError(f"{run_dir} already holds a run; use `dinosim resume {run_dir}` or another --run-dir")
        run_data = {
            "command": request.command, "config": config.to_dict(), "timesteps": request.timesteps,
            "name": request.name, "init_from": str(request.init_from) if request.init_from else None,
            "init_model": str(init[0]) if init else None,
            "init_vecnorm": str(init[1]) if init and init[1] else None,
            "init_env": init[2] if init else None, "strict_gates": request.strict_gates, "argv": list(request.argv),
            "wandb": dataclasses.asdict(request.wandb), "device": request.device,
        }
        run_file_sha256 = write_run_file(run_dir, run_data)
        summary = RunSummary(command=request.command, species=config.species, algorithm=config.algorithm,
                             stages={s: StageState(stage=s, budget=checked.budgets[s]) for s in config.stages},
                             run_file_sha256=run_file_sha256)
        summary.save(run_dir)
        if request.output > QUIET:
            print(f"run folder: {run_dir}", flush=True)
            if init is not None:  # a run folder gives its last trained stage's policy: say which one
                print(f"warm start: {init.model}", flush=True)
        return _execute(run_dir, run_data, summary, request.progress, hooks, request.output)


def check_device(device: str) -> None:
    """Raise DinosimError (one line) when ``device`` is cuda and torch sees no CUDA GPU; imports torch only then."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise DinosimError(f"--device cuda: torch {torch.__version__} ({build}) sees no CUDA GPU; use --device cpu "
                           "or auto, or install a CUDA build of torch (README: Set-up)")


def resume(run_dir: Path, progress: bool = True, hooks: Optional["RunHooks"] = None, output: int = NORMAL) -> int:
    """Continue an interrupted run from its newest checkpoint: same config and device, finished stages kept."""
    run_dir = Path(run_dir)
    check_resumable(run_dir)  # before the lock: a folder that is no run gets no lock file
    with lock_run_dir(run_dir):
        run_data, summary = check_resumable(run_dir)  # again: the previous holder may have changed it
        check_device(run_data.get("device", "cpu"))
        done = [str(s.stage) for s in summary.stages.values() if s.status == "finished"]
        if output > QUIET:
            print(f"resuming {run_dir} at step {summary.global_step}"
                  + (f" (finished stages: {', '.join(done)})" if done else ""), flush=True)
        return _execute(run_dir, run_data, summary, progress, hooks, output)


def _plan(run_data: dict) -> "RunPlan":
    from dinosim.config.resolve import RunConfig
    from dinosim.training.curriculum import RunPlan

    return RunPlan(
        config=RunConfig.from_dict(run_data["config"]), command=run_data["command"],
        timesteps=run_data.get("timesteps"), strict_gates=bool(run_data.get("strict_gates")),
        init_model=Path(run_data["init_model"]) if run_data.get("init_model") else None,
        init_vecnorm=Path(run_data["init_vecnorm"]) if run_data.get("init_vecnorm") else None,
        init_env_kwargs=run_data.get("init_env"), device=run_data.get("device", "cpu"),
        provenance={"argv": run_data.get("argv", []), "init_from": run_data.get("init_from"),
                    "git_commit": _git_commit(), "versions": _versions()},
    )


def _execute(run_dir: Path, run_data: dict, summary: RunSummary, progress: bool,
             hooks: Optional["RunHooks"], output: int = NORMAL) -> int:
    from dinosim.training.builders import configure_torch_threads
    from dinosim.training.curriculum import GateNotPassed, RunHooks, RunInterrupted, execute
    from dinosim.training.faults import TrainingFault

    configure_torch_threads()
    plan = _plan(run_data)
    if hooks is None:  # the CLI's path; callers passing hooks choose log_stdout and their eval sinks themselves
        hooks = RunHooks()
        _attach_console(hooks, summary, plan.config, output)
    progress = progress and output > QUIET
    tracker = _start_wandb(run_dir, run_data, plan.config, hooks)
    _attach_trial_report(hooks, plan.config)
    code, summary.status, summary.message = EXIT_OK, "running", None
    try:
        with stop_signals_interrupt():  # SIGTERM/SIGHUP: like Ctrl-C (checkpoint, status interrupted, 128 + signal)
            execute(run_dir, plan, summary, hooks, progress=progress)
        summary.status = "finished"
    except RunInterrupted as exc:
        summary.status, summary.message, code = "interrupted", str(exc), exc.exit_code
        print(f"\ninterrupted ({exc.signal}): checkpoint saved at step {exc.step} (stage {exc.stage}). "
              f"Continue with:\n  dinosim resume {run_dir}", file=sys.stderr, flush=True)
    except KeyboardInterrupt as exc:  # outside SB3's learn (start-up, final save): the newest checkpoint stands
        summary.status, summary.message, code = "interrupted", f"interrupted ({signal_name(exc)})", exit_code_for(exc)
        print(f"\ninterrupted ({signal_name(exc)}). Continue from the newest checkpoint with:\n"
              f"  dinosim resume {run_dir}", file=sys.stderr, flush=True)
    except (TrainingFault, GateNotPassed) as exc:
        summary.status, summary.message, code = "failed", str(exc), EXIT_FAILED
        print(f"error: {exc}", file=sys.stderr, flush=True)
    except BaseException as exc:
        summary.status, summary.message = "failed", f"{type(exc).__name__}: {exc}"
        summary.save(run_dir)
        if tracker is not None:
            tracker.finish(exit_code=EXIT_FAILED)
        raise
    summary.save(run_dir)
    if tracker is not None and summary.status == "failed":  # the failed stage never reached on_stage_end
        for stage in (n for n, s in summary.stages.items() if s.status == "running"):
            _log_stage_diagnosis(tracker, Path(run_dir), stage, summary.global_step, hooks)
    for message in hooks.messages:
        print(f"warning: {message}", file=sys.stderr)
    if tracker is not None:
        tracker.finish(exit_code=code)
    _print_summary(run_dir, summary, brief=output == QUIET)
    return code


def _attach_console(hooks: "RunHooks", summary: RunSummary, config: "RunConfig", output: int) -> None:
    """SB3's tables on stdout only with ``VERBOSE``; one line per evaluation unless ``QUIET``."""
    from dinosim.training.console import eval_printer

    hooks.log_stdout = output >= VERBOSE
    if output > QUIET:
        def streak_of(stage: int) -> tuple[int, int]:
            return summary.stages[stage].gate_streak, config.curriculum(stage).required_consecutive

        hooks.eval_sinks = [*hooks.eval_sinks, eval_printer(streak_of)]


def _attach_trial_report(hooks: "RunHooks", config: "RunConfig") -> None:
    """In a sweep trial (``$DINOSIM_TRIAL_METRICS`` set), each finished stage appends its steps to the gate
    (:data:`dinosim.training.metrics.STAGE_END_SCALARS`) to the trial's metrics, after the stage's evaluations."""
    path = os.environ.get(TRIAL_METRICS_ENV)
    if not path:
        return
    from dinosim.training.metrics import stage_end_metrics

    previous = hooks.on_stage_end

    def on_end(stage: int, state: StageState) -> None:
        append_json_line(Path(path), {"global_step": state.global_steps_to_gate(), "stage": stage,
                                      **stage_end_metrics(state, config.curriculum(stage))})
        if previous:
            previous(stage, state)

    hooks.on_stage_end = on_end


def _start_wandb(run_dir: Path, run_data: dict, config: "RunConfig", hooks: "RunHooks") -> Any:
    options = WandbOptions(**{k: (tuple(v) if k == "tags" else v) for k, v in run_data.get("wandb", {}).items()})
    from dinosim.tracking.wandb_run import wandb_enabled_from_env

    if not (options.enabled or wandb_enabled_from_env()):
        return None
    from dinosim.tracking.wandb_run import WandbTracker, set_active
    from dinosim.training.metrics import stage_end_metrics

    tracker = WandbTracker.start(options, config, Path(run_dir), job_type=run_data["command"])
    set_active(tracker)
    hooks.extra_output_formats = [*hooks.extra_output_formats, tracker.kv_writer()]
    hooks.eval_sinks = [*hooks.eval_sinks, tracker.log_eval]
    previous_start, previous_end = hooks.on_stage_start, hooks.on_stage_end

    def on_start(stage: int, state: StageState) -> None:
        tracker.set_stage(stage, 0)  # dinosim's SB3 steps are already global
        if previous_start:
            previous_start(stage, state)

    def on_end(stage: int, state: StageState) -> None:
        end_step = (state.start_step or 0) + state.timesteps_used
        tracker.log_gate(stage, state.gate_passed, state.global_steps_to_gate(), timesteps_used=state.timesteps_used)
        # a W&B sweep's metric may be one of these
        tracker.log(stage_end_metrics(state, config.curriculum(stage)), end_step)
        _log_stage_video(tracker, Path(run_dir), stage, end_step, hooks)
        _log_stage_diagnosis(tracker, Path(run_dir), stage, end_step, hooks)
        if previous_end:
            previous_end(stage, state)

    hooks.on_stage_start, hooks.on_stage_end = on_start, on_end
    return tracker


def _log_stage_video(tracker: Any, run_dir: Path, stage: int, step: int, hooks: "RunHooks") -> None:
    """Render one episode of the stage's best policy and attach it to the W&B run (skipped with a message when
    no policy was saved or no GL backend works)."""
    from dinosim.tracking.render import preferred_video_suffix, render_best_policy
    from dinosim.training.builders import load_model

    folder = stage_dir(run_dir, stage)
    path = folder / f"best_policy{preferred_video_suffix()}"
    try:
        render_best_policy(folder, path, load_model=load_model, episodes=1, max_frames=300, width=320, frame_every=2)
        tracker.log_video(path, stage, step)
    except DinosimError as exc:
        hooks.messages.append(f"stage {stage}: no video for W&B ({exc})")


def _log_stage_diagnosis(tracker: Any, run_dir: Path, stage: int, step: int, hooks: "RunHooks") -> None:
    """``dinosim diagnose`` of a finished (or failed) stage into the W&B summary and a table (a message when it
    cannot run)."""
    try:
        tracker.log_diagnosis(run_dir, stage, step)
    except DinosimError as exc:
        hooks.messages.append(f"stage {stage}: no diagnosis for W&B ({exc})")


def _print_summary(run_dir: Path, summary: RunSummary, brief: bool = False) -> None:
    """``run <status>: <run_dir> (global step N)``, then (unless ``brief``) one line per stage."""
    print(f"run {summary.status}: {run_dir} (global step {summary.global_step})")
    if brief:
        return
    for stage, s in sorted(summary.stages.items()):
        last = s.last_eval or {}
        gate = f"gate passed at step {s.gate_passed_at}" if s.gate_passed else "gate not passed"
        reward = last.get("eval/mean_reward")
        print(f"  stage {stage}: {s.status}, {s.timesteps_used}/{s.budget} steps, {gate}"
              + (f", last eval reward {reward:.2f}" if isinstance(reward, float) else "")
              + f", {s.wall_time:.0f}s")


def _main(argv: Optional[list[str]] = None) -> int:
    """``python -m dinosim.training.runner resume RUN_DIR`` (the CLI is the normal way in)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "resume":
        return resume(Path(args[1]))
    print("usage: python -m dinosim.training.runner resume RUN_DIR   (use `dinosim` for everything else)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(_main())
    except DinosimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
