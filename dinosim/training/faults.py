"""Detect non-finite values during training and stop with a message naming the stage and step.

* :class:`FiniteCheckVecEnv` checks actions, observations and rewards of the training VecEnv on every step.
* :class:`FiniteLossCallback` checks the losses the algorithm logged and the policy parameters after every update.

Both raise :class:`TrainingFault`; the runner turns it into summary status ``failed``, a one-line message and exit
code 1. The newest checkpoint on disk is the last good one (checkpoints are only written from finite parameters).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper


class TrainingFault(RuntimeError):
    """Training cannot go on (NaN/inf detected); the message names stage and global step."""


class FiniteCheckVecEnv(VecEnvWrapper):
    """Raise :class:`TrainingFault` on NaN/inf in actions, observations or rewards. ``where()`` names the moment."""

    def __init__(self, venv: VecEnv, where: Callable[[], str]) -> None:
        super().__init__(venv)
        self.where = where

    def _check(self, what: str, value: Any) -> None:
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = "NaN" if np.isnan(arr).any() else "inf"
            raise TrainingFault(f"{self.where()}: {bad} in {what}; the last good checkpoint is kept")

    def step_async(self, actions: np.ndarray) -> None:
        self._check("actions", actions)
        self.venv.step_async(actions)

    def step_wait(self):  # type: ignore[no-untyped-def]
        obs, rewards, dones, infos = self.venv.step_wait()
        self._check("observations", obs)
        self._check("rewards", rewards)
        return obs, rewards, dones, infos

    def reset(self):  # type: ignore[no-untyped-def]
        obs = self.venv.reset()
        self._check("observations (reset)", obs)
        return obs


class FiniteLossCallback(BaseCallback):
    """After each update (checked at the next rollout start): logged losses and policy parameters are finite."""

    def __init__(self, where: Callable[[], str]) -> None:
        super().__init__()
        self.where = where

    def check_now(self) -> None:
        import torch

        for key, value in self.model.logger.name_to_value.items():
            if "loss" in key and isinstance(value, (float, int, np.floating)) and not math.isfinite(float(value)):
                raise TrainingFault(f"{self.where()}: {key} = {value}; the last good checkpoint is kept")
        for name, param in self.model.policy.named_parameters():
            if not torch.isfinite(param).all():
                raise TrainingFault(f"{self.where()}: non-finite policy parameter {name}; the last good checkpoint "
                                    "is kept")

    def _on_rollout_start(self) -> None:
        self.check_now()

    def _on_training_end(self) -> None:
        self.check_now()

    def _on_step(self) -> bool:
        return True
