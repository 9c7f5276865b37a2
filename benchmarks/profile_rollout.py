"""Where a training rollout's time goes, beside the physical floor (raw ``mj_step``): one command, one table.

    nice -n 10 python benchmarks/profile_rollout.py [--species velociraptor] [--stage 1] [--timesteps 32768]
                                                    [--n-envs 4] [--floor-seconds 5] [--sb3]

Trains one stage in this process with the real runner and the committed config (DummyVecEnv, logging and
checkpoints on, one 1-episode evaluation at the end), with a timer wrapped around the functions of each part
below, and prints a Markdown table: CPU and wall milliseconds per rollout (``n_steps x n_envs`` env steps) and
each part's share of the CPU time. Parts are exclusive: time in a timed function nested in another part counts
for the nested part only (an env step's ``mj_step`` is physics, not env Python).

* physics: ``mujoco.mj_step`` / ``mj_forward`` (the floor: what no Python change can remove)
* env Python: ``DinoEnv.step``/``reset`` without their physics (observation, reward terms, task logic)
* gym wrappers + vec env: Monitor, TimeLimit, dinosim's wrappers, the DummyVecEnv loop, the NaN checks
* policy inference: the policy's forward pass (and value bootstrap) while collecting rollouts (SB3's
  ``ActorCriticPolicy`` or dinosim's ``LeanActorCritic``)
* VecNormalize: observation/reward normalisation and their running statistics (SB3's ``VecNormalize`` or
  dinosim's ``lean_normalize``)
* SB3 rollout loop: the rest of ``collect_rollouts`` (tensor conversion, action clipping, buffer, GAE; dinosim's
  ``FastPPO.collect_rollouts``)
* PPO update: ``PPO.train`` (minibatch forward/backward passes and Adam steps)
* callbacks: dinosim's callbacks (evaluation, checkpoints, progress, reward components, NaN checks)
* other: the rest of the run (model and env construction, logger dumps, the final save)

CPU time (``time.process_time``: all threads of this process) is the figure to compare: on a busy machine wall
time also counts the time other processes held the cores. The timers add about a microsecond per timed call.
``--sb3``: the same run with SB3's own ``PPO`` class and ``model.predict`` in evaluations instead of dinosim's
``FastPPO`` and lean policy calls (the baseline the speed-up is measured against; the envs are the same).
The floor line measures ``mj_step`` alone in a loop on the same model (zero action from the reset state), in
CPU time on one core; two cores can at best double it (SubprocVecEnv), which the table states, not measures.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

PARTS = ("physics (mj_step)", "env Python", "gym wrappers + vec env", "policy inference", "VecNormalize",
         "SB3 rollout loop", "PPO update", "callbacks (eval, checkpoints, logs)")


class PartTimer:
    """Exclusive CPU and wall time per part of functions wrapped with :meth:`wrap`, restored by :meth:`restore`.

    A call nested in another timed call is subtracted from the outer one; inside an ``absorb`` part (callbacks),
    nested timed calls are not split out (an evaluation's env steps are not training physics)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # per open call: [nested cpu, nested wall]
        self._absorbing = 0
        self._originals: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, part: str, absorb: bool = False) -> None:
        original = getattr(owner, name)  # a class's own or inherited function, or a module's function

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._absorbing:
                return original(*args, **kwargs)
            return self._time(part, absorb, original, args, kwargs)

        own = name in vars(owner)
        setattr(owner, name, timed)
        self._originals.append((owner, name, original if own else None))

    def _time(self, part: str, absorb: bool, call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        nested = [0.0, 0.0]
        self._stack.append(nested)
        self._absorbing += absorb
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            self._absorbing -= absorb
            self._stack.pop()
            self.cpu[part] += cpu - nested[0]
            self.wall[part] += wall - nested[1]
            self.calls[part] += 1
            if self._stack:
                self._stack[-1][0] += cpu
                self._stack[-1][1] += wall

    def restore(self) -> None:
        for owner, name, original in reversed(self._originals):
            if original is None:
                delattr(owner, name)  # it was inherited
            else:
                setattr(owner, name, original)
        self._originals.clear()


def instrument(timer: PartTimer) -> None:
    """Wrap the functions of every part (see the module docstring)."""
    import mujoco
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from stable_baselines3.common.vec_env import VecNormalize
    from stable_baselines3.ppo import PPO

    from dinosim.envs.base import DinoEnv
    from dinosim.training import fast_ppo, lean_normalize
    from dinosim.training.faults import FiniteCheckVecEnv
    from dinosim.training.lean_policy import LeanActorCritic
    from dinosim.training.vec_env import InfoSafeDummyVecEnv

    timer.wrap(mujoco, "mj_step", PARTS[0])
    timer.wrap(mujoco, "mj_forward", PARTS[0])
    for name in ("step", "reset"):
        timer.wrap(DinoEnv, name, PARTS[1])
        timer.wrap(Monitor, name, PARTS[2])
    for name in ("step_wait", "reset"):
        timer.wrap(InfoSafeDummyVecEnv, name, PARTS[2])
        timer.wrap(FiniteCheckVecEnv, name, PARTS[2])
    timer.wrap(ActorCriticPolicy, "forward", PARTS[3])
    timer.wrap(ActorCriticPolicy, "predict_values", PARTS[3])
    for name in ("act", "values"):
        timer.wrap(LeanActorCritic, name, PARTS[3])
    for name in ("normalize_obs", "normalize_reward", "_update_reward"):
        timer.wrap(VecNormalize, name, PARTS[4])
    timer.wrap(RunningMeanStd, "update", PARTS[4])
    timer.wrap(fast_ppo, "normalized_step", PARTS[4])  # its own work; the vec env below it is timed apart
    for name in ("update", "normalize_obs"):
        timer.wrap(lean_normalize, name, PARTS[4])
    timer.wrap(OnPolicyAlgorithm, "collect_rollouts", PARTS[5])  # FastPPO's falls back to it only in --sb3 runs
    timer.wrap(fast_ppo.FastPPO, "collect_rollouts", PARTS[5])
    timer.wrap(PPO, "train", PARTS[6])
    for name in ("on_training_start", "on_rollout_start", "on_step", "on_rollout_end", "on_training_end"):
        timer.wrap(BaseCallback, name, PARTS[7], absorb=True)


def use_sb3_paths() -> None:
    """``--sb3``: the runner builds SB3's ``PPO`` and evaluations call ``model.predict`` (no lean policy)."""
    from stable_baselines3 import PPO

    from dinosim.training import builders, curriculum
    from dinosim.training.lean_policy import LeanActorCritic

    chosen = builders.algorithm_class
    for module in (builders, curriculum):
        module.algorithm_class = lambda algorithm: PPO if algorithm == "ppo" else chosen(algorithm)
    LeanActorCritic.of = classmethod(lambda cls, policy: None)  # type: ignore[method-assign,assignment]


def physics_floor(species: str, seconds: float) -> float:
    """Env steps per CPU second of ``mj_step(model, data, nstep=frame_skip)`` alone on the species' model."""
    import mujoco

    from dinosim.envs import make_env

    env = make_env(species, {}).unwrapped
    env.reset(seed=0)
    count, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        mujoco.mj_step(env.model, env.data, nstep=env.frame_skip)
        count += 1
    return count / (time.process_time() - start)


def table(timer: PartTimer, cpu_total: float, wall_total: float, rollouts: int, rollout_steps: int,
          floor_rate: float) -> list[str]:
    """The Markdown table: per-rollout CPU and wall ms and CPU share of each part, then totals and the floor."""
    lines = ["| part | CPU ms / rollout | wall ms / rollout | share of CPU |", "|---|---:|---:|---:|"]
    other_cpu, other_wall = cpu_total - sum(timer.cpu.values()), wall_total - sum(timer.wall.values())
    for name, cpu, wall in [*((p, timer.cpu[p], timer.wall[p]) for p in PARTS), ("other", other_cpu, other_wall)]:
        lines.append(f"| {name} | {1e3 * cpu / rollouts:,.0f} | {1e3 * wall / rollouts:,.0f} | "
                     f"{100 * cpu / cpu_total:.1f} % |")
    lines.append(f"| **total** | **{1e3 * cpu_total / rollouts:,.0f}** | **{1e3 * wall_total / rollouts:,.0f}** "
                 "| 100 % |")
    floor_ms = 1e3 * rollout_steps / floor_rate
    lines.append(f"| physical floor: raw `mj_step` alone, 1 core (2 cores: ÷2, computed) | {floor_ms:,.0f} "
                 f"({floor_ms / 2:,.0f}) | | {100 * floor_ms / (1e3 * cpu_total / rollouts):.1f} % |")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", default="velociraptor")
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--timesteps", type=int, default=32768)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--floor-seconds", type=float, default=5.0, help="CPU seconds of the raw mj_step loop")
    parser.add_argument("--sb3", action="store_true", help="SB3's own PPO and predict calls (the baseline)")
    args = parser.parse_args(argv)

    import dinosim.training.curriculum  # noqa: F401  (torch, SB3 and the envs imported before timing)
    from dinosim.config.resolve import resolve_run
    from dinosim.training.builders import algo_setting
    from dinosim.training.curriculum import RunHooks
    from dinosim.training.request import RunRequest
    from dinosim.training.runner import run

    # one evaluation of one episode at the very end (an eval_freq above the budget is refused)
    overrides = [f"curriculum.eval_freq={args.timesteps}", "curriculum.eval_episodes=1", "curriculum.gate_episodes=1"]
    config = resolve_run(args.species, "ppo", [args.stage], overrides, n_envs=args.n_envs, vec_env="dummy")
    rollout_steps = int(algo_setting(config, args.stage, "n_steps")) * args.n_envs
    run_dir = Path(tempfile.mkdtemp(prefix="dinosim-profile-")) / "run"
    request = RunRequest(command="train", config=config, timesteps=args.timesteps, run_dir=run_dir, progress=False)
    if args.sb3:
        use_sb3_paths()
    timer = PartTimer()
    instrument(timer)
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        run(request, hooks=RunHooks(log_stdout=False))
    finally:
        timer.restore()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rollouts = timer.calls[PARTS[5]]
    floor = physics_floor(args.species, args.floor_seconds)
    which = "SB3 PPO" if args.sb3 else "dinosim FastPPO"
    print(f"{which}: {args.species} stage {args.stage}, {args.n_envs} envs (DummyVecEnv), {rollouts} rollouts of "
          f"{rollout_steps:,} env steps: {cpu:.1f} CPU s, {wall:.1f} wall s "
          f"({rollouts * rollout_steps / cpu:,.0f} steps per CPU s, {rollouts * rollout_steps / wall:,.0f} per wall s)")
    print("\n".join(table(timer, cpu, wall, rollouts, rollout_steps, floor)))
    print(f"physical floor: raw mj_step {floor:,.0f} env steps per CPU s on one core (frame_skip physics steps "
          f"each); training used {rollouts * rollout_steps / cpu:,.0f} per CPU s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
