"""SB3 callbacks of a dinosim stage: reward components, evaluation + gate, checkpoints, warm-up and env ramp.

All callbacks share one :class:`StageContext` (the stage's settings, run folder, :class:`StageState` and eval
history). Steps: ``model.num_timesteps`` is the GLOBAL step (continues across stages and resumes); stage-local
steps are ``num_timesteps - state.start_step``. Evaluations happen every ``eval_freq`` stage steps (inside
``_on_step``, so a passed gate can stop the stage), checkpoints every ``save_freq`` stage steps at rollout
boundaries (after an update, never mid-rollout), so resuming continues from a clean point.
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from dinosim.config.settings import CurriculumSettings
from dinosim.run_integrity import model_bytes, save_best_pair, vecnormalize_bytes, write_checkpoint
from dinosim.runfolder import (
    EVAL_KIND_KEY,
    EVAL_SEEDS_KEY,
    EVALUATIONS_FILE,
    GATE_KIND,
    METRICS_FILE,
    SCREEN_KIND,
    TRIAL_METRICS_ENV,
    append_json_line,
    atomic_write_bytes,
    prune_checkpoints,
)
from dinosim.training.evaluation import (
    REWARD_PREFIX,
    EvalResult,
    gate_seeds,
    model_policy,
    obs_normalizer,
    run_seeded_episodes,
)
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
    eval_envs: list  # gymnasium envs with the stage's own [env] values, stepped together by evaluations
    run_seed: int = 0  # the run's seed: picks the run's gate-evaluation seed stream
    eval_sinks: list[EvalSink] = field(default_factory=list)  # receive every metrics.jsonl record
    history: dict[str, list] = field(default_factory=lambda: {"timesteps": [], "results": [], "ep_lengths": [],
                                                                 "successes": []})
    segment_start: float = field(default_factory=time.time)
    wall_time_before: float = 0.0

    def stage_steps(self, global_step: int) -> int:
        return int(global_step) - int(self.state.start_step or 0)

    def where(self, global_step: int) -> str:
        return f"stage {self.stage}, step {global_step}"

    def update_progress(self, global_step: int) -> None:
        self.state.timesteps_used = self.stage_steps(global_step)
        self.state.wall_time = self.wall_time_before + (time.time() - self.segment_start)
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


def write_evaluations(ctx: StageContext) -> None:
    """``evaluations.npz`` like SB3's EvalCallback (timesteps, results, ep_lengths) plus ``successes`` (NaN: n/a)."""
    buffer = io.BytesIO()
    h = ctx.history
    np.savez(buffer, timesteps=np.asarray(h["timesteps"], dtype=np.int64),
             results=np.asarray(h["results"], dtype=np.float64), ep_lengths=np.asarray(h["ep_lengths"], dtype=np.int64),
             successes=np.asarray(h["successes"], dtype=np.float64))
    atomic_write_bytes(ctx.stage_dir / EVALUATIONS_FILE, buffer.getvalue())


def load_evaluations(stage_dir: Path, up_to_step: Optional[int]) -> dict[str, list]:
    """The eval history in ``evaluations.npz``, without evaluations after global step ``up_to_step``."""
    path = Path(stage_dir) / EVALUATIONS_FILE
    history: dict[str, list] = {"timesteps": [], "results": [], "ep_lengths": [], "successes": []}
    if not path.exists():
        return history
    try:
        with np.load(path) as data:
            for i, step in enumerate(data["timesteps"]):
                if up_to_step is None or step <= up_to_step:
                    for key in history:
                        history[key].append(data[key][i].tolist())
    except Exception as exc:  # noqa: BLE001 - a damaged file: the history is a record, training does not need it
        print(f"warning: {path}: unreadable ({type(exc).__name__}); it starts again from this point "
              "(metrics.jsonl keeps every evaluation)", file=sys.stderr, flush=True)
        return {key: [] for key in history}
    return history


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


class EvalGateCallback(BaseCallback):
    """Every ``eval_freq`` stage steps: a screening evaluation, and a gate evaluation once screenings pass.

    The rule is :class:`~dinosim.config.settings.CurriculumSettings` (``screen_passes``, ``gate_passes``,
    ``rank``). Both evaluations play the current snapshot (deterministic policy, frozen copy of the training
    observation statistics) on episode seeds of the run's gate stream, which training never uses; each writes a
    ``metrics.jsonl`` record (``eval_kind`` ``"screen"`` or ``"gate"``, ``eval_seeds`` = [first, end)),
    ``eval/*`` (screening) or ``gate/*`` (gate) TensorBoard scalars, the eval sinks, and ``best/`` when its
    lower bound ranks above the best so far. The stage stops (returns False) at the first gate evaluation that
    passes.
    """

    def __init__(self, ctx: StageContext, deterministic: bool = True) -> None:
        super().__init__()
        self.ctx = ctx
        self.deterministic = deterministic

    def _on_step(self) -> bool:
        ctx, state = self.ctx, self.ctx.state
        stage_steps = ctx.stage_steps(self.num_timesteps)
        if stage_steps - state.last_eval_stage_step < ctx.curriculum.eval_freq:
            return True
        state.last_eval_stage_step = stage_steps - stage_steps % ctx.curriculum.eval_freq
        return self.evaluate_now()

    def _play(self, episodes: int, normalize: Callable) -> tuple[EvalResult, range]:
        state = self.ctx.state
        seeds = gate_seeds(self.ctx.run_seed, state.eval_seed_next, episodes)
        state.eval_seed_next += episodes
        result = run_seeded_episodes(model_policy(self.model, self.deterministic), self.ctx.eval_envs, seeds,
                                     normalize)
        return result, seeds

    def evaluate_now(self) -> bool:
        ctx, state, step, cur = self.ctx, self.ctx.state, int(self.num_timesteps), self.ctx.curriculum
        normalize = obs_normalizer(ctx.train_env)
        result, seeds = self._play(cur.eval_episodes, normalize)
        state.evaluations += 1
        state.gate_streak = state.gate_streak + 1 if cur.screen_passes(result.stats()) else 0
        self._record(result, seeds, SCREEN_KIND, step)
        h = ctx.history
        h["timesteps"].append(step)
        h["results"].append(result.returns)
        h["ep_lengths"].append(result.lengths)
        h["successes"].append([math.nan if s is None else float(s) for s in result.successes])
        write_evaluations(ctx)
        if state.gate_streak >= cur.required_consecutive:
            gate, gate_seed_range = self._play(cur.gate_episodes, normalize)
            passed = cur.gate_passes(gate.stats())
            self._record(gate, gate_seed_range, GATE_KIND, step)
            if passed:
                state.gate_passed, state.gate_passed_at = True, step
            else:
                state.gate_streak = 0
        self.logger.record("curriculum/gate_streak", state.gate_streak)
        ctx.persist(step)
        self.logger.dump(step)
        return not state.gate_passed

    def _record(self, result: EvalResult, seeds: range, kind: str, step: int) -> None:
        ctx, state, cur = self.ctx, self.ctx.state, self.ctx.curriculum
        stats = result.stats()
        bounds = stats.lower_bounds(cur.gate_confidence)
        metrics = result.metrics()
        metrics["eval/episodes"] = stats.episodes
        metrics["eval/return_lb"] = bounds["return"]
        metrics["eval/success_lb"] = bounds.get("success")
        prefix = "eval/" if kind == SCREEN_KIND else "gate/"
        for key, value in metrics.items():
            if value is not None and key != "eval/std_reward":
                self.logger.record(prefix + key[len("eval/"):], value)
        if kind == SCREEN_KIND:
            state.last_eval = {"global_step": step, **metrics}
        rank = cur.rank(stats)
        if state.best_eval is None or rank > tuple(state.best_eval.get("rank", (-math.inf, -math.inf))):
            save_best_pair(ctx.stage_dir, model_bytes(self.model), vecnormalize_bytes(ctx.train_env),
                           {"global_step": step, EVAL_KIND_KEY: kind, **metrics})
            state.best_eval, state.best_step = {**metrics, EVAL_KIND_KEY: kind, "rank": list(rank)}, step
        # eval component means are "eval/reward/<term>": "reward/<term>" is the training-rollout series
        record = {"global_step": step, "stage": ctx.stage, **metrics, EVAL_KIND_KEY: kind,
                  EVAL_SEEDS_KEY: [seeds.start, seeds.stop]}
        append_json_line(ctx.run_dir / METRICS_FILE, record)
        trial_path = os.environ.get(TRIAL_METRICS_ENV)
        if trial_path:
            append_json_line(Path(trial_path), record)
        for sink in ctx.eval_sinks:
            sink(record)


class CheckpointCallback(BaseCallback):
    """Every ``save_freq`` stage steps, at the start of a rollout (after an update): a complete checkpoint."""

    def __init__(self, ctx: StageContext) -> None:
        super().__init__()
        self.ctx = ctx

    def _on_rollout_start(self) -> None:
        ctx = self.ctx
        stage_steps = ctx.stage_steps(self.num_timesteps)
        if stage_steps - ctx.state.last_checkpoint_stage_step >= ctx.curriculum.save_freq:
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
