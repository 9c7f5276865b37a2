"""`summarize_run` / `dinosim summary` on the REAL tiny runs of test_tracking_plots (trained once per session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dinosim.errors import DinosimError
from dinosim.tracking.summary import format_table, summarize_run, top_components


def _records(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("eval_kind") != "gate"]  # the screenings; gate records replay a snapshot


def test_rows_follow_summary_json_and_metrics_jsonl(run_a):
    summary = json.loads((run_a / "summary.json").read_text())
    records = _records(run_a)
    table = summarize_run(run_a)
    assert (table.species, table.algorithm, table.status) == ("velociraptor", "ppo", "finished")
    assert [row.stage for row in table.rows] == [1, 2]
    for row in table.rows:
        entry = summary["stages"][str(row.stage)]
        mine = [r for r in records if r["stage"] == row.stage]
        assert mine, "every stage of the tiny run evaluates at least once"
        assert row.timesteps == entry["timesteps_used"]
        assert row.wall_time == pytest.approx(entry["wall_time"])
        assert row.gate_passed == entry["gate_passed"] and row.gate_step == entry["gate_passed_at"]
        # best/ is the evaluation with the highest lower bound (not the highest mean): its return is in the table
        assert row.best_reward == pytest.approx(entry["best_eval"]["eval/mean_reward"])
        everything = [json.loads(x) for x in (run_a / "metrics.jsonl").read_text().splitlines()]
        assert any(r["eval/mean_reward"] == pytest.approx(row.best_reward)
                   for r in everything if r["stage"] == row.stage)
        assert row.final_reward == pytest.approx(mine[-1]["eval/mean_reward"])
        assert row.evaluations == len(mine)
        # balance reports no is_success; the tiny run's stage 2 has a target (a success gate needs one)
        assert (row.success_rate is None) == (row.stage == 1)
    first, second = table.rows
    assert first.gate_passed and first.gate_step == summary["stages"]["2"]["start_step"]
    assert second.gate_passed is False and second.gate_step is None  # stage 2's bar is out of reach


def test_top_components_are_the_last_evals_largest_shares(run_a):
    table = summarize_run(run_a, top=4)
    for row in table.rows:
        last = [r for r in _records(run_a) if r["stage"] == row.stage][-1]
        means = {k[len("eval/reward/"):]: v for k, v in last.items() if k.startswith("eval/reward/")}
        total = sum(abs(v) for v in means.values())
        assert len(row.components) == 4
        for term, value, share in row.components:
            assert value == pytest.approx(means[term]) and share == pytest.approx(abs(means[term]) / total)
        shares = [share for _, _, share in row.components]
        assert shares == sorted(shares, reverse=True)
        assert min(shares) >= max(abs(v) / total for t, v in means.items()
                                  if t not in {c[0] for c in row.components})


def test_top_components_ranks_by_absolute_share_and_drops_zeros():
    ranked = top_components({"alive": 30.0, "fall": -50.0, "energy": -0.5, "success": 0.0, "posture": 19.5}, 3)
    assert [(t, v) for t, v, _ in ranked] == [("fall", -50.0), ("alive", 30.0), ("posture", 19.5)]
    assert [round(s, 4) for _, _, s in ranked] == [0.5, 0.3, 0.195]
    assert top_components({"success": 0.0}) == []


def test_format_table_and_cli(run_a, dinosim_cli):
    text = format_table(summarize_run(run_a))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("stage"))
    for column in ("timesteps", "wall time", "gate", "best reward", "final reward", "success"):
        assert column in header
    assert any(line.startswith("1 ") and "passed @" in line for line in lines)
    assert any(line.startswith("2 ") and "not passed" in line for line in lines)
    assert any(line.strip().startswith("stage 1:") and "%" in line for line in lines)

    proc = dinosim_cli("summary", str(run_a))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == text.strip()
    proc = dinosim_cli("summary", str(run_a), "--json", "--top", "2")
    data = json.loads(proc.stdout)
    assert [row["stage"] for row in data["rows"]] == [1, 2]
    assert all(len(row["components"]) == 2 for row in data["rows"])


def test_errors(run_a, tmp_path, dinosim_cli, started_run):
    with pytest.raises(DinosimError, match="not a dinosim run folder"):
        summarize_run(tmp_path)
    with pytest.raises(DinosimError, match="stage folder"):
        summarize_run(run_a / "stage1")
    empty = tmp_path / "runs" / "velociraptor" / "empty"
    empty.mkdir(parents=True)
    (empty / "summary.json").write_text(json.dumps({"status": "running", "stages": {}}))
    with pytest.raises(DinosimError, match="no evaluations yet"):
        summarize_run(empty)
    started = summarize_run(started_run)  # a stage entry but no evaluation: a row of dashes
    assert [(r.stage, r.status, r.final_reward) for r in started.rows] == [(1, "running", None)]
    proc = dinosim_cli("summary", str(tmp_path / "missing"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1


def test_evaluation_time_per_stage_follows_summary_json(run_a, dinosim_cli):
    from dinosim.runfolder import EVAL_TIME_PREFIX, EVAL_WAIT

    summary = json.loads((run_a / "summary.json").read_text())
    everything = [json.loads(x) for x in (run_a / "metrics.jsonl").read_text().splitlines()]
    table = summarize_run(run_a)
    for row in table.rows:
        entry = summary["stages"][str(row.stage)]
        waited = sum(r[EVAL_TIME_PREFIX + EVAL_WAIT] for r in everything if r["stage"] == row.stage)
        assert row.eval_wait == pytest.approx(waited) and row.eval_wait > 0
        assert row.eval_share == pytest.approx(entry["eval_share"])
        assert row.eval_share == pytest.approx(waited / entry["wall_time"])
        assert 0 < row.eval_share < 1
    text = format_table(table)
    header = next(line for line in text.splitlines() if line.startswith("stage"))
    assert "eval time" in header and "eval share" in header
    assert any(line.strip().startswith("stage 1: screening 1x waited") and "gate 1x waited" in line
               for line in text.splitlines())
    data = json.loads(dinosim_cli("summary", str(run_a), "--json").stdout)
    assert [row["eval_share"] for row in data["rows"]] == pytest.approx([row.eval_share for row in table.rows])


def test_a_run_from_before_timed_evaluations_says_not_recorded(tmp_path, make_run, ev):
    old = make_run(tmp_path, "old", {1: [ev(256, 10.0, 40.0), ev(512, 12.0, 45.0)]},
                   entries={1: {"wall_time": 30.0, "evaluations": 2}})
    row = summarize_run(old).rows[0]
    assert (row.eval_wait, row.eval_share, row.eval_time) == (None, None, None)
    text = format_table(summarize_run(old))
    assert "stage 1: not recorded" in text
    assert next(line for line in text.splitlines() if line.startswith("1 ")).split()[4:6] == ["-", "-"]
