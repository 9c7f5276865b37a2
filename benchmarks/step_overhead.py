"""The Python cost of one env step, physics excluded: the env alone and the training vec-env path.

    nice -n 10 python benchmarks/step_overhead.py [--steps 5000] [--rounds 5]

``mujoco.mj_step`` is replaced by a no-op and the step counter is held at 0, so every step re-reads the same
(reset) state and no episode ends: what is timed is only the Python around the physics. Per species (its stage
config with the most work: stage 1 for the raptor, the behaviour stage for the others):

* env: ``DinoEnv.step`` of the unwrapped env (action mapping, signals, reward terms, info, observation);
* vec path (velociraptor stage 1, 4 envs): ``make_vec_env``'s ``InfoSafeDummyVecEnv`` of ``Monitor`` +
  ``EnvParamSetter`` + ``make_env``'s wrappers, stepped with clipped actions, per env step (VecNormalize, the
  policy and the rollout loop are not included; ``profile_rollout.py`` times those).

CPU microseconds (``time.process_time``), the best of ``--rounds`` rounds: on a busy machine the minimum is the
figure least inflated by other processes. Compare two checkouts by running this with ``PYTHONPATH`` set to each.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Optional

import mujoco
import numpy as np

CASES = (("velociraptor", 1), ("trex", 3), ("brachiosaurus", 3))


def best_us(step: Callable[[np.ndarray], object], actions: np.ndarray, per_call: int, rounds: int) -> float:
    """Best CPU microseconds per env step of ``step`` over ``rounds`` passes through ``actions``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for action in actions:
            step(action)
        best = min(best, (time.process_time() - start) / (len(actions) * per_call) * 1e6)
    return best


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    from dinosim.config.resolve import resolve_run
    from dinosim.envs import make_env
    from dinosim.training.builders import make_vec_env

    rng = np.random.default_rng(0)
    physics = mujoco.mj_step
    mujoco.mj_step = lambda *a, **k: None  # Python only; the state stays the reset state
    try:
        for species, stage in CASES:
            env = make_env(species, resolve_run(species, "ppo", [stage], []).env_kwargs(stage)).unwrapped
            env.reset(seed=0)
            actions = rng.uniform(-0.5, 0.5, (args.steps, env.action_space.shape[0])).astype(np.float32)

            def env_step(action: np.ndarray, env=env) -> None:
                env.step(action)
                env._steps = 0  # never reach the time limit

            print(f"env       {species} stage {stage}: {best_us(env_step, actions, 1, args.rounds):6.1f} us per step",
                  flush=True)
        kwargs = resolve_run("velociraptor", "ppo", [1], []).env_kwargs(1)
        venv = make_vec_env("velociraptor", kwargs, 4, 0, "dummy")
        venv.reset()
        inner = [e.unwrapped for e in venv.envs]
        low, high = venv.action_space.low, venv.action_space.high
        batches = rng.normal(0.0, 0.5, (args.steps // 4, 4, low.shape[0])).astype(np.float32)

        def vec_step(actions: np.ndarray) -> None:
            venv.step(np.minimum(np.maximum(actions, low), high))
            for env in inner:
                env._steps = 0

        print(f"vec path  velociraptor stage 1, 4 envs: {best_us(vec_step, batches, 4, args.rounds):6.1f} us per env "
              "step", flush=True)
    finally:
        mujoco.mj_step = physics
    return 0


if __name__ == "__main__":
    sys.exit(main())
