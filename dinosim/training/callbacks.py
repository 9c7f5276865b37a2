"""SB3 callbacks of a dinosim stage: reward components, checkpoints, warm-up, env ramp and physical signals.

All callbacks share one :class:`StageContext` (the stage's settings, run folder, :class:`StageState` and eval
history). Steps: ``model.num_timesteps`` is the GLOBAL step (continues across stages and resumes); stage-local
steps are ``num_timesteps - state.start_step``. Evaluations (:mod:`dinosim.training.eval_gate`) happen every
``eval_freq`` stage steps (inside ``_on_step``, so a passed gate can stop the stage), checkpoints every
``save_freq`` stage steps at rollout boundaries (after an update, never mid-rollout), so resuming continues from a
clean point.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from dinosim.config.settings import CurriculumSettings
from dinosim.run_integrity import model_bytes, vecnormalize_bytes, write_checkpoint
from dinosim.runfolder import prune_checkpoints
from dinosim.training.evaluation import REWARD_PREFIX
from dinosim.training.schedules import ramp_typed
from dinosim.training.state import RunSummary, StageState

EvalSink = Callable[[dict[str, Any]], None]
_NUMBERS = (int, float, np.floating, np.integer)


@dataclass
class StageContext:
    """Everything the callbacks of one stage share."""

    stage: int
    run_dir: Path
    stage_dir: Path
    summary: RunSummary
    state: StageState
    curriculum: CurriculumSettings
    train_env: Any  # the training VecNormalize
    eval_envs: list  # gymnasium envs with the stage's own [env] values, stepped together by inline evaluations
    run_seed: int = 0  # the run's seed: picks the run's gate-evaluation seed stream
    eval_sinks: list[EvalSink] = field(default_factory=list)  # receive every metrics.jsonl record
    history: dict[str, list] = field(default_factory=lambda: {"timesteps": [], "results": [], "ep_lengths": [],
                                                                 "successes": []})
    settle_evaluations: Callable[[], None] = lambda: None  # wait for a background evaluation in flight
    segment_start: float = field(default_factory=time.time)
    wall_time_before: float = 0.0
    segment_cpu_start: float = field(default_factory=time.process_time)

    def __post_init__(self) -> None:
        self.cpu_time_before = self.state.cpu_time  # None: a state from before CPU time was recorded stays None

    def stage_steps(self, global_step: int) -> int:
        return int(global_step) - int(self.state.start_step or 0)

    def where(self, global_step: int) -> str:
        return f"stage {self.stage}, step {global_step}"

    def update_progress(self, global_step: int) -> None:
        self.state.timesteps_used = self.stage_steps(global_step)
        self.state.wall_time = self.wall_time_before + (time.time() - self.segment_start)
        if self.cpu_time_before is not None:
            self.state.cpu_time = self.cpu_time_before + (time.process_time() - self.segment_cpu_start)
        self.summary.global_step = int(global_step)

    def persist(self, global_step: int) -> None:
        self.update_progress(global_step)
        self.summary.save(self.run_dir)


def save_checkpoint(ctx: StageContext, model: Any, keep: Optional[int] = None) -> int:
    """Model, VecNormalize, then a meta file (the stage state and both files' sha256): written as one unit by
    :func:`dinosim.run_integrity.write_checkpoint`; only a checkpoint whose meta file matches both files counts."""
    step = int(model.num_timesteps)
    ctx.update_progress(step)
    ctx.state.last_checkpoint_stage_step = ctx.stage_steps(step)
    write_checkpoint(ctx.stage_dir, step, model_bytes(model), vecnormalize_bytes(ctx.train_env),
                     {"global_step": step, "stage": ctx.stage, "state": asdict(ctx.state)})
    prune_checkpoints(ctx.stage_dir, ctx.curriculum.keep_checkpoints if keep is None else keep)
    ctx.summary.save(ctx.run_dir)
    return step


class RewardComponentCallback(BaseCallback):
    """``reward/<term>``: mean per-episode sum of each reward component over episodes finished since the last dump.

    Also records ``curriculum/stage`` and ``curriculum/gate_streak`` so every dump carries them. Hot path: the
    ``reward_<term>`` keys are found once per info layout (re-scanned whenever an info's size changes, e.g. the
    last step of an episode carries ``episode``/``terminal_observation``), not on every step.
    """

    def __init__(self, ctx: StageContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._sums: list[dict[str, float]] = []
        self._layout: tuple[int, tuple[str, ...]] = (-1, ())

    def _keys(self, info: dict[str, Any]) -> tuple[str, ...]:
        size, keys = self._layout
        if len(info) != size:
            keys = tuple(k for k, v in info.items() if k.startswith(REWARD_PREFIX) and isinstance(v, _NUMBERS))
            self._layout = (len(info), keys)
        return keys

    def _record_header(self) -> None:
        self.logger.record("curriculum/stage", self.ctx.stage)
        self.logger.record("curriculum/gate_streak", self.ctx.state.gate_streak)

    def _on_training_start(self) -> None:
        self._sums = [{} for _ in range(self.training_env.num_envs)]
        self._record_header()

    def _on_rollout_end(self) -> None:
        self._record_header()

    def _on_step(self) -> bool:
        infos = self.locals.get("infos") or []
        dones = self.locals.get("dones")
        for i, info in enumerate(infos):
            sums = self._sums[i]
            for key in self._keys(info):
                sums[key] = sums.get(key, 0.0) + info[key]
            if dones is not None and dones[i]:
                for key, value in sums.items():
                    self.logger.record_mean(f"reward/{key[len(REWARD_PREFIX):]}", float(value))
                self._sums[i] = {}
                self._record_header()  # off-policy algorithms dump inside the rollout, after an episode ends
        return True


class CheckpointCallback(BaseCallback):
    """Every ``save_freq`` stage steps, at the start of a rollout (after an update): a complete checkpoint."""

    def __init__(self, ctx: StageContext) -> None:
        super().__init__()
        self.ctx = ctx

    def _on_rollout_start(self) -> None:
        ctx = self.ctx
        stage_steps = ctx.stage_steps(self.num_timesteps)
        if stage_steps - ctx.state.last_checkpoint_stage_step >= ctx.curriculum.save_freq:
            ctx.settle_evaluations()  # the checkpoint's state then counts every evaluation scheduled before it
            save_checkpoint(ctx, self.model)

    def _on_step(self) -> bool:
        return True


class CriticWarmupCallback(BaseCallback):
    """A warm-started PPO stage trains only its value function for ``critic_warmup_timesteps`` stage steps.

    The copied value function predicts the previous stage's returns; until it has learnt the new rewards its
    advantages are noise, and policy updates on them wear away the skill the stage was warm-started from. The
    actor's parameters (``mlp_extractor.policy_net``, ``action_net``, ``log_std``) get ``requires_grad = False``
    during the warm-up (Adam skips parameters without gradients); decided at every rollout start, so a resume
    inside the warm-up continues it. Logged as ``curriculum/critic_warmup``. Off-policy algorithms: no effect.
    """

    def __init__(self, ctx: StageContext) -> None:
        super().__init__()
        self.ctx = ctx

    def _actor_parameters(self) -> list:
        policy = self.model.policy
        parts = [getattr(policy.mlp_extractor, "policy_net", None), getattr(policy, "action_net", None)]
        params = [p for part in parts if part is not None for p in part.parameters()]
        log_std = getattr(policy, "log_std", None)
        return params + ([log_std] if log_std is not None else [])

    def _on_rollout_start(self) -> None:
        ctx = self.ctx
        if not ctx.state.warm_start or not hasattr(self.model.policy, "mlp_extractor"):
            return
        warming = ctx.stage_steps(self.num_timesteps) < ctx.curriculum.critic_warmup_timesteps
        for param in self._actor_parameters():
            param.requires_grad_(not warming)
        self.logger.record("curriculum/critic_warmup", int(warming))

    def _on_step(self) -> bool:
        return True


class WarmupRampCallback(BaseCallback):
    """Entering a stage: PPO ``ent_coef`` warm-up, and a linear ramp of every changed ``[env]`` value.

    ``ramp``: ``{key: (previous stage value, this stage value)}``; the training envs get the interpolated value
    through ``EnvParamSetter.set_env_params`` about 100 times over ``ramp_timesteps`` (and the stage value from then
    on). The eval envs always use the stage's own values, so the gate judges the stage's task. Logged as
    ``curriculum/ramp/<key>``, ``curriculum/ramp_progress`` and ``curriculum/warmup`` (1 while warming up).
    """

    def __init__(self, ctx: StageContext, ramp: dict[str, tuple[Any, Any]], base_ent_coef: Optional[float]) -> None:
        super().__init__()
        self.ctx = ctx
        self.ramp = ramp
        self.base_ent_coef = base_ent_coef
        self._next_update = 0
        self._done = False
        self.missing: list[str] = []

    def _ramp_now(self, stage_steps: int) -> None:
        cur = self.ctx.curriculum
        values = {k: ramp_typed(old, new, stage_steps, cur.ramp_timesteps) for k, (old, new) in self.ramp.items()}
        results = self.training_env.env_method("set_env_params", values)
        self.missing = sorted({k for r in results for k, known in r.items() if not known})
        for key, value in values.items():
            self.logger.record(f"curriculum/ramp/{key}", value)
        progress = 1.0 if cur.ramp_timesteps <= 0 else min(stage_steps / cur.ramp_timesteps, 1.0)
        self.logger.record("curriculum/ramp_progress", progress)
        self._done = progress >= 1.0
        self._next_update = stage_steps + max(cur.ramp_timesteps // 100, 1)

    def _on_training_start(self) -> None:
        if self.ramp:
            self._ramp_now(self.ctx.stage_steps(self.num_timesteps))
        self._warmup(self.ctx.stage_steps(self.num_timesteps))

    def _warmup(self, stage_steps: int) -> None:
        cur = self.ctx.curriculum
        warming = stage_steps < cur.warmup_timesteps
        self.logger.record("curriculum/warmup", int(warming))
        if cur.warmup_ent_coef is not None and self.base_ent_coef is not None and hasattr(self.model, "ent_coef"):
            self.model.ent_coef = cur.warmup_ent_coef if warming else self.base_ent_coef
            self.logger.record("curriculum/ent_coef", self.model.ent_coef)

    def _on_rollout_start(self) -> None:
        self._warmup(self.ctx.stage_steps(self.num_timesteps))

    def _on_step(self) -> bool:
        if self.ramp and not self._done:
            stage_steps = self.ctx.stage_steps(self.num_timesteps)
            if stage_steps >= self._next_update:
                self._ramp_now(stage_steps)
        return True


SIGNAL_PREFIX = "signal/"
# info key -> how an episode is summarised: "mean" of the per-step value, "absmean" magnitude of that mean (a steady
# sideways walk or spin in either direction, not sway), "last" value.
SIGNALS: dict[str, str] = {
    "forward_velocity": "mean", "lateral_velocity": "absmean", "yaw_rate": "absmean", "drift": "last",
    "gait_asymmetry": "mean",
}
FELL_SIGNAL = "signal/fell"  # fraction of finished episodes that ended in a fall


class SignalCallback(BaseCallback):
    """``signal/<name>``: per-episode summaries of the env's physical signals over training-rollout episodes.

    For each finished episode: the mean of ``forward_velocity`` and ``gait_asymmetry``, the magnitude of the mean
    of ``lateral_velocity`` and ``yaw_rate`` (steady sideways walking or spinning, not sway), the final ``drift``
    (m from the spawn point), and ``signal/fell`` (1 when the episode ended with a ``fell_*`` termination reason).
    Averaged over the episodes finished since the last dump, like ``reward/<term>``. Envs without these info keys
    log nothing. ``dinosim diagnose`` reads them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sums: list[dict[str, float]] = []
        self._steps: list[int] = []

    def _on_training_start(self) -> None:
        self._sums = [{} for _ in range(self.training_env.num_envs)]
        self._steps = [0] * self.training_env.num_envs

    def _on_step(self) -> bool:
        infos = self.locals.get("infos") or []
        dones = self.locals.get("dones")
        for i, info in enumerate(infos):
            sums = self._sums[i]
            self._steps[i] += 1
            for key, how in SIGNALS.items():
                value = info.get(key)
                if isinstance(value, _NUMBERS):
                    sums[key] = float(value) if how == "last" else sums.get(key, 0.0) + float(value)
            if dones is not None and dones[i]:
                self._episode_end(sums, self._steps[i], str(info.get("termination_reason", "")))
                self._sums[i], self._steps[i] = {}, 0
        return True

    def _episode_end(self, sums: dict[str, float], steps: int, reason: str) -> None:
        if not sums or steps <= 0:
            return
        for key, value in sums.items():
            how = SIGNALS[key]
            summary = value if how == "last" else value / steps
            self.logger.record_mean(SIGNAL_PREFIX + key, abs(summary) if how == "absmean" else summary)
        self.logger.record_mean(FELL_SIGNAL, 1.0 if reason.startswith("fell") else 0.0)
