"""Where a training run's time goes: physics, env Python, policy inference, VecNormalize, PPO update.

    python benchmarks/profile_rollout.py [--species velociraptor] [--stage 1] [--timesteps 32768] [--n-envs 4]

Trains one stage in this process (the real runner, committed config, logging and checkpoints on, one 1-episode
evaluation at the end:
``benchmarks/eval_speed.py`` measures that) under cProfile and splits
the wall time into the parts below, from the profile's cumulative times (each part excludes the parts nested in
it), as seconds and shares of the total; then measures the physical floor, the raw ``mj_step`` rate of the
same model alone, for comparison with the training rate.

* physics: ``mujoco.mj_step`` calls
* env Python: ``DinoEnv.step`` and ``reset`` without their physics
* policy inference: the policy's forward pass while collecting rollouts
* VecNormalize: observation/reward normalisation and statistics updates of the training env
* PPO update: ``PPO.train``
* other: callbacks, logging, checkpoints, SB3's buffers and bookkeeping
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional


def cumulative(stats: pstats.Stats, file_part: str, name: str) -> float:
    """Summed cumulative time of the functions called ``name`` whose file path contains ``file_part``."""
    total = 0.0
    for (path, _, func), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and file_part in path:
            total += cum
    return total


def own_time(stats: pstats.Stats, name_part: str) -> float:
    """Summed own (total) time of built-in functions whose name contains ``name_part``."""
    return sum(tt for (path, _, func), (_, _, tt, _, _) in stats.stats.items()  # type: ignore[attr-defined]
               if name_part in func)


def physics_floor(species: str, seconds: float = 3.0) -> float:
    """Env steps per second of raw ``mj_step`` (frame_skip physics steps per env step) on the species' model."""
    import mujoco

    from dinosim.envs import make_env

    env = make_env(species, {}).unwrapped
    env.reset(seed=0)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mujoco.mj_step(env.model, env.data, nstep=env.frame_skip)
        count += 1
    return count / (time.perf_counter() - start)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", default="velociraptor")
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--timesteps", type=int, default=32768)
    parser.add_argument("--n-envs", type=int, default=4)
    args = parser.parse_args(argv)

    import dinosim.envs  # noqa: F401
    import dinosim.training.curriculum  # noqa: F401  (torch, SB3 and the envs imported before profiling)
    from dinosim.config.resolve import resolve_run
    from dinosim.training.curriculum import RunHooks
    from dinosim.training.request import RunRequest
    from dinosim.training.runner import run

    # one evaluation of one episode at the very end (an eval_freq above the budget is refused)
    overrides = [f"curriculum.eval_freq={args.timesteps}", "curriculum.eval_episodes=1", "curriculum.gate_episodes=1"]
    config = resolve_run(args.species, "ppo", [args.stage], overrides, n_envs=args.n_envs)
    run_dir = Path(tempfile.mkdtemp(prefix="dinosim-profile-")) / "run"
    request = RunRequest(command="train", config=config, timesteps=args.timesteps, run_dir=run_dir, progress=False)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    run(request, hooks=RunHooks(log_stdout=False))
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)

    physics = own_time(stats, "mj_step")
    env_total = cumulative(stats, "dinosim/envs/base", "step") + cumulative(stats, "dinosim/envs/base", "reset")
    inference = cumulative(stats, "stable_baselines3/common/policies", "forward")
    vecnorm = sum(cumulative(stats, "vec_normalize", name) for name in ("normalize_obs", "normalize_reward",
                                                                        "_update_reward"))
    vecnorm += cumulative(stats, "running_mean_std", "update")
    update = cumulative(stats, "stable_baselines3/ppo/ppo", "train")
    parts = {
        "physics (mj_step)": physics,
        "env Python": env_total - physics,
        "policy inference (rollouts)": inference,
        "VecNormalize": vecnorm,
        "PPO update": update,
    }
    parts["other"] = wall - sum(parts.values())
    print(f"{args.species} stage {args.stage}: {args.timesteps} steps, {args.n_envs} envs: {wall:.1f} s under cProfile "
          f"({args.timesteps / wall:.0f} steps/s; cProfile slows Python-heavy parts more than torch/MuJoCo)")
    for name, seconds in parts.items():
        print(f"  {name:<30} {seconds:8.1f} s  {100 * seconds / wall:5.1f} %")
    floor = physics_floor(args.species)
    print(f"physical floor: raw mj_step {floor:,.0f} env steps/s on one core; training ran at "
          f"{args.timesteps / wall:,.0f} steps/s (profiled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
