"""`normalized_step`: SB3's ``VecNormalize.step_wait`` for a training rollout, with less numpy overhead per step.

``VecNormalize`` deep-copies every observation before normalising it (the result is a new array anyway) and updates
its running statistics with ``np.mean``/``np.var``, whose Python wrappers cost more than the arithmetic on a batch of
4 rows. :func:`normalized_step` performs the same numpy operations on the same dtypes in the same order, on the
``VecNormalize`` object's own statistics (``obs_rms``, ``ret_rms``, ``returns``, ``old_obs``, ``old_reward``), so
the environment the user saves is SB3's own class with bit-identical statistics (``tests/test_training_fast_ppo.py``
compares them). :func:`supported` says when it applies: a plain ``VecNormalize`` over array observations that
normalises them; otherwise the caller steps the ``VecNormalize`` itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

_add_reduce, _divide, _square = np.add.reduce, np.true_divide, np.square


def supported(env: Any) -> bool:
    """Whether :func:`normalized_step` reproduces ``env.step_wait`` (a plain ``VecNormalize`` of arrays)."""
    return type(env) is VecNormalize and env.norm_obs and isinstance(env.obs_rms, RunningMeanStd)


def normalized_step(env: VecNormalize, actions: np.ndarray) -> VecEnvStepReturn:
    """``env.step(actions)`` for a :func:`supported` ``VecNormalize``."""
    env.venv.step_async(actions)
    obs, rewards, dones, infos = env.venv.step_wait()
    env.old_obs = obs
    env.old_reward = rewards
    if env.training:
        update(env.obs_rms, obs)
    normalized = normalize_obs(env, obs)
    if env.training:
        env.returns = env.returns * env.gamma + rewards
        update(env.ret_rms, env.returns)
    rewards = env.normalize_reward(rewards)
    for idx in dones.nonzero()[0]:
        if "terminal_observation" in infos[idx]:
            infos[idx]["terminal_observation"] = normalize_obs(env, infos[idx]["terminal_observation"])
    env.returns[dones] = 0
    return normalized, rewards, dones, infos


def normalize_obs(env: VecNormalize, obs: np.ndarray) -> np.ndarray:
    """``VecNormalize.normalize_obs`` of an array without its deep copy (the arithmetic makes a new array)."""
    rms = env.obs_rms
    scaled = (obs - rms.mean) / np.sqrt(rms.var + env.epsilon)
    return np.clip(scaled, -env.clip_obs, env.clip_obs).astype(np.float32)


def update(rms: RunningMeanStd, arr: np.ndarray) -> None:
    """``RunningMeanStd.update(arr)``: numpy's own steps of ``np.mean(arr, axis=0)`` and ``np.var(arr, axis=0)``
    (sum, divide in the array's dtype; squared deviations from the kept-dims mean), then SB3's
    ``update_from_moments``."""
    count = arr.shape[0]
    items = np.intp(count)  # numpy divides by its item count as an intp
    batch_mean = _per_item(_add_reduce(arr, axis=0), items)
    centre = _per_item(_add_reduce(arr, axis=0, keepdims=True), items)
    dev = np.subtract(arr, centre)
    batch_var = _per_item(_add_reduce(_square(dev, out=dev), axis=0), items)
    rms.update_from_moments(batch_mean, batch_var, count)


def _per_item(total: Any, items: np.intp) -> Any:
    """``total / items`` as numpy's mean and var divide: in place for an array, in the scalar's own type else."""
    if isinstance(total, np.ndarray):
        return _divide(total, items, out=total, casting="unsafe", subok=False)
    return total.dtype.type(total / items)
