"""Evaluation speed: one env at a time vs a vector of envs with one batched policy call per step.

    python benchmarks/eval_speed.py --run RUN_DIR [--stage N] [--episodes 100] [--n-envs 1,4,8,16] [--repeats 2]

Plays the same ``--episodes`` held-out episodes (same seeds) of a trained stage's policy with each number of
envs, alternating the settings ``--repeats`` times (this machine is noisy: the ratio of runs side by side is
what counts), and prints wall time, env steps per second and the speed-up over ``n_envs = 1``. The outcome of
every episode is the same for every setting (checked: success flags and lengths must agree, or exit 1).
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--stage", type=int, default=None, help="default: the run's last stage")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--n-envs", default="1,4,8,16")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    from dinosim.config.resolve import RunConfig
    from dinosim.envs import make_env
    from dinosim.training.builders import configure_torch_threads, load_model
    from dinosim.training.evaluation import heldout_seeds, model_policy, obs_normalizer, run_seeded_episodes

    configure_torch_threads()
    run_data = json.loads((args.run / "run.json").read_text())
    config = RunConfig.from_dict(run_data["config"])
    stage = args.stage or max(config.stages)
    folder = args.run / f"stage{stage}" / "best"
    model = load_model(config.algorithm, folder / "model.zip")
    with open(folder / "vecnormalize.pkl", "rb") as fh:
        normalize = obs_normalizer(pickle.load(fh))
    seeds = heldout_seeds(config.seed, args.episodes)
    settings = [int(n) for n in args.n_envs.split(",")]
    times: dict[int, list[float]] = {n: [] for n in settings}
    outcomes: dict[int, tuple] = {}
    steps = 0
    for _ in range(args.repeats):
        for n in settings:
            envs = [make_env(config.species, config.env_kwargs(stage)) for _ in range(n)]
            start = time.perf_counter()
            result = run_seeded_episodes(model_policy(model), envs, seeds, normalize)
            times[n].append(time.perf_counter() - start)
            outcomes[n] = (tuple(result.successes), tuple(result.lengths))
            steps = sum(result.lengths)
    base = statistics.median(times[settings[0]])
    print(f"{config.species} stage {stage}: {args.episodes} episodes, {steps} env steps, median of {args.repeats}")
    for n in settings:
        t = statistics.median(times[n])
        print(f"  n_envs {n:>3}: {t:7.2f} s  {steps / t:8.0f} steps/s  speed-up {base / t:5.2f}")
    same = len(set(outcomes.values())) == 1
    print("episode outcomes identical for every n_envs" if same else "OUTCOMES DIFFER between n_envs")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
