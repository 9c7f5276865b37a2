"""`make_env`: build a dinosim env for a species from an ``[env]`` kwargs dict."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym

from dinosim.species import SPECIES

ENV_IDS: dict[str, str] = {name: spec.env_id for name, spec in SPECIES.items()}


def make_env(
    species: str,
    env_kwargs: dict[str, Any],
    *,
    seed: int | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """Create the registered env of ``species`` with ``env_kwargs`` as constructor kwargs.

    ``seed`` (when given) seeds the first reset and the action space. ``render_mode`` overrides any
    ``render_mode`` in ``env_kwargs``. Unknown species raise ``KeyError``; unknown kwargs raise ``TypeError``.

    The kwargs travel in the env spec rather than as ``gym.make(**kwargs)``, because ``gym.make`` would consume
    ``max_episode_steps`` itself (adding a ``TimeLimit`` wrapper) instead of passing it to the env, which truncates
    its episodes on its own.

    Without Gymnasium's passive env checker (``disable_env_checker=True``): it only checks the first ``reset`` and
    ``step`` of each env, but stays a wrapper layer every step passes through, and dinosim's envs are checked with
    Gymnasium's and SB3's full ``check_env`` in ``tests/test_envs_api.py``. ``gym.make`` of a dinosim id keeps it;
    the ``OrderEnforcing`` wrapper (``step`` before ``reset`` is an error) stays on both paths.
    """
    if species not in ENV_IDS:
        raise KeyError(f"unknown species {species!r}; known: {sorted(ENV_IDS)}")
    kwargs = dict(env_kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    spec = dataclasses.replace(gym.spec(ENV_IDS[species]), kwargs=kwargs)
    env = gym.make(spec, disable_env_checker=True)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
