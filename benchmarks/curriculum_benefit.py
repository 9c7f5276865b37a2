"""Does the curriculum help? Steps and wall time to each gate, warm-started from the previous stage vs from scratch.

(A stage whose ``curriculum.warm_start_stage`` names another stage starts from that one: each line says which.)

    python benchmarks/curriculum_benefit.py --species velociraptor [--seeds 0,1] [--stages 2,3]
    python benchmarks/curriculum_benefit.py --species trex --warm RUN [--scratch RUN ...]   # read finished runs

For every seed it runs (in this process, one after the other, committed configs, all logging on)
``dinosim curriculum --stages 1-3 --seed S`` -- the warm-started chain -- and ``dinosim train --stage N --seed S``
from scratch for every N in ``--stages``; same seeds and the same gates. Runs given with ``--warm``/``--scratch``
are read instead of trained (their ``summary.json``), so figures of earlier runs can be tabled without
re-training. Prints per species, seed and stage: steps and minutes to the gate (or "not passed" and the steps
used), and the ratio warm / scratch of the steps (an upper bound when only the warm start passed), and the
warm run's steps over all stages up to that gate with their ratio to scratch (what the whole chain cost).
Goal (issue 10): ratio <= 0.5 for every species and stage.
Exit code 0 when every ratio could be computed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional


def stage_result(run_dir: Path, stage: int) -> Optional[dict]:
    """``{"passed", "steps", "minutes"}`` of one stage of a run folder, or None when the stage is not in it.
    ``steps``: from the stage's first step to the snapshot that passed its gate (steps trained ahead of it while a
    background evaluation ran are not kept, so they do not count), else every step the stage used."""
    from dinosim.training.state import StageState

    data = json.loads((Path(run_dir) / "summary.json").read_text())["stages"].get(str(stage))
    if data is None or data.get("status") == "pending":
        return None
    state = StageState.from_dict({**data, "stage": stage})  # the folder key names the stage
    return {"passed": state.gate_passed, "steps": state.steps_to_gate(),
            "minutes": state.wall_time / 60.0, "run": str(run_dir), "source": source_stage(state.warm_start)}


def source_stage(model: Optional[str]) -> str:
    """Which policy a stage started from, by the model file it recorded: ``"stage K"``, ``"scratch"`` or the path
    (an ``--init-from`` outside a stage folder)."""
    from dinosim.runfolder import stage_number

    if model is None:
        return "scratch"
    number = next((n for n in map(stage_number, Path(model).parents) if n is not None), None)
    return f"stage {number}" if number is not None else model


def train(species: str, stages: list[int], seed: int, name: str, overrides: list[str]) -> Path:
    from dinosim.config.resolve import resolve_run
    from dinosim.runfolder import new_run_dir
    from dinosim.training.curriculum import RunHooks
    from dinosim.training.request import RunRequest
    from dinosim.training.runner import run

    config = resolve_run(species, "ppo", stages, overrides, seed=seed)
    run_dir = new_run_dir(species, name, None)
    command = "train" if len(stages) == 1 else "curriculum"
    print(f"training {species} stages {stages} seed {seed} -> {run_dir}", flush=True)
    run(RunRequest(command=command, config=config, timesteps=None, run_dir=run_dir, progress=False,
                   argv=list(sys.argv)), hooks=RunHooks(log_stdout=False))
    return run_dir


def describe(result: Optional[dict]) -> str:
    if result is None:
        return "(no run)"
    if result["passed"]:
        return f"{result['steps']:>9,} steps {result['minutes']:6.1f} min"
    return f"not passed in {result['steps']:,} steps ({result['minutes']:.1f} min)"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", default="velociraptor")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--stages", default="2,3", help="stages to compare (each needs its previous stage)")
    parser.add_argument("--warm", type=Path, nargs="*", default=None, help="finished curriculum runs to read")
    parser.add_argument("--scratch", type=Path, nargs="*", default=None, help="finished single-stage runs to read")
    parser.add_argument("--override", nargs="*", default=[])
    args = parser.parse_args(argv)
    stages = [int(s) for s in args.stages.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]

    warm = list(args.warm) if args.warm is not None else [
        train(args.species, list(range(1, max(stages) + 1)), seed, f"benefit-warm-s{seed}", args.override)
        for seed in seeds]
    scratch = list(args.scratch) if args.scratch is not None else [
        train(args.species, [stage], seed, f"benefit-scratch-st{stage}-s{seed}", args.override)
        for seed in seeds for stage in stages]
    ok = True
    print(f"\n{args.species}: warm start (curriculum) vs from scratch, steps to the gate")
    for stage in stages:
        for i, run_dir in enumerate(warm):
            w = stage_result(run_dir, stage)
            s = next((r for r in (stage_result(p, stage) for p in scratch) if r is not None and
                      json.loads((Path(r["run"]) / "run.json").read_text())["config"]["run"]["seed"]
                      == json.loads((Path(run_dir) / "run.json").read_text())["config"]["run"]["seed"]), None)
            ratio = "n/a"
            if w and s and w["passed"] and s["passed"]:
                ratio = f"{w['steps'] / s['steps']:.2f}"
            else:
                ok = False
                if w and s and w["passed"]:  # scratch stopped unpassed: the ratio is below warm / steps it used
                    ratio = f"< {w['steps'] / s['steps']:.2f} (scratch not passed)"
            source = f" (from {w['source']})" if w else ""
            print(f"  stage {stage} run {i}: warm{source} {describe(w)} | scratch {describe(s)} | ratio {ratio}"
                  + chain_note(run_dir, stage, s))
    return 0 if ok else 1


def chain_note(run_dir: Path, stage: int, scratch: Optional[dict]) -> str:
    """``; chain ...``: the warm run's steps over stages 1..``stage`` (what the curriculum spent to reach this gate)
    and their ratio to ``scratch``'s steps for the stage alone; empty unless every stage up to it passed."""
    results = [stage_result(run_dir, s) for s in range(1, stage + 1)]
    if not all(r is not None and r["passed"] for r in results):
        return ""
    steps = sum(r["steps"] for r in results if r is not None)
    ratio = f" ({steps / scratch['steps']:.2f} of scratch)" if scratch and scratch["passed"] else ""
    return f"; chain 1-{stage}: {steps:,} steps{ratio}"


if __name__ == "__main__":
    sys.exit(main())
