"""Env step throughput vs raw MuJoCo, for every dinosim species and Gymnasium's Humanoid-v5, in one run.

For each env: (1) ``env.step`` steps/s with uniform random actions (resetting on episode end), through
``gymnasium.make`` like training uses; (2) the raw ``mujoco.mj_step`` rate on the same model and the very same
states, divided by the env's frame_skip: ``mujoco.mj_step`` is wrapped with a timer during the env loop, so this is
the physics-only ceiling of env steps/s for that trajectory; (3) their ratio (1.0 = zero Python overhead).
Usage: python benchmarks/env_step.py [--steps 5000] [--repeats 3]   (best of ``repeats`` timings is reported)
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


def bench(env_id: str, kwargs: dict, steps: int, repeats: int) -> tuple[float, float]:
    """(env steps/s, physics-only env steps/s) for one env, best of ``repeats``."""
    env = gym.make(env_id, **kwargs)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(steps, *env.action_space.shape)).astype(np.float32)
    runs = [time_env(env, actions) for _ in range(repeats)]
    env.close()
    env_s = min(r[0] for r in runs)
    raw_s = min(r[1] for r in runs)
    return 1.0 / env_s, 1.0 / raw_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'env':<28} {'env steps/s':>12} {'raw mj_step/s / frame_skip':>28} {'ratio':>6}")
    rates = {}
    for env_id, kwargs in ENVS:
        env_rate, raw_rate = bench(env_id, kwargs, args.steps, args.repeats)
        rates[env_id] = env_rate
        print(f"{env_id:<28} {env_rate:>12.0f} {raw_rate:>28.0f} {env_rate / raw_rate:>6.2f}", flush=True)
    raptor, humanoid = rates["dinosim/Velociraptor-v0"], rates["Humanoid-v5"]
    print(f"velociraptor / Humanoid-v5 env steps/s: {raptor / humanoid:.2f}")


if __name__ == "__main__":
    main()
