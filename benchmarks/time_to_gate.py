"""Timesteps and wall time until a stage's gate passes, training with the committed config.

    python benchmarks/time_to_gate.py --species velociraptor --stage 1 [--n-envs 4] [--vec-env dummy]
        [--timesteps T] [--seed 0] [--override KEY=VALUE ...] [--run-dir DIR] [--init-from RUN_DIR]
    python benchmarks/time_to_gate.py --species velociraptor --stages 1-3   # the curriculum, one run folder

Runs `dinosim train` (or `dinosim curriculum` with --stages; the real runner, all logging on) and prints every
evaluation as it happens and, at the end, per stage the step and the wall time (seconds of training, evaluations
and checkpoints; process start-up excluded) at which the gate passed -- or that the budget ran out first.
Goal: velociraptor stage 1 within 30 minutes on the 2-core reference machine. Exit code 0 when every gate
passed, 1 otherwise.
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
    parser.add_argument("--stages", default=None,
                        help="run these stages as one curriculum, e.g. 1-3 (overrides --stage)")
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

    from dinosim.cli.run_cmds import parse_stages
    from dinosim.config.resolve import resolve_run
    from dinosim.runfolder import new_run_dir
    from dinosim.training.curriculum import RunHooks
    from dinosim.training.request import RunRequest
    from dinosim.training.runner import run

    stages = [args.stage] if args.stages is None else list(parse_stages(args.stages))
    config = resolve_run(args.species, "ppo", stages, args.override, seed=args.seed, n_envs=args.n_envs,
                         vec_env=args.vec_env)
    for stage in stages:
        cur = config.curriculum(stage)
        print(f"{args.species} stage {stage}: gate mean reward >= {cur.min_avg_reward}, mean length >= "
              f"{cur.min_avg_episode_length}"
              + (f", success >= {cur.min_success_rate}" if cur.min_success_rate else "")
              + f"; {cur.required_consecutive} passing screening(s) of {cur.eval_episodes} episodes (every "
              f"{cur.eval_freq} steps), then the {cur.gate_confidence:.0%} lower bounds of {cur.gate_episodes} "
              f"held-out episodes; budget {args.timesteps or cur.timesteps} steps", flush=True)
    t0 = time.time()

    def show(record: dict[str, Any]) -> None:
        success = record.get("eval/success_rate")
        print(f"  step {record['global_step']:>9}  {time.time() - t0:7.0f}s  {record.get('eval_kind', ''):6}"
              f"  reward {record['eval/mean_reward']:9.2f}"
              f"  length {record['eval/mean_ep_length']:7.1f}"
              + ("" if success is None else f"  success {success:.2f}"),
              flush=True)

    hooks = RunHooks(eval_sinks=[show], log_stdout=args.progress)
    label = "".join(str(s) for s in stages)
    run_dir = new_run_dir(args.species, f"time-to-gate-s{label}", args.run_dir)
    command = "train" if len(stages) == 1 else "curriculum"
    request = RunRequest(command=command, config=config, timesteps=args.timesteps, run_dir=run_dir,
                         init_from=args.init_from, progress=args.progress, argv=list(sys.argv))
    code = run(request, hooks=hooks)
    states = json.loads((run_dir / "summary.json").read_text())["stages"]
    all_passed = True
    for stage in stages:
        state = states[str(stage)]
        if state["gate_passed"]:
            print(f"stage {stage}: GATE PASSED after {state['timesteps_used']} stage steps (global step "
                  f"{state['gate_passed_at']}), {state['wall_time']:.0f}s "
                  f"of training ({state['wall_time'] / 60:.1f} min, n_envs={args.n_envs}, {args.vec_env})")
        else:
            all_passed = False
            print(f"stage {stage}: gate NOT passed: {state['timesteps_used']} of {state['budget']} steps used in "
                  f"{state['wall_time']:.0f}s (exit {code})")
    print(f"run folder: {run_dir}")
    return 0 if all_passed else 1



if __name__ == "__main__":
    sys.exit(main())
