"""Run the rules over run folders and shape the result: :func:`diagnose` -> :class:`Diagnosis` -> JSON or text.

JSON (``--json``; schema version :data:`SCHEMA_VERSION`, documented in docs/diagnose.md and pinned by a test)::

    {"schema": 1,
     "runs": [{"run_dir", "species", "algorithm", "status",
               "stages": [{"stage", "task", "gate_passed", "evaluations", "start_step", "end_step",
                           "symptoms": [Symptom.to_json(), ...]}]}],
     "across_runs": [Symptom.to_json() + {"runs": [run_dir, ...]}]}

Symptoms are ranked by confidence (highest first, then by id); a stage with none has ``"symptoms": []``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from dinosim.errors import DinosimError
from dinosim.tracking.diagnose import rules_motion, rules_task
from dinosim.tracking.diagnose.data import RunData, ScalarReader, StageData, load_run_data
from dinosim.tracking.diagnose.measure import recent_return
from dinosim.tracking.diagnose.model import Rule, Suggest, Symptom, confidence

SCHEMA_VERSION = 1
RULES: tuple[Rule, ...] = rules_motion.RULES + rules_task.RULES  # per-stage rules
SEED_SPREAD = "balance.seed_spread"  # the one rule over several runs (:func:`seed_spread`)
SPREAD_RATIO = 0.5  # seed_spread: (max - min) of the runs' recent returns at least this x their mean magnitude
RULE_IDS: tuple[str, ...] = tuple(r.symptom_id for r in RULES) + (SEED_SPREAD,)  # type: ignore[attr-defined]


@dataclass
class StageDiagnosis:
    data: StageData
    symptoms: list[Symptom]

    def to_json(self) -> dict[str, Any]:
        d = self.data
        return {"stage": d.stage, "task": d.task, "gate_passed": d.gate_passed, "evaluations": len(d.evals),
                "start_step": d.start_step, "end_step": d.end_step,
                "symptoms": [s.to_json() for s in self.symptoms]}


@dataclass
class RunDiagnosis:
    run: RunData
    stages: list[StageDiagnosis]

    def to_json(self) -> dict[str, Any]:
        r = self.run
        return {"run_dir": str(r.run_dir), "species": r.species, "algorithm": r.algorithm, "status": r.status,
                "stages": [s.to_json() for s in self.stages]}


@dataclass
class Diagnosis:
    runs: list[RunDiagnosis]
    across_runs: list[tuple[Symptom, list[str]]] = field(default_factory=list)

    def symptoms(self) -> list[Symptom]:
        return [s for r in self.runs for st in r.stages for s in st.symptoms] + [s for s, _ in self.across_runs]

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "runs": [r.to_json() for r in self.runs],
                "across_runs": [{**s.to_json(), "runs": runs} for s, runs in self.across_runs]}


def diagnose_stage(data: StageData) -> list[Symptom]:
    """Every rule's finding on one stage, ranked (highest confidence first, then id)."""
    found = [s for s in (rule(data) for rule in RULES) if s is not None]
    return sorted(found, key=lambda s: (-s.confidence, s.id))


def diagnose(paths: Sequence[Path], stage: Optional[int] = None, reader: Optional[ScalarReader] = None) -> Diagnosis:
    """Diagnose run folders (``stage``: only that stage; ``reader``: reads a stage folder's TensorBoard scalars,
    default :func:`dinosim.tracking.run_logs.read_scalars`). Raises :class:`DinosimError` for a path that is not a
    run folder, or when no run has ``stage``, before any TensorBoard file is read."""
    runs = [load_run_data(p, reader) if reader else load_run_data(p) for p in paths]
    if stage is not None and not any(s.stage == stage for r in runs for s in r.stages):
        have = sorted({s.stage for r in runs for s in r.stages})
        raise DinosimError(f"no run given has stage {stage} (stages present: {have})")
    out = []
    for run in runs:
        chosen = [s for s in run.stages if stage is None or s.stage == stage]
        out.append(RunDiagnosis(run, [StageDiagnosis(s, diagnose_stage(s)) for s in chosen]))
    return Diagnosis(out, seed_spread([s.data for r in out for s in r.stages]))


def seed_spread(stages: Iterable[StageData]) -> list[tuple[Symptom, list[str]]]:
    """``balance.seed_spread`` for each (species, stage) given by two or more runs: their recent returns differ by
    at least :data:`SPREAD_RATIO` x their mean magnitude, or some passed the gate and some did not."""
    groups: dict[tuple[str, int], list[StageData]] = {}
    for s in stages:
        if recent_return(s) is not None:
            groups.setdefault((s.species, s.stage), []).append(s)
    found = []
    for (_, n), group in sorted(groups.items()):
        if len(group) < 2:
            continue
        finals = [float(recent_return(g) or 0.0) for g in group]
        scale = max(abs(sum(finals) / len(finals)), 1e-9)
        ratio = (max(finals) - min(finals)) / scale
        passed = [g.gate_passed for g in group]
        if ratio < SPREAD_RATIO and (all(passed) or not any(passed)):
            continue
        s = Suggest(group[0]).scale_algo("learning_rate", 0.5)
        if group[0].algorithm == "ppo":
            n_steps = group[0].algo("n_steps")
            if isinstance(n_steps, int):
                s.algo("n_steps", 2 * n_steps)
        symptom = Symptom(n, confidence(ratio / SPREAD_RATIO - 1.0, len(group), 3),
                          "large spread across runs of the same stage",
                          [f"recent returns {', '.join(f'{f:.1f}' for f in finals)} (spread {ratio:.0%} of the "
                           f"mean); gate passed in {sum(passed)} of {len(group)} runs"],
                          {"returns": finals, "spread": ratio, "gates_passed": sum(passed), "runs": len(group)}, s.out,
                          SEED_SPREAD)
        found.append((symptom, [str(g.run_dir) for g in group]))
    return found


def format_text(diagnosis: Diagnosis) -> str:
    """Human-readable report: per run, per stage, each symptom with evidence and overrides."""
    lines: list[str] = []
    for run in diagnosis.runs:
        r = run.run
        lines.append(f"{r.run_dir} ({r.species}, {r.algorithm}, {r.status})")
        for st in run.stages:
            d = st.data
            gate = "gate passed" if d.gate_passed else "gate not passed"
            lines.append(f"  stage {d.stage} ({d.task or '?'}), steps {d.start_step}-{d.end_step}, "
                         f"{len(d.evals)} evaluations, {gate}")
            if not st.symptoms:
                lines.append("    no symptoms found" + ("" if d.evals else " (no evaluations yet: only the "
                                                                           "config-level rules could run)"))
            lines += _symptom_lines(st.symptoms, "    ")
    if diagnosis.across_runs:
        lines.append("across runs")
        for symptom, runs in diagnosis.across_runs:
            lines += _symptom_lines([symptom], "  ")
            lines.append(f"      runs: {', '.join(runs)}")
    return "\n".join(lines)


def _symptom_lines(symptoms: list[Symptom], indent: str) -> list[str]:
    lines = []
    for s in symptoms:
        lines.append(f"{indent}[{s.confidence:.2f}] {s.id}: {s.summary}")
        lines += [f"{indent}    - {e}" for e in s.evidence]
        if s.overrides:
            lines.append(f"{indent}    try: --override {' '.join(s.overrides)}")
    return lines
