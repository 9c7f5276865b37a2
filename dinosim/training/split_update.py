"""PPO's update with the actor's and the critic's gradients computed at the same time, on two threads.

SB3's ``PPO.train`` computes one loss per minibatch, ``policy_loss + ent_coef * entropy_loss + vf_coef *
value_loss``, and back-propagates it. With an ``MlpExtractor`` whose actor and critic share no layer (SB3's
default) and a parameter-free ``FlattenExtractor``, every parameter receives its gradient from exactly one part:
the actor's (``policy_net``, ``action_net``, ``log_std``) from ``policy_loss + ent_coef * entropy_loss``, the
critic's (``value_net`` of the extractor and the value head) from ``vf_coef * value_loss``. Back-propagating the two
parts separately runs the same kernels on the same numbers (the sum's backward hands the gradient 1 to each part),
so the gradients, the clipped global norm and Adam's step (elementwise: stepped per half) are bit-identical to
SB3's, and so are the logged values (``tests/test_training_fast_ppo.py`` compares trained parameters and logs).

:func:`split_train` is ``PPO.train`` with the critic's forward and backward pass and its half of Adam's step on a
worker thread while the calling thread computes the actor's: torch releases the GIL inside its kernels, so on two
cores the update's wall time approaches the larger half instead of the sum, at some more CPU for the hand-overs.
It pays only with a core to spare: on the 2-core machine with another training on the other core it made a run
~10 % slower (README, Benchmarks), so :class:`~dinosim.training.fast_ppo.FastPPO` uses it only after a rollout
during which a core was idle (:class:`IdleMeter`). :func:`supported` says whether a model's update can be split
exactly; anything else (a target KL, clipped values, shared layers, other distributions, a GPU) keeps SB3's.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Executor
from typing import Any, Optional

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F


def supported(model: Any) -> bool:
    """True when :func:`split_train` reproduces ``PPO.train`` of ``model`` exactly (see the module docstring)."""
    policy = model.policy
    if not isinstance(policy, ActorCriticPolicy) or policy.use_sde or policy.squash_output:
        return False
    if type(policy.action_dist) is not DiagGaussianDistribution or policy.device.type != "cpu":
        return False
    if not isinstance(model.action_space, spaces.Box) or model.target_kl is not None or model.clip_range_vf is not None:
        return False
    if not policy.share_features_extractor or type(policy.features_extractor) is not FlattenExtractor:
        return False
    if type(policy.optimizer) is not th.optim.Adam or len(policy.optimizer.param_groups) != 1:
        return False
    if type(policy.mlp_extractor) is not MlpExtractor:
        return False
    actor, critic = _halves(policy)
    return {id(p) for p in (*actor, *critic)} == {id(p) for p in policy.parameters()}


def split_train(model: Any, pool: Executor) -> None:
    """``PPO.train`` of a :func:`supported` ``model``, the critic's half on ``pool`` (one worker thread). Same
    minibatches, losses, logged values and parameter updates as SB3's."""
    policy = model.policy
    policy.set_training_mode(True)
    model._update_learning_rate(policy.optimizer)
    clip_range = model.clip_range(model._current_progress_remaining)
    logs: dict[str, list] = {"entropy": [], "pg": [], "value": [], "clip_fraction": [], "approx_kl": []}
    halves = _halves(policy)
    actor_adam, critic_adam = _half_optimizers(policy.optimizer, halves)
    critic_trains = any(p.requires_grad for p in halves[1])
    for _ in range(model.n_epochs):
        logs["approx_kl"] = []
        for data in model.rollout_buffer.get(model.batch_size):
            policy.optimizer.zero_grad()  # SB3 zeroes after the forward pass; a forward pass never touches .grad
            features = policy.extract_features(data.observations)
            critic = pool.submit(_critic_part, policy, features, data.returns, model.vf_coef, critic_trains)
            actor_loss = _actor_part(model, features, data, clip_range, logs)
            value_loss = critic.result()
            logs["value"].append(value_loss.item())
            th.nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
            critic_step = pool.submit(critic_adam.step)
            actor_adam.step()
            critic_step.result()
        model._n_updates += 1
    loss = actor_loss + model.vf_coef * value_loss  # SB3's last-minibatch loss, summed in its order
    _record(model, logs, loss, clip_range)


def _actor_part(model: Any, features: th.Tensor, data: Any, clip_range: float, logs: dict[str, list]) -> th.Tensor:
    """The actor's loss of a minibatch, ``policy_loss + ent_coef * entropy_loss``, as SB3 computes it; logs its
    parts and back-propagates it (not while a critic warm-up holds the actor's parameters)."""
    policy = model.policy
    distribution = policy._get_action_dist_from_latent(policy.mlp_extractor.forward_actor(features))
    log_prob = distribution.log_prob(data.actions)
    entropy = distribution.entropy()
    advantages = data.advantages
    if model.normalize_advantage and len(advantages) > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = th.exp(log_prob - data.old_log_prob)
    policy_loss_1 = advantages * ratio
    policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
    policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()
    logs["pg"].append(policy_loss.item())
    logs["clip_fraction"].append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
    entropy_loss = -th.mean(entropy)
    logs["entropy"].append(entropy_loss.item())
    actor_loss = policy_loss + model.ent_coef * entropy_loss
    with th.no_grad():
        log_ratio = log_prob - data.old_log_prob
        logs["approx_kl"].append(th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy())
    if actor_loss.requires_grad:
        actor_loss.backward()
    return actor_loss


def _critic_part(policy: ActorCriticPolicy, features: th.Tensor, returns: th.Tensor, vf_coef: float,
                 backward: bool) -> th.Tensor:
    """The critic's value loss of a minibatch; back-propagates ``vf_coef * value_loss`` when ``backward``."""
    values = policy.value_net(policy.mlp_extractor.forward_critic(features)).flatten()
    value_loss = F.mse_loss(returns, values)
    if backward:
        (vf_coef * value_loss).backward()
    return value_loss


def _halves(policy: ActorCriticPolicy) -> tuple[list[th.nn.Parameter], list[th.nn.Parameter]]:
    """The actor's parameters and the critic's, each in ``policy.parameters()`` order."""
    critic_ids = {id(p) for p in (*policy.mlp_extractor.value_net.parameters(), *policy.value_net.parameters())}
    actor_ids = {id(p) for p in (*policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters(),
                                 policy.log_std)}
    params = list(policy.parameters())
    return [p for p in params if id(p) in actor_ids], [p for p in params if id(p) in critic_ids]


def _half_optimizers(optimizer: th.optim.Adam, halves: tuple[list, list]) -> list[th.optim.Adam]:
    """One Adam per half with the optimizer's settings and its very ``state`` mapping (their steps update the
    optimizer's moments and step counts, which SB3 saves; a parameter gets its entry on its first step with a
    gradient, as with SB3's single optimizer; the halves' parameters are disjoint, so each entry is written by one
    thread). Built for every update: loading a model or a checkpoint replaces the optimizer's state."""
    settings = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    parts = []
    for params in halves:
        part = th.optim.Adam(params, **settings)
        part.state = optimizer.state
        parts.append(part)
    return parts


def _record(model: Any, logs: dict[str, list], loss: th.Tensor, clip_range: float) -> None:
    """The records SB3's ``PPO.train`` logs, in its order."""
    buffer = model.rollout_buffer
    explained_var = explained_variance(buffer.values.flatten(), buffer.returns.flatten())
    record = model.logger.record
    record("train/entropy_loss", np.mean(logs["entropy"]))
    record("train/policy_gradient_loss", np.mean(logs["pg"]))
    record("train/value_loss", np.mean(logs["value"]))
    record("train/approx_kl", np.mean(logs["approx_kl"]))
    record("train/clip_fraction", np.mean(logs["clip_fraction"]))
    record("train/loss", loss.item())
    record("train/explained_variance", explained_var)
    record("train/std", th.exp(model.policy.log_std).mean().item())
    record("train/n_updates", model._n_updates, exclude="tensorboard")
    record("train/clip_range", clip_range)


class IdleMeter:
    """How many of this process's CPUs sat idle, on average, between :meth:`start` and :meth:`idle_cpus`: from the
    idle and iowait times in ``/proc/stat`` of the CPUs in the process's affinity mask. Where that file or the mask
    is not available it reports 0.0 (no spare core assumed)."""

    def __init__(self) -> None:
        self._cpus = _affinity_cpus()
        self._t0: Optional[float] = None
        self._idle0 = 0.0

    def start(self) -> None:
        idle = _idle_seconds(self._cpus)
        self._t0, self._idle0 = (time.monotonic(), idle) if idle is not None else (None, 0.0)

    def idle_cpus(self) -> float:
        """Average idle CPUs since :meth:`start` (0.0 when unknown or not started)."""
        if self._t0 is None:
            return 0.0
        idle, elapsed = _idle_seconds(self._cpus), time.monotonic() - self._t0
        if idle is None or elapsed <= 0:
            return 0.0
        return max(0.0, (idle - self._idle0) / elapsed)


def _affinity_cpus() -> Optional[set[int]]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _idle_seconds(cpus: Optional[set[int]]) -> Optional[float]:
    """Idle + iowait seconds so far of ``cpus`` (``/proc/stat``), or None where unknown."""
    if cpus is None:
        return None
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            lines = stat.read().splitlines()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    total = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            fields = rest.split()
            total += int(fields[3]) + int(fields[4])  # idle, iowait
    return total / ticks
