"""Train the stages of a run in order (imports torch/SB3; the runner imports this module lazily).

:func:`execute` is the engine behind `train`, `curriculum` and `resume`: it walks the run's stages, skips finished
ones, continues a running stage from its newest complete checkpoint, and otherwise starts the stage fresh with its
own hyperparameters, warm-started from the previous stage's best policy (or ``init_from``). The caller owns the
run folder, ``run.json`` and ``summary.json`` creation and turns the exceptions raised here into exit codes:
:class:`RunInterrupted` (Ctrl-C, after a checkpoint), :class:`~dinosim.training.faults.TrainingFault` (NaN/inf)
and :class:`GateNotPassed` (``strict_gates``).

Hooks for trackers (:class:`RunHooks`): ``extra_output_formats`` are SB3 ``KVWriter`` objects added to every
stage's logger (records arrive at the global step); ``extra_callbacks`` are SB3 callbacks added to every stage's
``learn`` (re-initialised per stage by SB3); ``eval_sinks`` receive every metrics.jsonl record;
``on_stage_start(stage, state)`` / ``on_stage_end(stage, state)`` are called around each stage trained.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, TensorBoardOutputFormat

from dinosim.config.resolve import RunConfig
from dinosim.run_integrity import (
    loading,
    model_bytes,
    newest_intact_checkpoint,
    remove_checkpoint,
    save_final_pair,
    vecnormalize_bytes,
)
from dinosim.runfolder import (
    BEST_DIR,
    STAGE_CONFIG_FILE,
    TENSORBOARD_DIR,
    atomic_write_text,
    complete_checkpoints,
    policy_files,
    read_json,
    remove_stale_temp_files,
    stage_dir,
)
from dinosim.training.anchor import stage_anchor
from dinosim.training.builders import (
    EnvFactory,
    algo_setting,
    algorithm_class,
    build_model,
    default_env_factory,
    make_vec_env,
    stage_schedules,
    warm_start,
    wrap_normalize,
)
from dinosim.training.callbacks import (
    CheckpointCallback,
    CriticWarmupCallback,
    EvalSink,
    RewardComponentCallback,
    SignalCallback,
    StageContext,
    WarmupRampCallback,
    save_checkpoint,
)
from dinosim.training.eval_gate import EvalGateCallback, load_evaluations, write_evaluations
from dinosim.training.eval_worker import BackgroundEvaluator, EnvSpec
from dinosim.training.faults import FiniteCheckVecEnv, FiniteLossCallback
from dinosim.training.progress import ProgressCallback, ProgressReporter
from dinosim.training.schedules import StageClock, changed_numeric_weights
from dinosim.training.state import RunSummary, StageState
from dinosim.training.stop_signals import exit_code_for, signal_name, signals_deferred


class RunInterrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: a checkpoint was saved; ``step`` is the global step it holds, ``signal`` names
    what stopped the run ("Ctrl-C", "SIGTERM", "SIGHUP") and ``exit_code`` is 128 + its number."""

    def __init__(self, stage: int, step: int, signal: str = "Ctrl-C", exit_code: int = 130) -> None:
        super().__init__(f"interrupted ({signal}) in stage {stage} at step {step}")
        self.stage, self.step, self.signal, self.exit_code = stage, step, signal, exit_code


class GateNotPassed(Exception):
    """``strict_gates``: a stage's budget ended before its gate passed."""


@dataclass
class RunHooks:
    env_factory: Optional[EnvFactory] = None
    extra_callbacks: Sequence[BaseCallback] = ()
    extra_output_formats: Sequence[KVWriter] = ()
    eval_sinks: Sequence[EvalSink] = ()
    on_stage_start: Optional[Callable[[int, StageState], None]] = None
    on_stage_end: Optional[Callable[[int, StageState], None]] = None
    log_stdout: bool = True  # SB3's table on stdout (besides TensorBoard)
    messages: list[str] = field(default_factory=list)  # warnings collected for the caller


@dataclass
class RunPlan:
    """What to run, from ``run.json``."""

    config: RunConfig
    command: str
    timesteps: Optional[int] = None
    strict_gates: bool = False
    init_model: Optional[Path] = None  # warm-start source of the first stage (from init_from)
    init_vecnorm: Optional[Path] = None
    init_env_kwargs: Optional[dict] = None  # [env] of the init_from stage, for the ramp of the first stage
    provenance: dict[str, Any] = field(default_factory=dict)  # argv, git commit, versions: written to config.toml
    device: str = "cpu"  # torch device of the models ("auto", "cpu", "cuda"), from run.json


def _stage_config_toml(plan: RunPlan, stage: int) -> str:
    from dinosim.config.toml_writer import dumps

    config = plan.config
    data: dict[str, Any] = {
        "run": {"species": config.species, "algorithm": config.algorithm, "stage": stage,
                "stages": list(config.stages), "seed": config.seed, "n_envs": config.n_envs,
                "vec_env": config.vec_env, "overrides": list(config.overrides), "command": plan.command,
                "timesteps": plan.timesteps, "strict_gates": plan.strict_gates},
        "provenance": plan.provenance,
    }
    data.update(RunConfig.to_dict(config)[f"stage{stage}"])
    return dumps(data)


def _make_logger(folder: Path, hooks: RunHooks) -> tuple[Logger, list[KVWriter]]:
    own: list[KVWriter] = [TensorBoardOutputFormat(str(folder))]
    if hooks.log_stdout:
        own.insert(0, HumanOutputFormat(sys.stdout))
    return Logger(str(folder), own + list(hooks.extra_output_formats)), own


def execute(run_dir: Path, plan: RunPlan, summary: RunSummary, hooks: RunHooks, progress: bool = True) -> None:
    """Run every unfinished stage of ``plan``; ``summary`` is updated and saved as training goes."""
    remove_stale_temp_files(run_dir)
    config = plan.config
    with ProgressReporter(enabled=progress) as reporter:
        for stage in config.stages:
            if summary.stages[stage].status != "finished":
                source_model, source_vecnorm, source_env = _warm_start(run_dir, plan, stage)
                _train_stage(run_dir, plan, summary, hooks, reporter, stage, source_model, source_vecnorm,
                             source_env)
            _check_gate(plan, summary.stages[stage])  # training replaces the stage's state object


def _warm_start(run_dir: Path, plan: RunPlan, stage: int) -> tuple[Optional[Path], Optional[Path], Optional[dict]]:
    """(model, VecNormalize file, ``[env]`` table) that ``stage`` starts from: the final policy of the stage
    :meth:`RunConfig.warm_source` names (by default the previous one), ``--init-from``'s for the run's first
    stage, or nothing (from scratch)."""
    config = plan.config
    if stage == config.stages[0]:
        return plan.init_model, plan.init_vecnorm, plan.init_env_kwargs
    source = config.warm_source(stage)
    if source is None:
        return None, None, None
    model, vecnorm = policy_files(stage_dir(run_dir, source))
    return model, vecnorm, config.env_kwargs(source)


def _check_gate(plan: RunPlan, state: StageState) -> None:
    if plan.strict_gates and not state.gate_passed:
        last = state.last_eval or {}
        raise GateNotPassed(
            f"stage {state.stage}: the budget of {state.budget} steps ended before the gate passed "
            f"(last eval: mean reward {last.get('eval/mean_reward')}, length {last.get('eval/mean_ep_length')}, "
            f"success {last.get('eval/success_rate')}; streak {state.gate_streak}); stopped by --strict-gates"
        )


def _train_stage(run_dir: Path, plan: RunPlan, summary: RunSummary, hooks: RunHooks, reporter: ProgressReporter,
                 stage: int, source_model: Optional[Path], source_vecnorm: Optional[Path],
                 source_env: Optional[dict]) -> None:
    """Train one stage to its budget or gate: resume it from its newest checkpoint, else start it fresh."""
    config = plan.config
    folder = stage_dir(run_dir, stage)
    cur = config.curriculum(stage)
    budget = plan.timesteps if plan.timesteps is not None else cur.timesteps
    env_kwargs = config.env_kwargs(stage)
    checkpoint = _begin_stage(plan, summary, stage, folder, budget)
    where_step = {"step": summary.stages[stage].start_step or 0}
    train_venv = FiniteCheckVecEnv(
        make_vec_env(config.species, env_kwargs, config.n_envs, config.seed, config.vec_env, hooks.env_factory,
                     threads=usable_cpus()),
        lambda: f"stage {stage}, step {where_step['step']}",
    )
    env_spec = EnvSpec(hooks.env_factory or default_env_factory, config.species, dict(env_kwargs), cur.eval_envs)
    clock = StageClock(int(summary.stages[stage].start_step or 0), budget)
    if checkpoint is not None:
        model, train_env = _resume_model(config, summary, stage, checkpoint, train_venv, clock, budget, plan.device)
        resumed_from: Optional[int] = checkpoint[0]
    else:
        model, train_env = _fresh_model(config, summary.stages[stage], stage, train_venv, clock, source_model,
                                        source_vecnorm, plan.device, env_spec.build_one)
        resumed_from = None
    if config.algorithm == "ppo":  # FastPPO: the KL penalty towards the stage's start policy (anchor_coef)
        model.update_threads = usable_cpus() if config.vec_env == "threads" else 1  # same numbers either way
        started = summary.stages[stage]
        model.anchor = stage_anchor(model.policy, folder, cur, started.warm_start is not None,
                                    int(started.start_step or 0), resumed=resumed_from is not None)
    history = load_evaluations(folder, -1 if resumed_from is None else resumed_from)
    state = summary.stages[stage]
    ramp = changed_numeric_weights(source_env, env_kwargs) if source_env is not None else {}
    state.ramped = {k: [old, new] for k, (old, new) in ramp.items()}
    evaluator = _start_evaluator(stage, cur.evaluates_in_background(budget, usable_cpus(), config.vec_env), env_spec)
    state.evaluated_in_background = evaluator is not None
    if evaluator is not None and cur.background_eval == "auto":
        print(f"stage {stage}: evaluating in a background process (curriculum.background_eval = \"auto\"; false "
              "evaluates in the training process)", flush=True)
    eval_envs = [] if evaluator is not None else env_spec.build()
    ctx = StageContext(stage=stage, run_dir=Path(run_dir), stage_dir=folder, summary=summary, state=state,
                       curriculum=cur, train_env=train_env, eval_envs=eval_envs, run_seed=config.seed,
                       eval_sinks=list(hooks.eval_sinks), history=history, wall_time_before=state.wall_time)
    write_evaluations(ctx)
    logger, own_formats = _make_logger(folder / TENSORBOARD_DIR, hooks)
    model.set_logger(logger)
    summary.status = "running"
    ctx.persist(model.num_timesteps)
    if hooks.on_stage_start is not None:
        hooks.on_stage_start(stage, state)
    kwargs = config.algo_kwargs(stage)
    ramp_cb = WarmupRampCallback(ctx, ramp, kwargs.get("ent_coef") if config.algorithm == "ppo" else None)
    gate_cb = EvalGateCallback(ctx, evaluator, env_spec)
    callbacks = _callbacks(ctx, model, reporter, hooks, [ramp_cb, CriticWarmupCallback(ctx), gate_cb], where_step)
    reporter.start_stage(stage, ctx.stage_steps(model.num_timesteps), budget)
    if resumed_from is not None:
        print(f"stage {stage}: resumed from the checkpoint at step {resumed_from}", flush=True)
    try:
        _learn(ctx, model, budget, callbacks)
    except BaseException:  # RunInterrupted (after its checkpoint), TrainingFault, ...
        _close(train_env, eval_envs, own_formats, gate_cb)
        raise
    if ramp_cb.missing:
        hooks.messages.append(f"stage {stage}: the env has no attribute(s) {', '.join(ramp_cb.missing)}; "
                              "their ramp had no effect")
    _save_result(folder, stage, model, train_env, gate_cb)
    state.status = "finished"
    ctx.persist(model.num_timesteps)
    if hooks.on_stage_end is not None:
        hooks.on_stage_end(stage, state)
    _close(train_env, eval_envs, own_formats, gate_cb)


def _save_result(folder: Path, stage: int, model: Any, train_env: Any, gate_cb: EvalGateCallback) -> None:
    """The stage's final pair (checksummed, ``final.json``): the snapshot that passed the gate, else the model as
    trained. Inline the two are the same; in the background training ran ahead of the passing snapshot, and those
    steps are recorded (``trained_to``) but not kept, so a stage's result does not depend on where it evaluated."""
    trained_to = int(model.num_timesteps)
    passed = gate_cb.result()
    if passed is None:
        save_final_pair(folder, model_bytes(model), vecnormalize_bytes(train_env), {"stage": stage, "step": trained_to})
        return
    step, model_zip, vecnorm = passed
    save_final_pair(folder, model_zip, vecnorm, {"stage": stage, "step": step, "trained_to": trained_to})
    if trained_to > step:
        print(f"stage {stage}: the gate passed on the snapshot of step {step}; the {trained_to - step} steps trained "
              "while it was evaluated are not kept", flush=True)


def _begin_stage(plan: RunPlan, summary: RunSummary, stage: int, folder: Path,
                 budget: int) -> Optional[tuple[int, Path, Path, Path]]:
    """Prepare the stage folder and ``summary.stages[stage]``; return the checkpoint to resume from, or None for a
    fresh start (a stage not running yet, or killed before its first checkpoint: its ``best/`` is removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = summary.stages[stage]
    checkpoint = _intact_checkpoint(folder, stage) if state.status == "running" else None
    resuming = checkpoint is not None
    if not resuming:
        start = state.start_step if state.status == "running" and state.start_step is not None else summary.global_step
        state = summary.stages[stage] = StageState(stage=stage, status="running", budget=budget, start_step=start)
        shutil.rmtree(folder / BEST_DIR, ignore_errors=True)  # left by a killed attempt of this stage
    state.budget = budget
    if not (folder / STAGE_CONFIG_FILE).exists():
        atomic_write_text(folder / STAGE_CONFIG_FILE, _stage_config_toml(plan, stage))
    return checkpoint


def _resume_model(config: RunConfig, summary: RunSummary, stage: int, checkpoint: tuple[int, Path, Path, Path],
                  train_venv: Any, clock: StageClock, budget: int, device: str) -> tuple[Any, Any]:
    """(model, training VecNormalize) from a checkpoint; ``summary.stages[stage]`` becomes the stage state saved
    with it."""
    from stable_baselines3.common.vec_env import VecNormalize

    _, model_path, vecnorm_path, meta_path = checkpoint
    saved = StageState.checked(read_json(meta_path)["state"])
    saved.budget, saved.status = budget, "running"
    summary.stages[stage] = saved
    with loading(vecnorm_path, "normalisation file"):
        train_env = VecNormalize.load(str(vecnorm_path), train_venv)
    train_env.training = True
    with loading(model_path, f"{config.algorithm} checkpoint"):
        model = algorithm_class(config.algorithm).load(str(model_path), env=train_env, device=device,
                                                       custom_objects=stage_schedules(config, stage, clock))
    if hasattr(model, "learning_starts"):  # the replay buffer is not checkpointed: refill a batch first
        batch_size = int(algo_setting(config, stage, "batch_size"))
        model.learning_starts = max(model.learning_starts, model.num_timesteps + batch_size)
    return model, train_env


def _fresh_model(config: RunConfig, state: StageState, stage: int, train_venv: Any, clock: StageClock,
                 source_model: Optional[Path], source_vecnorm: Optional[Path], device: str,
                 new_stage_env: Callable[[], Any]) -> tuple[Any, Any]:
    """(model, training VecNormalize) built from the stage's config, warm-started from ``source_model``
    (``new_stage_env`` builds one env of the stage, see :func:`warm_start`)."""
    kwargs = config.algo_kwargs(stage)
    train_env = wrap_normalize(train_venv, config.algorithm, float(algo_setting(config, stage, "gamma")))
    model = build_model(config, stage, train_env, clock, seed=config.seed, device=device)
    if source_model is not None:
        keep_log_std = "log_std_init" in (kwargs.get("policy_kwargs") or {})
        cur = config.curriculum(stage)
        warm_start(model, source_model, source_vecnorm, train_env, config.algorithm, keep_log_std,
                   obs_norm_count=cur.obs_norm_count, new_stage_env=new_stage_env, new_inputs=cur.new_inputs)
        state.warm_start = str(source_model)
    model.num_timesteps = int(state.start_step or 0)
    if hasattr(model, "learning_starts"):  # off-policy: random exploration counts from the stage start
        model.learning_starts = int(model.learning_starts) + model.num_timesteps
    return model, train_env


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform tells it, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _start_evaluator(stage: int, wanted: bool, spec: EnvSpec) -> Optional[BackgroundEvaluator]:
    """The stage's background evaluation process when ``background_eval`` is on and ``spec`` can be sent to it
    (a custom env factory that cannot be pickled evaluates inline, with a note)."""
    if not wanted:
        return None
    if not spec.picklable():
        print(f"stage {stage}: the env factory cannot be sent to an evaluation process; evaluating inline",
              file=sys.stderr, flush=True)
        return None
    return BackgroundEvaluator(spec)


def _callbacks(ctx: StageContext, model: Any, reporter: ProgressReporter, hooks: RunHooks,
               stage_cbs: list[BaseCallback], where_step: dict[str, int]) -> list[BaseCallback]:
    """The stage's SB3 callbacks, in the order they run each step."""

    class _Where(BaseCallback):  # the global step that NaN/inf messages of the training envs name
        def _on_step(self) -> bool:
            where_step["step"] = self.num_timesteps
            return True

    stage = ctx.stage
    return [
        _Where(), FiniteLossCallback(lambda: f"stage {stage}, step {model.num_timesteps}"),
        RewardComponentCallback(ctx), SignalCallback(), *stage_cbs, CheckpointCallback(ctx),
        ProgressCallback(reporter, int(ctx.state.start_step or 0)), *hooks.extra_callbacks,
    ]


def _learn(ctx: StageContext, model: Any, budget: int, callbacks: list[BaseCallback]) -> None:
    """``model.learn`` for the rest of the budget (nothing once the gate passed); Ctrl-C saves a checkpoint and
    raises :class:`RunInterrupted`."""
    state = ctx.state
    remaining = int(state.start_step or 0) + budget - int(model.num_timesteps)
    try:
        if remaining > 0 and not state.gate_passed:
            model.learn(total_timesteps=remaining, callback=CallbackList(callbacks), reset_num_timesteps=False,
                        tb_log_name=f"stage{ctx.stage}")
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (dinosim.training.stop_signals.Terminated)
        with signals_deferred():  # a second signal must not tear the checkpoint
            step = save_checkpoint(ctx, model)
        raise RunInterrupted(ctx.stage, step, signal_name(exc), exit_code_for(exc)) from None


def _intact_checkpoint(folder: Path, stage: int) -> Optional[tuple[int, Path, Path, Path]]:
    """The newest checkpoint whose files match their checksums; newer damaged ones are reported and removed (they
    would otherwise shadow the one training continues from)."""
    checkpoint, damaged = newest_intact_checkpoint(folder, StageState.checked)
    for step, reason in damaged:
        print(f"stage {stage}: skipping the damaged checkpoint at step {step}: {reason}", file=sys.stderr, flush=True)
    for entry in complete_checkpoints(folder):
        if checkpoint is None or entry[0] > checkpoint[0]:
            remove_checkpoint(entry)
    if damaged and checkpoint is None:
        print(f"stage {stage}: no intact checkpoint left; the stage starts again", file=sys.stderr, flush=True)
    return checkpoint


def _close(train_env: Any, eval_envs: list, formats: list[KVWriter], gate_cb: EvalGateCallback) -> None:
    gate_cb.close()
    for env in (train_env, *eval_envs):
        try:
            env.close()
        except Exception:  # noqa: BLE001 - subprocess workers may already be gone after Ctrl-C
            pass
    for fmt in formats:
        fmt.close()
