"""`LeanActorCritic`: SB3's ``ActorCriticPolicy`` forward pass for one rollout step, with fewer torch calls.

Collecting a PPO rollout calls the policy once per vector step on a batch of ``n_envs`` (4) observations. For such
a small batch the arithmetic is nothing next to torch's per-call overhead: SB3's forward builds a
``torch.distributions.Normal`` (argument validation included), a ``ones_like`` standard deviation and a log-prob
over broadcast tensors on every step, about 40 torch calls. This class computes the same numbers with the same
torch kernels in the same order (so the results are bit-identical, which ``tests/test_training_fast_ppo.py``
checks), and hoists what is constant during a rollout (the standard deviation, its square and log) out of the
step: about 20 torch calls per step.

Contract: :meth:`LeanActorCritic.of` returns None for any policy it does not reproduce exactly (anything but an
``ActorCriticPolicy`` with a flat ``Box`` observation, ``FlattenExtractor`` features, an ``MlpExtractor`` of
``Linear`` + ``Tanh``/``ReLU`` layers and an unsquashed diagonal Gaussian without gSDE on the CPU); callers then
use SB3's own path. Weights are the policy's own parameters (read, never copied), so an instance is valid until the
policy object is replaced; the rollout-constant tensors are computed by :meth:`start_rollout` and are valid until
the next update of ``log_std``: call it at the start of every rollout. :meth:`LeanActorCritic.predict` is
``policy.predict(obs, deterministic=True)`` (evaluations; it needs no rollout constants).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor

Layer = tuple[th.Tensor, th.Tensor, Optional[Callable[[th.Tensor], th.Tensor]]]
_ACTIVATIONS: dict[type, Callable[[th.Tensor], th.Tensor]] = {th.nn.Tanh: th.tanh, th.nn.ReLU: th.relu}
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # the constant of torch.distributions.Normal.log_prob
_linear = th.nn.functional.linear


def _mlp_layers(net: th.nn.Module) -> Optional[list[Layer]]:
    """(weight, bias, activation) per ``Linear`` of an SB3 ``MlpExtractor`` half, or None for other layers."""
    if not isinstance(net, th.nn.Sequential):
        return None
    layers: list[Layer] = []
    for module in net:
        if isinstance(module, th.nn.Linear) and module.bias is not None:
            layers.append((module.weight, module.bias, None))
        elif type(module) in _ACTIVATIONS and layers and layers[-1][2] is None:
            weight, bias, _ = layers[-1]
            layers[-1] = (weight, bias, _ACTIVATIONS[type(module)])
        else:
            return None
    return layers


def _run(layers: list[Layer], x: th.Tensor) -> th.Tensor:
    for weight, bias, activation in layers:
        x = _linear(x, weight, bias)
        if activation is not None:
            x = activation(x)
    return x


class LeanActorCritic:
    """The rollout-time forward pass of a supported SB3 ``ActorCriticPolicy`` (see the module docstring)."""

    def __init__(self, policy: ActorCriticPolicy, pi: list[Layer], vf: list[Layer]) -> None:
        self.policy = policy
        self._pi, self._vf = pi, vf
        self._action = (policy.action_net.weight, policy.action_net.bias)
        self._value = (policy.value_net.weight, policy.value_net.bias)
        self._act_shape = policy.action_space.shape
        self._low, self._high = policy.action_space.low, policy.action_space.high
        self.start_rollout()

    @classmethod
    def of(cls, policy: Any) -> Optional["LeanActorCritic"]:
        """The lean forward of ``policy``, or None when it would not reproduce SB3's numbers exactly."""
        if not isinstance(policy, ActorCriticPolicy) or policy.use_sde or policy.squash_output:
            return None
        if type(policy.action_dist) is not DiagGaussianDistribution or policy.device.type != "cpu":
            return None
        obs_space, act_space = policy.observation_space, policy.action_space
        if not (isinstance(obs_space, spaces.Box) and len(obs_space.shape) == 1 and isinstance(act_space, spaces.Box)):
            return None
        extractors = (policy.features_extractor, policy.pi_features_extractor, policy.vf_features_extractor)
        if any(type(e) is not FlattenExtractor for e in extractors) or type(policy.mlp_extractor) is not MlpExtractor:
            return None
        if type(policy.action_net) is not th.nn.Linear or type(policy.value_net) is not th.nn.Linear:
            return None
        pi, vf = _mlp_layers(policy.mlp_extractor.policy_net), _mlp_layers(policy.mlp_extractor.value_net)
        if pi is None or vf is None:
            return None
        return cls(policy, pi, vf)

    def start_rollout(self) -> None:
        """Recompute the rollout constants from the current ``log_std`` (after every update)."""
        with th.no_grad():
            std = self.policy.log_std.exp()  # Normal's scale: ones_like(mean) * log_std.exp() has these values
            self._std = std
            self._two_var = 2 * std**2
            self._log_std = std.log()

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, th.Tensor, th.Tensor]:
        """(sampled actions as a numpy array, values (n, 1), log-probs (n,)) for a batch of observations: the
        numbers ``policy(obs_as_tensor(obs))`` returns, drawing the same samples from torch's generator."""
        with th.no_grad():
            x = th.as_tensor(obs).float()
            mean = _linear(_run(self._pi, x), *self._action)
            values = _linear(_run(self._vf, x), *self._value)
            shape = mean.shape
            actions = th.normal(mean, self._std.expand(shape))  # Normal.sample(): loc and scale expanded
            log_prob = (-((actions - mean) ** 2) / self._two_var - self._log_std - _LOG_SQRT_2PI).sum(dim=1)
        return actions.reshape((-1, *self._act_shape)).numpy(), values, log_prob

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """``policy.predict(obs, deterministic=True)[0]`` for a batch of observations: the mean actions, clipped
        to the action space."""
        with th.no_grad():
            mean = _linear(_run(self._pi, th.as_tensor(obs).float()), *self._action)
        return np.clip(mean.numpy().reshape((-1, *self._act_shape)), self._low, self._high)

    def values(self, obs: np.ndarray) -> th.Tensor:
        """``policy.predict_values`` of a batch of observations (n, 1)."""
        with th.no_grad():
            return _linear(_run(self._vf, th.as_tensor(obs).float()), *self._value)
