"""Offline sweep throughput: trials/hour with K workers divided by trials/hour with 1 worker (goal >= 1.6 at K=2).

Every trial is a real ``dinosim train`` run of velociraptor stage 1 with a small budget (``--timesteps``), sampled by
a random sweep over the learning rate; both measurements run the same number of trials with the same sampler seed
(so the same configurations) in fresh sweep folders.

    python benchmarks/sweep_scaling.py [--trials 6] [--timesteps 2048] [--workers 2] [--sleep-trials]

``--sleep-trials`` replaces training by a program that reports 4 evaluations 0.5 s apart (no CPU): it measures the
engine's own overhead and parallelism, apart from CPU contention between trials (and with other jobs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dinosim.sweeps.engine import EngineOptions, run_sweep  # noqa: E402
from dinosim.sweeps.progress import Progress  # noqa: E402
from dinosim.sweeps.yaml_spec import load_sweep  # noqa: E402


def sweep_yaml(folder: Path, trials: int, timesteps: int) -> Path:
    eval_freq = max(64, timesteps // 4)
    fixed = {"curriculum.timesteps": timesteps, "ppo.n_steps": 128, "ppo.batch_size": 64, "ppo.n_epochs": 2,
             "curriculum.eval_freq": eval_freq, "curriculum.eval_episodes": 1, "curriculum.min_avg_reward": 1.0e9,
             "curriculum.save_freq": 1_000_000, "env.max_episode_steps": 200, "ppo.policy_kwargs.net_arch": [64, 64]}
    cfg = {
        "name": "scaling", "method": "random", "run_cap": trials,
        "metric": {"name": "eval/mean_reward", "goal": "maximize"},
        "program": str(ROOT / "scripts" / "train_sb3.py"),
        "command": ["${env}", "${interpreter}", "${program}", "train", "--species", "velociraptor", "--stage", "1",
                    "--n-envs", "1", "--no-progress", "--override", "${args_no_hyphens}"],
        "parameters": {**{k: {"value": v} for k, v in fixed.items()},
                       "ppo.learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 1.0e-3}},
    }
    path = folder / "scaling.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


SLEEP_PROGRAM = """import json, os, time
for i in range(4):
    time.sleep(0.5)
    with open(os.environ["DINOSIM_TRIAL_METRICS"], "a") as f:
        f.write(json.dumps({"global_step": 128 * (i + 1), "eval/mean_reward": float(i)}) + "\\n")
"""


def sleep_yaml(folder: Path, trials: int) -> Path:
    program = folder / "sleep_trial.py"
    program.write_text(SLEEP_PROGRAM)
    cfg = {"name": "scaling", "method": "random", "run_cap": trials,
           "metric": {"name": "eval/mean_reward", "goal": "maximize"}, "program": str(program),
           "parameters": {"ppo.learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 1.0e-3}}}
    path = folder / "scaling.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def measure(path: Path, workers: int, folder: Path) -> tuple[float, int]:
    """(wall seconds, complete trials) of one full sweep with ``workers`` workers."""
    spec = load_sweep(path)
    t0 = time.perf_counter()
    with open(os.devnull, "w") as sink:
        result = run_sweep(spec, EngineOptions(workers=workers, sweep_dir=folder / f"w{workers}", sampler_seed=0),
                           Progress(spec, sink))
    return time.perf_counter() - t0, result.counts.get("complete", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--timesteps", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sleep-trials", action="store_true", help="engine overhead only (no training)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dinosim-scaling-") as tmp:
        folder = Path(tmp)
        path = sleep_yaml(folder, args.trials) if args.sleep_trials else sweep_yaml(folder, args.trials, args.timesteps)
        rates = {}
        for workers in (1, args.workers):
            seconds, done = measure(path, workers, folder)
            if done != args.trials:
                raise SystemExit(f"{workers} worker(s): only {done} of {args.trials} trials completed")
            rates[workers] = done / seconds * 3600
            print(f"{workers} worker(s): {done} trials in {seconds:.1f} s = {rates[workers]:.0f} trials/hour",
                  flush=True)
    ratio = rates[args.workers] / rates[1]
    load = os.getloadavg()[0]
    print(f"scaling {args.workers} workers / 1 worker = {ratio:.2f} (goal >= 1.6) on {os.cpu_count()} CPUs, "
          f"load average {load:.1f}" + (" (sleep trials)" if args.sleep_trials else ""))


if __name__ == "__main__":
    main()
