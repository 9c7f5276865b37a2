"""What the background evaluation process's start-up costs, phase by phase, and its time to a first answer.

    nice -n 10 python benchmarks/eval_startup.py [--species velociraptor] [--eval-envs 8] [--repeats 2]

1. In this fresh interpreter, the start-up phases of the evaluation process in its order (imports as the spawned
   process does them, torch's thread setting, building ``--eval-envs`` envs), CPU and wall seconds each.
2. ``--repeats`` times: a real :class:`~dinosim.training.eval_worker.BackgroundEvaluator` (spawned, as training
   starts it) given a one-episode job of an untrained [256, 256] PPO snapshot at once: the wall seconds until
   ``submit`` returned and until the answer came, and the CPU seconds the process used in all.

CPU seconds are what the machine pays; wall seconds on a busy machine mostly measure the share of the cores this
process got (``nice``), not the work.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Optional


def phases(species: str, eval_envs: int) -> None:
    last = [time.perf_counter(), time.process_time()]

    def mark(name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        print(f"| {name} | {cpu - last[1]:.2f} | {wall - last[0]:.2f} |", flush=True)
        last[:] = [wall, cpu]

    print("| phase (fresh interpreter) | CPU s | wall s |\n|---|---:|---:|")
    import dinosim.training.eval_worker  # noqa: F401  (what unpickling the process's target imports)
    mark("dinosim + eval_worker (gymnasium, numpy)")
    import torch  # noqa: F401
    mark("torch")
    from dinosim.training.builders import configure_torch_threads, default_env_factory

    configure_torch_threads()
    mark("torch threads")
    envs = [default_env_factory(species, {}, None) for _ in range(eval_envs)]
    mark(f"mujoco + {eval_envs} {species} envs")
    import stable_baselines3  # noqa: F401  (imported by the first job's model load)
    mark("stable_baselines3")
    for env in envs:
        env.close()


def first_answer(species: str, eval_envs: int) -> tuple[float, float, float]:
    """(submit wall s, wall s to the first answer, CPU s of the process) for a one-episode job."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from dinosim.config.settings import CurriculumSettings
    from dinosim.envs import make_env
    from dinosim.run_integrity import model_bytes, vecnormalize_bytes
    from dinosim.training.builders import default_env_factory
    from dinosim.training.eval_plan import EvalPlan
    from dinosim.training.eval_worker import BackgroundEvaluator, EnvSpec, SnapshotJob

    venv = VecNormalize(DummyVecEnv([lambda: make_env(species, {})]))
    model = PPO("MlpPolicy", venv, policy_kwargs={"net_arch": [256, 256]}, device="cpu")
    plan = EvalPlan(step=0, mark=0, run_seed=0, first_seed=0, gate_if_pass=False,
                    curriculum=CurriculumSettings(eval_episodes=1))
    job = SnapshotJob(plan, model_bytes(model), vecnormalize_bytes(venv))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    evaluator = BackgroundEvaluator(EnvSpec(default_env_factory, species, {}, eval_envs))
    evaluator.submit(job)
    submitted = time.perf_counter() - start
    evaluator.wait()
    answered = time.perf_counter() - start
    evaluator.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return submitted, answered, cpu


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", default="velociraptor")
    parser.add_argument("--eval-envs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    phases(args.species, args.eval_envs)
    print("\n| evaluation process | submit returned (wall s) | first answer (wall s) | process CPU s |\n"
          "|---|---:|---:|---:|")
    for i in range(args.repeats):
        submitted, answered, cpu = first_answer(args.species, args.eval_envs)
        print(f"| start {i + 1} | {submitted:.3f} | {answered:.1f} | {cpu:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
