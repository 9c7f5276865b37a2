"""Warm starts into a stage whose observation has values the previous stage never saw vary.

The stage-3 target offset (the last three observation values) is zero in stages 1 and 2. The previous stage's
``VecNormalize`` statistics of such a value have mean 0 and a variance of about 1e-4 / samples, so in the new stage
a prey 5 m ahead normalises to the clip value (10) and enters first-layer weights that the previous stage never
trained (their input was always 0). Measured (2026-12-01): a T-Rex walker, played deterministically in the bite env
with its carried statistics, fell after 18-127 steps in 10 of 10 episodes; with those three inputs held at 0 it
walked all 750 steps. So stage 3 does not start from the walker it was warm-started from.

:func:`expand_inputs` can fix both halves for every such value ("new input": its carried statistics never varied,
``var * count`` below :data:`UNSEEN`, and the new stage's env shows another value at reset):

1. its statistics are replaced by those of :data:`SAMPLE_RESETS` resets of the new stage's env (seeds from
   :data:`SAMPLE_SEED`, past the gate and test seeds of runs with seeds below 1000; variance at least
   :data:`MIN_VARIANCE`), so it normalises to values of order 1;
2. its columns in every layer that reads the observation (the first linear layer of each network: actor and
   critic, for SAC also the target critics) are set to 0, so the warm-started policy and value function start as
   exactly the previous stage's and learn to use the new input from there.

``[curriculum] new_inputs`` chooses: ``"zero"`` does both, ``"fresh"`` only the first (the new inputs act through
the first layer's initial random weights, which the previous stage never trained, as in a network from scratch),
``"carry"`` (the default) neither. Measured (docs/envs.md), neither ``"zero"`` nor ``"fresh"`` reached the stage-3
gates sooner on every seed, and the committed curricula's results were trained with ``"carry"``. A value that
varied in the previous stage, or keeps the previous stage's value at reset in the new one (stage 1 to 2: the target
is zero in both), is left as it was.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

UNSEEN = 2e-4
"""A carried statistic with ``var * count`` below this never varied: ``VecNormalize`` starts every value at var 1
with a count of 1e-4, and an update with no spread keeps ``var * count`` (the summed squared deviation) at 1e-4.
The least varying real signal of the committed stages, the brachiosaurus' cos(tilt) in balance, has ~1."""

MIN_VARIANCE = 1.0
"""Lower bound of a new input's starting variance (``VecNormalize``'s own starting value): a value that is the same
at every reset (the target's height below the torso) varies once the animal moves."""

SAMPLE_RESETS = 64
"""Resets of the new stage's env that give a new input's starting statistics."""

SAMPLE_SEED = 3_000_000_000
"""First reset seed of that sample (training seeds are small; gate and held-out test seeds are 1e9 and 2e9 plus
1e6 x the run's seed plus the episode). Only statistics come from these resets, nothing is trained on them."""


def unseen_inputs(obs_rms: Any) -> np.ndarray:
    """Indices of the observation values whose carried statistics never varied."""
    return np.flatnonzero(np.asarray(obs_rms.var) * float(obs_rms.count) < UNSEEN)


def reset_observations(make_env: Callable[[], Any], resets: int = SAMPLE_RESETS) -> np.ndarray:
    """``resets`` first observations of a fresh env from ``make_env()``, one per seed from :data:`SAMPLE_SEED`."""
    env = make_env()
    try:
        return np.array([env.reset(seed=SAMPLE_SEED + k)[0] for k in range(resets)], dtype=np.float64)
    finally:
        env.close()


def first_layers(policy: Any, obs_dim: int) -> list[Any]:
    """The linear layers of ``policy`` that read the observation: the first ``Linear`` of every ``Sequential``
    (SB3's MLPs: actor, critic, target critic; SAC's critics read observation then action) and, without hidden
    layers, PPO's ``action_net`` and ``value_net``, when their input starts with the ``obs_dim`` values."""
    import torch as th

    reads_obs = (obs_dim, obs_dim + int(np.prod(policy.action_space.shape)))
    layers = []
    for module in policy.modules():
        if isinstance(module, th.nn.Sequential):
            first = next((m for m in module if isinstance(m, th.nn.Linear)), None)
            if first is not None and first.in_features in reads_obs:
                layers.append(first)
    for name in ("action_net", "value_net"):
        head = getattr(policy, name, None)
        if isinstance(head, th.nn.Linear) and head.in_features == obs_dim:
            layers.append(head)
    return layers


def expand_inputs(policy: Any, obs_rms: Any, make_env: Callable[[], Any], mode: str) -> list[int]:
    """Give the new inputs (module docstring) statistics sampled from ``make_env()``'s resets and, with ``mode``
    ``"zero"``, zero weights in ``policy``'s first layers (``"fresh"``: the weights as they are; ``"carry"``:
    nothing changes); ``obs_rms`` (the carried ``RunningMeanStd``) is changed in place. Returns their indices (empty:
    nothing changed)."""
    candidates = unseen_inputs(obs_rms) if mode != "carry" else np.array([], dtype=int)
    if candidates.size == 0:
        return []
    sample = reset_observations(make_env)[:, candidates]
    changed = np.any(sample != np.asarray(obs_rms.mean)[candidates], axis=0)
    new = candidates[changed]
    if new.size == 0:
        return []
    obs_rms.mean[new] = sample[:, changed].mean(axis=0)
    obs_rms.var[new] = np.maximum(sample[:, changed].var(axis=0), MIN_VARIANCE)
    if mode == "fresh":
        return new.tolist()
    import torch as th

    with th.no_grad():
        for layer in first_layers(policy, len(obs_rms.mean)):
            layer.weight[:, th.as_tensor(new)] = 0.0
    return new.tolist()
