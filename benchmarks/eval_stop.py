"""What stopping evaluations early (``curriculum.eval_early_stop``) saves: measured on checkpoints, replayed on runs.

``python benchmarks/eval_stop.py play RUN STAGE STEP [STEP ...] [--episodes N] [--n-envs K]``
    plays a gate evaluation (the stage's ``gate_episodes`` unless ``--episodes``) of each checkpoint twice on the
    same gate seeds, without and with the early stop, and prints episodes, env steps and seconds of each, and that
    both verdicts agree. The run folder is only read.

``python benchmarks/eval_stop.py replay RUN [RUN ...]``
    what the early stop would have saved on the evaluations of finished runs, from their files. Screenings: EXACT,
    from the per-episode results in ``stage<N>/evaluations.npz`` (seed order), replayed through the rule of
    :mod:`dinosim.training.eval_stop` with the run's config and the evaluation engine's schedule for the stage's
    ``eval_envs`` (:func:`simulate`: the episodes in flight when it stops count as played). Gate evaluations keep
    only their totals in ``metrics.jsonl``: for a failed one with ``f`` failures of ``n`` that the rule would stop
    (``f`` above the most a pass allows, ``m``), the stop comes at the ``(m+1)``-th failure, EXPECTED at episode
    ``(m+1)(n+1)/(f+1)`` if the failures fall in random order (exchangeable seeds); saved steps = saved episodes x
    the mean length, for one eval env (with K envs up to K - 1 episodes in flight are played too: 1.6-1.8 % of
    the full gate's steps for T-Rex stage 3 checkpoints with 8 envs in ``play``). Labelled "expected", never mixed
    with the exact figures. For a stage whose evaluation time was recorded (summary.json) it also prints what
    evaluation added to training alone (recorded wait / (wall - wait)) and an ESTIMATE of it with the early stop:
    each kind's recorded wait scaled by the share of its env steps the stop keeps.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dinosim.config.settings import CurriculumSettings
from dinosim.runfolder import EVAL_WAIT, GATE_KIND, METRICS_FILE, RUN_FILE, SCREEN_KIND, read_json_lines, stage_dir
from dinosim.tracking.summary import summarize_run


def _run_config(run: Path) -> Any:
    from dinosim.config.resolve import RunConfig

    return RunConfig.from_dict(json.loads((run / RUN_FILE).read_text())["config"])


@dataclass
class Saving:
    """Evaluations of one kind in one stage: how many, how many the rule stops, episodes and env steps played in
    full and with the stop."""

    evaluations: int = 0
    stopped: int = 0
    episodes: int = 0
    episodes_with_stop: float = 0.0
    steps: int = 0
    steps_with_stop: float = 0.0

    @property
    def kept(self) -> float:
        """Share of the env steps the early stop keeps (1: nothing saved)."""
        return self.steps_with_stop / self.steps if self.steps else 1.0

    def line(self, label: str) -> str:
        if not self.evaluations:
            return f"  {label}: none"
        saved = 1 - self.steps_with_stop / self.steps if self.steps else 0.0
        return (f"  {label}: {self.evaluations} evaluations, {self.stopped} would stop; episodes {self.episodes:,} -> "
                f"{self.episodes_with_stop:,.0f}, env steps {self.steps:,} -> {self.steps_with_stop:,.0f} "
                f"({100 * saved:.1f} % saved)")


def simulate(lengths: list[int], successes: list[Optional[bool]], n_envs: int, watch: Any) -> tuple[int, int]:
    """(episodes recorded, env steps played) of :func:`~dinosim.training.evaluation.run_seeded_episodes` with
    ``n_envs`` envs and the stop ``watch`` on episodes of these lengths/successes (seed order): the engine's own
    schedule (every env steps once per tick in env order; a finished env takes the next seed; the stop is checked
    on the seed-order prefix and ends the tick at once)."""
    n = len(lengths)
    left: dict[int, tuple[int, int]] = {}  # env -> (seed index, steps to its episode's end)
    done = [False] * n
    next_seed = prefix = played = 0
    for env in range(min(n_envs, n)):
        left[env], next_seed = (next_seed, lengths[next_seed]), next_seed + 1
    while left:
        skip = min(steps for _, steps in left.values()) - 1  # ticks in which no episode ends
        played += skip * len(left)
        left = {env: (seed, steps - skip) for env, (seed, steps) in left.items()}
        for env in sorted(left):  # the tick in which the first episodes end, env by env
            seed, steps = left[env]
            played += 1
            if steps > 1:
                left[env] = (seed, steps - 1)
                continue
            done[seed] = True
            del left[env]
            while prefix < n and done[prefix]:
                prefix += 1
                if watch.add(lengths[prefix - 1], successes[prefix - 1]):
                    return prefix, played
            if next_seed < n:
                left[env], next_seed = (next_seed, lengths[next_seed]), next_seed + 1
    return n, played


def replay_screenings(stage_folder: Path, cur: CurriculumSettings, longest: Optional[int], n_envs: int) -> Saving:
    """EXACT (the stage's eval envs): the stop rule and the engine's schedule on each screening's per-episode
    results of ``evaluations.npz``."""
    from dinosim.training.eval_stop import StopRule

    out = Saving()
    path = stage_folder / "evaluations.npz"
    if not path.exists():
        return out
    with np.load(path) as data:
        for row_lengths, row_successes in zip(data["ep_lengths"], data["successes"]):
            played = row_lengths > 0
            lengths = [int(x) for x in row_lengths[played]]
            successes = [None if math.isnan(x) else bool(x) for x in row_successes[played]]
            kept, steps = simulate(lengths, successes, n_envs, StopRule(cur, len(lengths), False, longest).watch())
            out.evaluations += 1
            out.stopped += kept < len(lengths)
            out.episodes += len(lengths)
            out.episodes_with_stop += kept
            out.steps += sum(lengths)
            out.steps_with_stop += steps
    return out


def expected_gate_saving(records: list[dict[str, Any]], cur: CurriculumSettings) -> Saving:
    """EXPECTED (random order of the failures): what the success stop would have saved on the gate records."""
    out = Saving()
    for r in records:
        n, rate, length = r.get("eval/episodes"), r.get("eval/success_rate"), r.get("eval/mean_ep_length")
        if not isinstance(n, int) or not isinstance(length, (int, float)):
            continue
        played = n * float(length)
        out.evaluations += 1
        out.episodes += n
        out.steps += int(round(played))
        fewest = cur.fewest_successes(n, gate=True)
        failures = n - int(round(n * rate)) if isinstance(rate, (int, float)) else n
        allowed = n - fewest if fewest is not None else n
        if fewest is None or failures <= allowed:
            out.episodes_with_stop += n
            out.steps_with_stop += played
            continue
        at = (allowed + 1) * (n + 1) / (failures + 1)  # expected position of the (allowed+1)-th failure
        out.stopped += 1
        out.episodes_with_stop += at
        out.steps_with_stop += at * float(length)
    return out


def replay(runs: list[Path]) -> None:
    for run in runs:
        config = _run_config(run)
        records = read_json_lines(run / METRICS_FILE)
        rows = {row.stage: row for row in summarize_run(run).rows}
        print(f"{run}:")
        for stage in config.stages:
            folder = stage_dir(run, stage)
            if not folder.exists():
                continue
            cur = config.curriculum(stage)
            longest = config.env_kwargs(stage).get("max_episode_steps")
            gates = [r for r in records if r.get("stage") == stage and r.get("eval_kind") == GATE_KIND]
            print(f" stage {stage} (min_success_rate {cur.min_success_rate}, min_avg_episode_length "
                  f"{cur.min_avg_episode_length}, max_episode_steps {longest}):")
            screens = replay_screenings(folder, cur, longest, cur.eval_envs)
            gate = expected_gate_saving(gates, cur)
            print(screens.line(f"screenings, EXACT for {cur.eval_envs} eval envs"))
            print(gate.line("gate evaluations, EXPECTED (failures in random order)"))
            print(_share_line(rows.get(stage), {SCREEN_KIND: screens.kept, GATE_KIND: gate.kept}))


def _share_line(row: Any, kept: dict[str, float]) -> str:
    """What evaluation added to the stage's training alone, recorded and (ESTIMATE) with the early stop."""
    if row is None or row.eval_time is None or not row.wall_time:
        return "  evaluation time: not recorded"
    waits = {kind: float(row.eval_time.get(kind, {}).get(EVAL_WAIT, 0.0)) for kind in kept}
    wait, alone = sum(waits.values()), row.wall_time - sum(waits.values())
    stopped = sum(waits[kind] * kept[kind] for kind in kept)
    return (f"  evaluation time: RECORDED wait {wait:.0f} s = {100 * wait / row.wall_time:.1f} % of the stage's "
            f"{row.wall_time:.0f} s wall, adds {100 * wait / alone:.1f} % to training alone; with the early stop "
            f"~{100 * stopped / (alone + stopped):.1f} % of the wall, adds ~{100 * stopped / alone:.1f} % (ESTIMATE: "
            "each kind's wait x the share of its env steps kept)")


def play(run: Path, stage: int, steps: list[int], episodes: Optional[int], n_envs: Optional[int]) -> None:
    from dinosim.envs import make_env
    from dinosim.runfolder import checkpoint_paths
    from dinosim.training.builders import configure_torch_threads
    from dinosim.training.eval_plan import gate_passed
    from dinosim.training.eval_stop import StopRule, longest_episode
    from dinosim.training.eval_worker import load_policy
    from dinosim.training.evaluation import gate_seeds, model_policy, obs_normalizer, run_seeded_episodes

    configure_torch_threads()
    config = _run_config(run)
    cur = config.curriculum(stage)
    n = episodes or cur.gate_episodes
    envs = [make_env(config.species, config.env_kwargs(stage)) for _ in range(max(1, n_envs or cur.eval_envs))]
    seeds = gate_seeds(config.seed, 10_000_000, n)  # gate-stream seeds far past any the run used
    print(f"{run} stage {stage}: gate of {n} episodes, {len(envs)} eval envs, min_success_rate "
          f"{cur.min_success_rate} at {cur.gate_confidence} (fewest successes {cur.fewest_successes(n, True)})")
    for step in steps:
        model_path, vecnorm_path, _ = checkpoint_paths(stage_dir(run, stage), step)
        policy = model_policy(load_policy(model_path.read_bytes()))
        normalize = obs_normalizer(pickle.loads(vecnorm_path.read_bytes()))
        verdicts = []
        for label, stop in (("full", None), ("early stop", StopRule(cur, n, True, longest_episode(envs)))):
            wall = time.perf_counter()
            result = run_seeded_episodes(policy, envs, seeds, normalize, stop)
            took = time.perf_counter() - wall
            played = sum(result.lengths) + result.dropped_steps
            verdicts.append(gate_passed(result, cur))
            print(f"  step {step:>9} {label:>10}: {len(result.returns):3d} episodes recorded, {played:6,} env steps "
                  f"played ({result.dropped_steps:,} beyond them), {took:6.1f} s, success "
                  f"{sum(s is True for s in result.successes)}/{len(result.returns)}, passed {verdicts[-1]}"
                  + (f", stopped: {', '.join(result.stopped)}" if result.stopped else ""))
        assert verdicts[0] == verdicts[1], "the early stop changed a verdict"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("play", help="play gates of checkpoints with and without the early stop")
    p.add_argument("run", type=Path)
    p.add_argument("stage", type=int)
    p.add_argument("steps", type=int, nargs="+", help="global steps of the stage's checkpoints")
    p.add_argument("--episodes", type=int, default=None)
    p.add_argument("--n-envs", type=int, default=None, help="default: the stage's curriculum.eval_envs")
    r = sub.add_parser("replay", help="what the early stop would have saved on finished runs")
    r.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    for run in [args.run] if args.command == "play" else args.runs:
        if not (run / RUN_FILE).exists():
            print(f"error: {run}: not a dinosim run folder (no {RUN_FILE})", file=sys.stderr)
            return 2
    if args.command == "play":
        play(args.run, args.stage, args.steps, args.episodes, args.n_envs)
    else:
        replay(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
