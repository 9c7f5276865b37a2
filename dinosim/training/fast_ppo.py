"""`FastPPO`: SB3's PPO with a leaner rollout collection; the PPO that ``dinosim train``/``curriculum`` build.

Same algorithm, same numbers: :meth:`FastPPO.collect_rollouts` is SB3's ``OnPolicyAlgorithm.collect_rollouts``
step for step (same policy outputs and random draws, same env calls, same callback calls with the same local
names, same timeout bootstrap, same buffer contents, same GAE), written with less Python and torch overhead per
step:

* the policy's forward pass is :class:`~dinosim.training.lean_policy.LeanActorCritic` (half the torch calls,
  bit-identical results);
* the buffer row is written directly (SB3's ``RolloutBuffer.add`` copies every array once more and clones the
  value and log-prob tensors);
* a ``VecNormalize`` training env is stepped by :func:`~dinosim.training.lean_normalize.normalized_step` (the
  same statistics without its deep copies and ``np.mean``/``np.var`` wrappers);
* actions are clipped with ``np.minimum(np.maximum(...))``: ``np.clip``'s values (NaN included) without its
  Python dispatch layers;
* the episode-info buffer is only visited for the envs whose episode ended (SB3 looks into every info dict on every
  step; ``Monitor`` adds ``episode`` on the last step only).

Anything the lean path does not reproduce exactly (gSDE, dict observations, custom policies or rollout buffers, a
GPU) falls back to SB3's own ``collect_rollouts``. :meth:`FastPPO.train` is SB3's update with two switches that
leave its numbers unchanged (the test compares the trained parameters bit for bit): Adam's multi-tensor
(``foreach``) implementation, one call per operation for all 13 parameter tensors instead of one per tensor, and no
argument validation in ``torch.distributions`` (it only raises on NaN parameters: a NaN policy is then stopped by
the NaN checks of :mod:`dinosim.training.faults` instead). With an ``anchor`` (``curriculum.anchor_coef`` > 0 on a
warm-started stage) the update's loss also holds a KL penalty towards the stage's start policy; without one (the
default) the update is SB3's. With ``update_threads`` >= 2 (``--vec-env threads`` on a machine with 2+ usable CPUs)
and a core idle for half the last rollout or more, the update computes the actor's and the critic's gradients on
two threads at once (:mod:`dinosim.training.split_update`: the same numbers). Saved models are
ordinary PPO zips (``PPO.load`` reads them; the class is not stored). ``tests/test_training_fast_ppo.py`` compares
the rollout buffers and the trained parameters of :class:`FastPPO` and ``PPO`` for the same seed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from dinosim.training import split_update
from dinosim.training.anchor import PolicyAnchor
from dinosim.training.lean_normalize import normalized_step, supported
from dinosim.training.lean_policy import LeanActorCritic

SPARE_CPUS_TO_SPLIT = 0.5  # idle CPUs (average over the last rollout) for the update to take a second thread


class FastPPO(PPO):
    """PPO whose rollout collection runs :func:`lean_collect` when it can (see the module docstring).

    ``anchor``: set by the curriculum on a warm-started stage with ``curriculum.anchor_coef`` > 0; every update
    then adds its KL penalty towards the stage's start policy (:mod:`dinosim.training.anchor`). Not saved.
    """

    anchor: Optional[PolicyAnchor] = None
    update_threads: int = 1  # >= 2: split the update over two threads after a rollout with a spare core
    _idle: Optional[split_update.IdleMeter] = None  # measures the spare CPU of each rollout (update_threads >= 2)
    _spare_cpus: float = 0.0  # idle CPUs, on average, during the last rollout
    _update_pool: Optional[ThreadPoolExecutor] = None  # the split update's critic thread, made on first use
    _RUNTIME = ("anchor", "update_threads", "_idle", "_spare_cpus", "_update_pool")  # not saved

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *self._RUNTIME]  # a saved model stays an ordinary PPO zip

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer,
                         n_rollout_steps: int) -> bool:
        meter = self._idle_meter()
        forward = LeanActorCritic.of(self.policy) if type(rollout_buffer) is RolloutBuffer else None
        if forward is None:
            done = super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        else:
            done = lean_collect(self, forward, env, callback, rollout_buffer, n_rollout_steps)
        self._spare_cpus = meter.idle_cpus() if meter is not None else 0.0
        return done

    def _idle_meter(self) -> Optional[split_update.IdleMeter]:
        if self.update_threads < 2:
            return None
        if self._idle is None:
            self._idle = split_update.IdleMeter()
        self._idle.start()
        return self._idle

    def _splits_update(self) -> bool:
        """Whether this update runs on two threads: asked for, a core idle for half the last rollout or more,
        no anchor, and a model whose update splits exactly."""
        return (self.update_threads >= 2 and self._spare_cpus >= SPARE_CPUS_TO_SPLIT
                and self.anchor is None and split_update.supported(self))

    def train(self) -> None:
        """SB3's ``PPO.train`` with multi-tensor Adam and without distribution argument checks (same numbers)."""
        for group in self.policy.optimizer.param_groups:  # set at every update: loading restores saved groups
            group["foreach"] = True
        validate = th.distributions.Distribution._validate_args
        th.distributions.Distribution.set_default_validate_args(False)
        try:
            if self._splits_update():
                if self._update_pool is None:
                    self._update_pool = ThreadPoolExecutor(1, thread_name_prefix="dinosim-critic")
                split_update.split_train(self, self._update_pool)
                self.logger.record("train/update_threads", 2)
            elif self.anchor is None:
                super().train()
            else:
                self._anchored_train(self.anchor)
        finally:
            th.distributions.Distribution.set_default_validate_args(validate)

    def _anchored_train(self, anchor: PolicyAnchor) -> None:
        """SB3's update with the anchor's ``coef * KL`` in every minibatch's loss; logs ``train/anchor_kl`` (mean
        over the minibatches, before each step) and ``train/anchor_coef``."""
        coef = anchor.coef_at(self.num_timesteps)
        with anchor.in_loss(self, coef) as kls:
            super().train()
        self.logger.record("train/anchor_coef", coef)
        self.logger.record("train/anchor_kl", float(np.mean(kls)) if kls else 0.0)


def lean_collect(model: PPO, forward: LeanActorCritic, env: VecEnv, callback: BaseCallback,
                 rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
    """SB3's ``collect_rollouts`` for a Box action space, a plain ``RolloutBuffer`` and a policy ``forward``
    reproduces; the comments name the SB3 statement each part stands for."""
    assert model._last_obs is not None, "No previous observation was provided"
    model.policy.set_training_mode(False)
    forward.start_rollout()
    n_steps = 0
    rollout_buffer.reset()
    callback.on_rollout_start()
    low, high = model.action_space.low, model.action_space.high
    num_envs, gamma = env.num_envs, model.gamma
    dones: Optional[np.ndarray] = None
    new_obs = model._last_obs
    step = (lambda a: normalized_step(env, a)) if supported(env) else env.step  # type: ignore[arg-type]
    while n_steps < n_rollout_steps:
        actions, values, log_probs = forward.act(model._last_obs)  # self.policy(obs_tensor)
        clipped_actions = np.minimum(np.maximum(actions, low), high)  # np.clip (the same ufunc math, less Python)
        new_obs, rewards, dones, infos = step(clipped_actions)  # env.step
        model.num_timesteps += num_envs
        callback.update_locals(locals())  # the callbacks read the names SB3 uses ("infos", "dones", ...)
        if not callback.on_step():
            return False
        ended = dones.nonzero()[0]
        if len(ended):  # _update_info_buffer: only a finished episode's info carries "episode"
            model._update_info_buffer([infos[i] for i in ended], dones[ended])
        n_steps += 1
        for idx in ended:  # timeout bootstrap with the value of the terminal observation (SB3 issue #633)
            info = infos[idx]
            if info.get("terminal_observation") is not None and info.get("TimeLimit.truncated", False):
                terminal_obs = np.array(info["terminal_observation"]).reshape((-1, *model.observation_space.shape))
                terminal_value = forward.values(terminal_obs)[0]
                rewards[idx] += gamma * terminal_value
        _add(rollout_buffer, model._last_obs, actions, rewards, model._last_episode_starts, values, log_probs)
        model._last_obs = new_obs
        model._last_episode_starts = dones
    last_values = forward.values(new_obs)
    rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)
    values = last_values  # noqa: F841  (SB3 hands the last values to the callbacks under this name)
    callback.update_locals(locals())
    callback.on_rollout_end()
    return True


def _add(buf: RolloutBuffer, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
         episode_starts: np.ndarray, values: "object", log_probs: "object") -> None:
    """``RolloutBuffer.add`` without its extra copies (assignment into the buffer's rows copies and casts)."""
    pos = buf.pos
    buf.observations[pos] = obs
    buf.actions[pos] = actions.reshape((buf.n_envs, buf.action_dim))
    buf.rewards[pos] = rewards
    buf.episode_starts[pos] = episode_starts
    buf.values[pos] = values.numpy().reshape(-1)  # type: ignore[attr-defined]
    buf.log_probs[pos] = log_probs.numpy()  # type: ignore[attr-defined]
    buf.pos = pos + 1
    if buf.pos == buf.buffer_size:
        buf.full = True
