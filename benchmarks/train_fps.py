"""Training throughput: dinosim's `train` vs rl-zoo3 on the same env, hyperparameters and steps; vec-env sweep.

    python benchmarks/train_fps.py --species velociraptor --stage 1 --timesteps 65536
        runs `dinosim train -v` (all logging on: SB3's tables on stdout, TensorBoard, evaluations, checkpoints,
        metrics.jsonl) and
        `python -m rl_zoo3.train` (its own eval + checkpoints + TensorBoard, same eval/save frequency) one after
        the other, each in its own process, and prints both fps and the ratio dinosim / rl-zoo3.
    python benchmarks/train_fps.py --vec-envs dummy,threads,subproc --n-envs 1,2,4,8 --timesteps 65536 --only dinosim
        the training fps of dinosim for every vec-env type x n_envs (to choose the CLI defaults).
    python benchmarks/train_fps.py --eval-overhead --species velociraptor --stage 3 --timesteps 50000 \
            --eval-freq 25000
        what evaluation adds to a stage's wall time with the stage's gate size: dinosim trains the stage three
        times (no evaluation, inline, background) with every evaluation playing ``eval_episodes`` screening +
        ``gate_episodes`` gate episodes (the worst case: every screening passes and its gate evaluation fails; the
        thresholds are made unreachable so the stage runs its whole budget); prints the stage wall times, the
        mean evaluation episode length and the share evaluation adds in each mode. ``--full-episodes``: episodes
        cannot end by a fall, so each runs ``max_episode_steps`` (a policy that stands through every episode).
    python benchmarks/train_fps.py --runs runs/brachiosaurus/RUN [RUN ...] [--cost-ratio R]
        what evaluation cost real runs, per stage: the seconds training waited for screenings and gate
        evaluations, their share of the stage's wall time (recorded by dinosim since evaluations are timed); for
        older run folders the evaluation env steps against training steps and a share labelled ESTIMATED, or "not
        recorded" (see benchmarks/eval_share.py). Reads the folders only; trains nothing.

Evaluations are on in both programs of a pair: every ``--eval-freq`` steps (default: the stage's ``eval_freq``),
``eval_episodes`` episodes (dinosim: screening, plus its gate evaluation if a screening passes; inline or in the
background as ``curriculum.background_eval`` says, see ``--background-eval``).

Figures: "sb3 fps" is the last ``time/fps`` SB3 printed (steps / seconds since ``learn`` started, evaluations and
checkpoints included, printed before the rollout's update, so it flatters runs with few updates); "train fps"
(dinosim only) is steps / the stage's ``wall_time`` in summary.json (training, evaluations, checkpoints and final
save; no process or env start-up); "wall fps" is steps / whole-process seconds (imports and env start-up
included), the figure comparable between the two programs; "CPU s" is the user + system CPU time of the program's
process and its waited-for children (``resource.getrusage(RUSAGE_CHILDREN)`` around the run), and the CPU ratio
is rl-zoo3's CPU seconds / dinosim's for the same steps: on a busy machine it is far less noisy than wall time,
which also counts the time other processes held the cores. Both
programs use the committed ``[ppo]``, ``[env]`` and ``[curriculum]`` values of the stage (rl-zoo3 gets a
constant learning rate: a schedule does not change the work done). Requires ``pip install rl_zoo3``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

FPS_LINE = re.compile(r"\|\s+fps\s+\|\s+([0-9.]+)")


def timed_run(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """(the finished process, wall seconds, CPU seconds of it and its waited-for children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, wall, cpu


def last_fps(text: str) -> Optional[float]:
    found = FPS_LINE.findall(text)
    return float(found[-1]) if found else None


def run_dinosim(species: str, stage: int, timesteps: int, n_envs: int, vec_env: str, overrides: list[str],
                workdir: Path) -> dict[str, Any]:
    run_dir = workdir / f"dinosim-{vec_env}-{n_envs}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "dinosim", "train", "--species", species, "--stage", str(stage), "--timesteps",
           str(timesteps), "--n-envs", str(n_envs), "--vec-env", vec_env, "--run-dir", str(run_dir),
           "--no-progress", "-v"]
    if overrides:
        cmd += ["--override", *overrides]
    proc, wall, cpu = timed_run(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"dinosim train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    state = summary["stages"][str(stage)]
    steps = state["timesteps_used"]
    return {"steps": steps, "sb3_fps": last_fps(proc.stdout), "wall_fps": steps / wall, "wall": wall, "cpu": cpu,
            "train_fps": steps / state["wall_time"], "stage_wall": state["wall_time"],
            "eval_length": _mean_eval_length(run_dir / "metrics.jsonl"), "eval_share": state.get("eval_share")}


def _mean_eval_length(metrics: Path) -> Optional[float]:
    """Mean episode length over the evaluations in ``metrics`` (None without any)."""
    import json

    lengths = [json.loads(line)["eval/mean_ep_length"] for line in metrics.read_text().splitlines()] \
        if metrics.exists() else []
    return statistics.mean(lengths) if lengths else None


def _python_literal(value: Any) -> str:
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}={_python_literal(v)}" for k, v in value.items()) + ")"
    return repr(value)


# rl-zoo3's vec env for dinosim's: "threads" (envs in the training process, physics on threads) has no rl-zoo3
# counterpart; the same envs in one process is rl-zoo3's "dummy"
ZOO_VEC_ENV = {"threads": "dummy"}


def run_zoo(species: str, stage: int, timesteps: int, n_envs: int, vec_env: str, overrides: list[str],
            workdir: Path, num_threads: Optional[int] = None) -> dict[str, Any]:
    from dinosim.config.resolve import resolve_run
    from dinosim.species import SPECIES

    config = resolve_run(species, "ppo", [stage], overrides, n_envs=n_envs, vec_env=vec_env)
    kwargs = config.algo_kwargs(stage)
    cur = config.curriculum(stage)
    hyper = {"n_envs": n_envs, "policy": "MlpPolicy", "n_timesteps": timesteps,
             "normalize": {"norm_obs": True, "norm_reward": True, "gamma": kwargs.get("gamma", 0.99)}, **kwargs}
    if vec_env == "subproc":
        hyper["vec_env_wrapper"] = None
    vec_env = ZOO_VEC_ENV.get(vec_env, vec_env)
    cmd = [sys.executable, "-m", "rl_zoo3.train", "--gym-packages", "dinosim", "--env", SPECIES[species].env_id,
           "--algo", "ppo", "-n", str(timesteps), "--seed", str(config.seed), "-f", str(workdir / "zoo"),
           "--tensorboard-log", str(workdir / "zoo-tb"), "--eval-freq", str(cur.eval_freq),
           "--eval-episodes", str(cur.eval_episodes), "--n-eval-envs", str(max(1, min(cur.eval_episodes, n_envs))),
           "--save-freq", str(cur.save_freq), "--vec-env", vec_env, "--device", "cpu", "--verbose", "1",
           "--hyperparams", *[f"{k}:{_python_literal(v)}" for k, v in hyper.items() if k != "vec_env_wrapper"],
           "--env-kwargs", *[f"{k}:{_python_literal(v)}" for k, v in config.env_kwargs(stage).items()]]
    if num_threads is not None:
        cmd[cmd.index("--device"):cmd.index("--device")] = ["--num-threads", str(num_threads)]
    proc, wall, cpu = timed_run(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"rl_zoo3.train failed ({proc.returncode}):\n{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    steps = timesteps
    return {"steps": steps, "sb3_fps": last_fps(proc.stdout), "wall_fps": steps / wall, "wall": wall, "cpu": cpu}


OVERHEAD_MODES = {"no eval": None, "inline": "false", "background": "true"}  # None: one 1-episode eval at the end


def eval_overhead(args: argparse.Namespace, workdir: Path) -> None:
    """Train the stage in each of :data:`OVERHEAD_MODES` and print what evaluation adds to its wall time."""
    from dinosim.config.resolve import resolve_run

    cur = resolve_run(args.species, "ppo", [args.stage], args.override).curriculum(args.stage)
    freq = args.eval_freq or cur.eval_freq
    episodes = cur.eval_episodes + cur.gate_episodes
    common = [*args.override, f"curriculum.eval_episodes={episodes}", "curriculum.min_avg_reward=1e12"]
    if args.full_episodes:  # no fall termination: every episode runs max_episode_steps
        common += ["env.max_tilt=3.14159", "env.min_height_fraction=0.001"]
    print(f"stage {args.stage}: every {freq} steps {cur.eval_episodes} screening + {cur.gate_episodes} gate "
          f"episodes, {args.timesteps} steps, n_envs {args.n_envs.split(',')[0]}", flush=True)
    walls: dict[str, float] = {}
    for name, background in OVERHEAD_MODES.items():
        extra = [f"curriculum.eval_freq={freq}", f"curriculum.background_eval={background}"] if background else \
            [f"curriculum.eval_freq={args.timesteps}", "curriculum.eval_episodes=1", "curriculum.background_eval=false"]
        r = run_dinosim(args.species, args.stage, args.timesteps, int(args.n_envs.split(",")[0]), "dummy",
                        common + extra, workdir)
        walls[name] = r["stage_wall"]
        share = "" if background is None else f", evaluation adds {100 * (walls[name] / walls['no eval'] - 1):.0f} %"
        if background is not None and r["eval_share"] is not None:
            share += f" (recorded: training waited for it {100 * r['eval_share']:.0f} % of the stage)"
        length = f", eval episodes {r['eval_length']:.0f} steps long" if r["eval_length"] else ""
        print(f"  {name:<10} stage wall time {walls[name]:.0f} s over {r['steps']} steps (load "
              f"{os.getloadavg()[0]:.1f}{length}){share}", flush=True)
    per_eval = (walls["inline"] - walls["no eval"]) / max(args.timesteps // freq, 1)
    lag = min(per_eval * args.timesteps / walls["no eval"], freq)
    print(f"  one evaluation took {per_eval:.0f} s inline; background lag (steps trained before its outcome "
          f"stops a stage) about {lag:.0f} steps, at most eval_freq = {freq}", flush=True)


def print_run_costs(runs: list[Path], cost_ratio: Optional[float]) -> int:
    """``--runs``: the evaluation share per stage of these run folders (benchmarks/eval_share.py)."""
    from eval_share import report

    from dinosim.errors import DinosimError

    try:
        lines = report(runs, cost_ratio)
    except DinosimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", default="velociraptor")
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--timesteps", type=int, default=65536)
    parser.add_argument("--n-envs", default="4", help="comma-separated list")
    parser.add_argument("--vec-envs", default="dummy",
                        help="comma-separated: dummy,threads,subproc (rl-zoo3 runs dummy for threads)")
    parser.add_argument("--only", choices=("dinosim", "zoo", "both"), default="both")
    parser.add_argument("--override", nargs="*", default=[], help="dinosim overrides, applied to both programs")
    parser.add_argument("--repeats", type=int, default=3,
                        help="run the pair this many times (alternating dinosim, zoo) and print the median ratio")
    parser.add_argument("--zoo-num-threads", type=int, default=None,
                        help="rl-zoo3 --num-threads (default: torch's default; dinosim uses $DINOSIM_TORCH_THREADS=1)")
    parser.add_argument("--eval-freq", type=int, default=None,
                        help="evaluate every this many steps in both programs (default: the stage's eval_freq)")
    parser.add_argument("--background-eval", choices=("default", "true", "false"), default="default",
                        help="dinosim's curriculum.background_eval in the pairs (default: the configured value)")
    parser.add_argument("--full-episodes", action="store_true",
                        help="--eval-overhead: episodes cannot fall, so every one runs max_episode_steps")
    parser.add_argument("--eval-overhead", action="store_true",
                        help="instead of the pairs: what evaluation adds to the stage's wall time (see above)")
    parser.add_argument("--runs", nargs="+", type=Path, default=None, metavar="RUN",
                        help="instead of training: the evaluation share per stage of these run folders")
    parser.add_argument("--cost-ratio", type=float, default=None,
                        help="--runs: seconds of an evaluation env step / a training step, for estimates of "
                             "untimed runs (default: measured on the timed inline stages given)")
    args = parser.parse_args(argv)
    if args.runs:
        return print_run_costs(args.runs, args.cost_ratio)
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.eval_freq:
        args.override = [*args.override, f"curriculum.eval_freq={args.eval_freq}"]
    if args.eval_overhead:
        with tempfile.TemporaryDirectory(prefix="dinosim-evalcost-") as tmp:
            eval_overhead(args, Path(tmp))
        return 0
    if args.background_eval != "default":
        args.override = [*args.override, f"curriculum.background_eval={args.background_eval}"]
    with tempfile.TemporaryDirectory(prefix="dinosim-fps-") as tmp:
        for vec_env in args.vec_envs.split(","):
            for n_envs in (int(n) for n in args.n_envs.split(",")):
                run_pairs(args, vec_env, n_envs, Path(tmp))
    return 0


def run_pairs(args: argparse.Namespace, vec_env: str, n_envs: int, workdir: Path) -> None:
    """``--repeats`` pairs (dinosim, then rl-zoo3) of one vec env x n_envs; one line per pair, then the medians."""
    ratios, cpu_ratios = [], []
    for _ in range(args.repeats):
        row: dict[str, Any] = {"vec_env": vec_env, "n_envs": n_envs}
        if args.only in ("dinosim", "both"):
            row["dinosim"] = run_dinosim(args.species, args.stage, args.timesteps, n_envs, vec_env, args.override,
                                         workdir)
        if args.only in ("zoo", "both"):
            row["zoo"] = run_zoo(args.species, args.stage, args.timesteps, n_envs, vec_env, args.override, workdir,
                                 args.zoo_num_threads)
        print(_format(row), flush=True)
        if "dinosim" in row and "zoo" in row:
            ratios.append(row["dinosim"]["wall_fps"] / row["zoo"]["wall_fps"])
            cpu_ratios.append(row["zoo"]["cpu"] / row["dinosim"]["cpu"])
    for name, values in (("wall fps ratio dinosim/zoo", ratios), ("CPU ratio zoo/dinosim", cpu_ratios)):
        if values:
            print(f"{vec_env:>7} n_envs={n_envs:<2} {name} over {len(values)} pairs: median "
                  f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})", flush=True)


def _format(row: dict[str, Any]) -> str:
    parts = [f"{row['vec_env']:>7} n_envs={row['n_envs']:<2} load {os.getloadavg()[0]:.1f}"]
    for name in ("dinosim", "zoo"):
        if name in row:
            r = row[name]
            sb3 = f"{r['sb3_fps']:.0f}" if r["sb3_fps"] else "n/a"
            train = f", train fps {r['train_fps']:.0f}" if "train_fps" in r else ""
            parts.append(f"{name}: {r['steps']} steps, sb3 fps {sb3}{train}, wall fps {r['wall_fps']:.0f} "
                         f"({r['wall']:.0f}s), {r['cpu']:.1f} CPU s")
    if "dinosim" in row and "zoo" in row:
        d, z = row["dinosim"], row["zoo"]
        if d["sb3_fps"] and z["sb3_fps"]:
            parts.append(f"ratio sb3 fps dinosim/zoo = {d['sb3_fps'] / z['sb3_fps']:.2f}")
        parts.append(f"ratio wall fps = {d['wall_fps'] / z['wall_fps']:.2f}, "
                     f"CPU zoo/dinosim = {z['cpu'] / d['cpu']:.2f}")
    return " | ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
