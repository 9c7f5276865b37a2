"""Env step throughput vs raw MuJoCo, for every dinosim species and Gymnasium's Humanoid-v5, in one run.

For each env: (1) ``env.step`` steps/s with uniform random actions (resetting on episode end), through
``gymnasium.make`` like training uses; (2) the raw ``mujoco.mj_step`` rate on the same model and the very same
states, divided by the env's frame_skip: ``mujoco.mj_step`` is wrapped with a timer during the env loop, so this is
the physics-only ceiling of env steps/s for that trajectory; (3) their ratio (1.0 = zero Python overhead).
Usage: python benchmarks/env_step.py [--steps 3000] [--repeats 5]   (best of ``repeats`` interleaved rounds)
       python benchmarks/env_step.py --physics-options   (cost/stability of timestep, integrator, contact filters)
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


def _variant_model(species: str, timestep: float, integrator: str, all_contacts: bool):
    """(model, home qpos) of a species' MJCF with the given physics options."""
    from dinosim.envs.model import ASSETS_DIR, load_model
    from dinosim.species import SPECIES

    info = SPECIES[species]
    cls = getattr(__import__(info.env_module, fromlist=[info.env_class]), info.env_class)
    spec = mujoco.MjSpec.from_file(str(ASSETS_DIR / cls.xml_file))
    spec.option.timestep = timestep
    spec.option.integrator = getattr(mujoco.mjtIntegrator, f"mjINT_{integrator.upper()}")
    if all_contacts:  # every geom collides with every other (parent/child pairs still excluded)
        for geom in spec.geoms:
            if geom.name != "target":
                geom.contype, geom.conaffinity = 1, 1
    home = load_model(cls.xml_file, cls.home_pose, cls.foot_geoms, cls.effector_geoms, cls.tail_joints).qpos_home
    return spec.compile(), home


def _statue_heights(m: mujoco.MjModel, home: np.ndarray, seconds: float = 3.0) -> np.ndarray:
    """Torso height every 40 ms while the servos hold the home pose (zero action) from the home state."""
    d = mujoco.MjData(m)
    d.qpos[:] = home
    d.ctrl[:] = [home[m.jnt_qposadr[j]] for j in m.actuator_trnid[:, 0]]
    substeps = max(1, round(0.04 / m.opt.timestep))
    heights = []
    for _ in range(round(seconds / 0.04)):
        _RAW_MJ_STEP(m, d, substeps)
        heights.append(d.qpos[2])
    return np.array(heights)


def physics_variant(species: str, timestep: float, integrator: str, all_contacts: bool, seconds: float = 20.0):
    """(CPU s per simulated s, MuJoCo warnings, all finite, statue height RMS error vs a 0.5 ms reference).

    Cost: random servo targets changed every 40 ms (like the policy) from the home pose, restarting from home every
    2 s of simulated time, so standing, falling and lying are all covered. Accuracy: the zero-action statue's torso
    height over its first 3 s (it sags and, for the bipeds, falls), compared with the same model at timestep 0.0005
    (implicitfast). The cost is the best of 3 timings.
    """
    m, home = _variant_model(species, timestep, integrator, all_contacts)
    reference, _ = _variant_model(species, 0.0005, "implicitfast", all_contacts)
    error = float(np.sqrt(np.mean((_statue_heights(m, home) - _statue_heights(reference, home)) ** 2)))
    d = mujoco.MjData(m)
    rng = np.random.default_rng(0)
    joints = m.actuator_trnid[:, 0]
    lo, hi = m.jnt_range[joints, 0], m.jnt_range[joints, 1]
    substeps = max(1, round(0.04 / timestep))
    restart = round(2.0 / 0.04)
    finite, costs = True, []
    for _ in range(3):
        start = time.perf_counter()
        for k in range(round(seconds / 0.04)):
            if k % restart == 0:
                mujoco.mj_resetData(m, d)
                d.qpos[:] = home
            d.ctrl[:] = rng.uniform(lo, hi) * 0.5
            _RAW_MJ_STEP(m, d, substeps)
            finite = finite and bool(np.isfinite(d.qacc).all())
        costs.append((time.perf_counter() - start) / seconds)
    cost = min(costs)
    warnings = int(sum(w.number for w in d.warning))
    return cost, warnings, finite, error


def physics_options() -> None:
    """Print cost and accuracy of the committed physics options next to alternatives."""
    print(
        f"{'species':<14} {'timestep':>8} {'integrator':<13} {'contacts':<9} {'CPU ms / sim s':>14} "
        f"{'warnings':>8} {'finite':>6} {'statue height RMS err (m)':>26}"
    )
    variants = [
        (0.004, "implicitfast", False),  # the committed choice
        (0.002, "implicitfast", False),
        (0.008, "implicitfast", False),
        (0.004, "euler", False),
        (0.004, "implicitfast", True),
    ]
    for species in ("velociraptor", "trex", "brachiosaurus"):
        for timestep, integrator, all_contacts in variants:
            cost, warnings, finite, error = physics_variant(species, timestep, integrator, all_contacts)
            label = "all" if all_contacts else "filtered"
            print(
                f"{species:<14} {timestep:>8} {integrator:<13} {label:<9} {cost * 1e3:>14.1f} {warnings:>8} "
                f"{str(finite):>6} {error:>26.4f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--physics-options", action="store_true")
    args = parser.parse_args()
    if args.physics_options:
        physics_options()
        return
    rates = bench_all(args.steps, args.repeats)
    print(f"{'env':<28} {'env steps/s':>12} {'raw mj_step/s / frame_skip':>28} {'ratio':>6}")
    for env_id, (env_rate, raw_rate) in rates.items():
        print(f"{env_id:<28} {env_rate:>12.0f} {raw_rate:>28.0f} {env_rate / raw_rate:>6.2f}")
    raptor, humanoid = rates["dinosim/Velociraptor-v0"][0], rates["Humanoid-v5"][0]
    print(f"velociraptor / Humanoid-v5 env steps/s: {raptor / humanoid:.2f}")


if __name__ == "__main__":
    main()
