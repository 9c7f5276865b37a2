"""Env step throughput vs raw MuJoCo, for every dinosim species and Gymnasium's Humanoid-v5, in one run.

For each env: (1) ``env.step`` steps/s with uniform random actions (resetting on episode end), through
``gymnasium.make`` like training uses; (2) the raw ``mujoco.mj_step`` rate on the same model and the very same
states, divided by the env's frame_skip: ``mujoco.mj_step`` is wrapped with a timer during the env loop, so this is
the physics-only ceiling of env steps/s for that trajectory; (3) their ratio (1.0 = zero Python overhead).
Usage: python benchmarks/env_step.py [--steps 3000] [--repeats 5]   (best of ``repeats`` interleaved rounds)
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import mujoco
import numpy as np

import dinosim.envs  # noqa: F401  (registers the dinosim ids)

ENVS: tuple[tuple[str, dict], ...] = (
    ("dinosim/Velociraptor-v0", {"max_episode_steps": 1000}),
    ("dinosim/TRex-v0", {"max_episode_steps": 1000}),
    ("dinosim/Brachiosaurus-v0", {"max_episode_steps": 1000}),
    ("Humanoid-v5", {}),
)


_RAW_MJ_STEP = mujoco.mj_step
_physics_seconds = 0.0


def _timed_mj_step(*args, **kwargs) -> None:
    """``mujoco.mj_step`` that adds its own duration to ``_physics_seconds``."""
    global _physics_seconds
    start = time.perf_counter()
    _RAW_MJ_STEP(*args, **kwargs)
    _physics_seconds += time.perf_counter() - start


def time_env(env: gym.Env, actions: np.ndarray) -> tuple[float, float]:
    """(seconds per env.step, seconds of mj_step per env.step) over ``actions``, resetting at episode end.

    Both clocks cover the same steps; time spent in ``reset`` is excluded from both.
    """
    global _physics_seconds
    env.reset(seed=0)
    total, _physics_seconds = 0.0, 0.0
    mujoco.mj_step = _timed_mj_step
    try:
        for a in actions:
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(a)
            total += time.perf_counter() - start
            if terminated or truncated:
                physics = _physics_seconds
                env.reset()
                _physics_seconds = physics  # reset() may call mj_step; keep only step() physics
    finally:
        mujoco.mj_step = _RAW_MJ_STEP
    return total / len(actions), _physics_seconds / len(actions)


def bench_all(steps: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{env id: (env steps/s, physics-only env steps/s)}, best of ``repeats`` rounds over all envs.

    Rounds interleave the envs so that load from other processes affects them alike.
    """
    envs, actions = {}, {}
    for env_id, kwargs in ENVS:
        env = gym.make(env_id, **kwargs)
        rng = np.random.default_rng(0)
        shape = (steps, *env.action_space.shape)
        actions[env_id] = rng.uniform(env.action_space.low, env.action_space.high, size=shape).astype(np.float32)
        envs[env_id] = env
    best = {env_id: (np.inf, np.inf) for env_id in envs}
    for _ in range(repeats):
        for env_id, env in envs.items():
            env_s, raw_s = time_env(env, actions[env_id])
            best[env_id] = (min(best[env_id][0], env_s), min(best[env_id][1], raw_s))
    for env in envs.values():
        env.close()
    return {env_id: (1.0 / env_s, 1.0 / raw_s) for env_id, (env_s, raw_s) in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rates = bench_all(args.steps, args.repeats)
    print(f"{'env':<28} {'env steps/s':>12} {'raw mj_step/s / frame_skip':>28} {'ratio':>6}")
    for env_id, (env_rate, raw_rate) in rates.items():
        print(f"{env_id:<28} {env_rate:>12.0f} {raw_rate:>28.0f} {env_rate / raw_rate:>6.2f}")
    raptor, humanoid = rates["dinosim/Velociraptor-v0"][0], rates["Humanoid-v5"][0]
    print(f"velociraptor / Humanoid-v5 env steps/s: {raptor / humanoid:.2f}")


if __name__ == "__main__":
    main()
