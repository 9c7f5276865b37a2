"""How long evaluations took: every metrics.jsonl record is timed and each stage's totals add them up (real tiny runs;
background mode and resume are checked in test_training_background_eval)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from dinosim.runfolder import (
    EVAL_COUNT,
    EVAL_CPU,
    EVAL_STEPS,
    EVAL_TIME_FIELDS,
    EVAL_TIME_PREFIX,
    EVAL_WAIT,
    EVAL_WALL,
    GATE_KIND,
    METRICS_FILE,
    SCREEN_KIND,
    STAGE_EVAL_SHARE_KEY,
    STAGE_EVAL_TIME_KEY,
)
from dinosim.training.state import RunSummary, StageState

# stage 1 passes its gate at the first evaluation (a screening and a gate record), stage 2 never does
GATES = ["1.curriculum.min_avg_reward=-1e9", "curriculum.required_consecutive=1", "curriculum.gate_episodes=3",
         "2.curriculum.min_avg_reward=1e9"]


def records_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def assert_totals_are_the_records(state: dict, records: list[dict]) -> None:
    """A stage's ``eval_time`` totals are its records' timings summed per kind, and its share is their wait over
    the stage's wall time."""
    totals = state[STAGE_EVAL_TIME_KEY]
    for kind in (SCREEN_KIND, GATE_KIND):
        mine = [r for r in records if r["eval_kind"] == kind]
        assert totals[kind][EVAL_COUNT] == len(mine)
        for name in EVAL_TIME_FIELDS:
            assert totals[kind][name] == pytest.approx(sum(r[EVAL_TIME_PREFIX + name] for r in mine)), (kind, name)
    wait = sum(r[EVAL_TIME_PREFIX + EVAL_WAIT] for r in records)
    assert state[STAGE_EVAL_SHARE_KEY] == pytest.approx(wait / state["wall_time"])
    assert 0 < state[STAGE_EVAL_SHARE_KEY] < 1


def test_inline_records_are_timed_and_the_stage_totals_add_them_up(tmp_path: Path, tiny) -> None:
    code, summary = tiny.run(tmp_path / "run", [1, 2], GATES, 768)
    assert code == 0
    records = records_of(tmp_path / "run")
    assert [(r["stage"], r["eval_kind"]) for r in records][:2] == [(1, SCREEN_KIND), (1, GATE_KIND)]
    assert {r["stage"] for r in records} == {1, 2}
    for r in records:
        wall, cpu, steps, wait = (r[EVAL_TIME_PREFIX + n] for n in (EVAL_WALL, EVAL_CPU, EVAL_STEPS, EVAL_WAIT))
        assert type(steps) is int and steps == round(r["eval/episodes"] * r["eval/mean_ep_length"]) > 0
        assert 0 < wall and 0 <= cpu
        # inline, training waits for the whole play (and a little more: building the policy call)
        assert wall - 1e-3 <= wait <= wall + 1.0, r
    for stage in (1, 2):
        state = summary["stages"][str(stage)]
        assert_totals_are_the_records(state, [r for r in records if r["stage"] == stage])
        # inline, the evaluations' CPU is part of the training process's CPU in the stage
        evals_cpu = sum(r[EVAL_TIME_PREFIX + EVAL_CPU] for r in records if r["stage"] == stage)
        assert 0 < evals_cpu < state["cpu_time"]
    assert summary["stages"]["2"][STAGE_EVAL_TIME_KEY][GATE_KIND][EVAL_COUNT] == 0


def test_the_state_field_and_the_summary_key_are_one_name() -> None:
    assert STAGE_EVAL_TIME_KEY in {f.name for f in fields(StageState)}
    state = StageState(stage=1, wall_time=10.0)
    state.add_eval_time(SCREEN_KIND, {EVAL_WALL: 2.0, EVAL_CPU: 1.5, EVAL_STEPS: 100, EVAL_WAIT: 2.5})
    assert state.eval_share() == pytest.approx(0.25)
    data = RunSummary(command="train", species="velociraptor", algorithm="ppo", stages={1: state}).to_dict()
    assert data["stages"]["1"][STAGE_EVAL_SHARE_KEY] == pytest.approx(0.25)
    again = RunSummary.from_dict(json.loads(json.dumps(data))).stages[1]
    assert again.eval_time == state.eval_time  # what a checkpoint or summary.json stores comes back on resume


def test_a_state_from_before_timed_evaluations_has_no_totals_and_gets_none() -> None:
    old = StageState.checked({"stage": 3, "status": "finished", "wall_time": 600.0, "evaluations": 15})
    assert old.eval_time is None and old.eval_share() is None and old.cpu_time is None
    old.add_eval_time(GATE_KIND, dict.fromkeys(EVAL_TIME_FIELDS, 1))  # a resumed old run: partial totals would lie
    assert old.eval_time is None
    with pytest.raises(ValueError):
        StageState.checked({"stage": 1, STAGE_EVAL_TIME_KEY: {SCREEN_KIND: {EVAL_WALL: "slow"}}})
    with pytest.raises(ValueError):
        StageState.checked({"stage": 1, STAGE_EVAL_TIME_KEY: [1, 2]})
