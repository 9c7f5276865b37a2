"""Timesteps and wall time until a stage's gate passes, training with the committed config.

    python benchmarks/time_to_gate.py --species velociraptor --stage 1 [--n-envs 4] [--vec-env dummy]
        [--timesteps T] [--seed 0] [--override KEY=VALUE ...] [--run-dir DIR] [--init-from RUN_DIR]

Runs `dinosim train` (the real runner, all logging on) and prints every evaluation as it happens and, at the end,
the global step and the wall time (seconds of training, evaluations and checkpoints; process start-up excluded) at
which the gate passed -- or that the budget ran out first. Goal: velociraptor stage 1 within 30 minutes on the
2-core reference machine. Exit code 0 when the gate passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", default="velociraptor")
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--vec-env", default="dummy", choices=("dummy", "subproc"))
    parser.add_argument("--timesteps", type=int, default=None, help="budget (default: the stage's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--init-from", type=Path, default=None,
                        help="warm-start from this run (e.g. the stage N-1 run of a previous time_to_gate call)")
    parser.add_argument("--override", nargs="*", default=[])
    parser.add_argument("--progress", action="store_true", help="SB3 tables and the progress bar as well")
    args = parser.parse_args(argv)

    from dinosim.config.resolve import resolve_run
    from dinosim.training.curriculum import RunHooks
    from dinosim.training.request import RunRequest
    from dinosim.training.rundir import new_run_dir
    from dinosim.training.runner import run

    config = resolve_run(args.species, "ppo", [args.stage], args.override, seed=args.seed, n_envs=args.n_envs,
                         vec_env=args.vec_env)
    cur = config.curriculum(args.stage)
    print(f"{args.species} stage {args.stage}: gate mean reward >= {cur.min_avg_reward}, mean length >= "
          f"{cur.min_avg_episode_length}" + (f", success >= {cur.min_success_rate}" if cur.min_success_rate else "")
          + f", {cur.required_consecutive} evaluations in a row (every {cur.eval_freq} steps)", flush=True)
    t0 = time.time()

    def show(record: dict[str, Any]) -> None:
        success = record.get("eval/success_rate")
        print(f"  step {record['global_step']:>9}  {time.time() - t0:7.0f}s  reward {record['eval/mean_reward']:9.2f}"
              f"  length {record['eval/mean_ep_length']:7.1f}" + ("" if success is None else f"  success {success:.2f}"),
              flush=True)

    hooks = RunHooks(eval_sinks=[show], log_stdout=args.progress)
    run_dir = new_run_dir(args.species, f"time-to-gate-s{args.stage}", args.run_dir)
    request = RunRequest(command="train", config=config, timesteps=args.timesteps, run_dir=run_dir,
                         init_from=args.init_from, progress=args.progress, argv=list(sys.argv))
    code = run(request, hooks=hooks)
    state = json.loads((run_dir / "summary.json").read_text())["stages"][str(args.stage)]
    if state["gate_passed"]:
        print(f"GATE PASSED at step {state['gate_passed_at']} after {state['wall_time']:.0f}s of training "
              f"({state['wall_time'] / 60:.1f} min, n_envs={args.n_envs}, {args.vec_env})")
        return 0
    print(f"gate NOT passed: budget of {state['budget']} steps used in {state['wall_time']:.0f}s (exit {code})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
