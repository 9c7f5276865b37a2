"""`benchmarks/train_fps.py --runs`: the evaluation share of real run folders, recorded or labelled as estimated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dinosim.runfolder import EVAL_TIME_PREFIX, EVAL_WAIT

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def eval_share(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import eval_share

    return eval_share


def _old_run(make_run, ev, tmp_path: Path) -> Path:
    """A run folder from before evaluations were timed: 2 screenings of 20 episodes, 1 gate of 200, 10k steps."""
    records = [{**ev(5000, 10.0, 40.0), "eval/episodes": 20, "eval_kind": "screen"},
               {**ev(10000, 12.0, 50.0), "eval/episodes": 20, "eval_kind": "screen"},
               {**ev(10000, 12.0, 45.0), "eval/episodes": 200, "eval_kind": "gate"}]
    return make_run(tmp_path, "old", {1: records}, entries={1: {"wall_time": 100.0}})


def test_a_timed_run_shows_what_was_recorded(run_a, eval_share) -> None:
    costs = eval_share.stage_costs(run_a)
    records = [json.loads(x) for x in (run_a / "metrics.jsonl").read_text().splitlines()]
    assert [c.stage for c in costs] == [1, 2] and all(c.recorded for c in costs)
    for cost, line in zip(costs, eval_share.report([run_a])):
        waited = sum(r[EVAL_TIME_PREFIX + EVAL_WAIT] for r in records if r["stage"] == cost.stage)
        assert cost.wait == pytest.approx(waited)
        assert "RECORDED" in line and f"{100 * waited / cost.wall:.1f} % of the stage's wall time" in line
        assert cost.cost_ratio() is not None and cost.cost_ratio() > 0  # inline stages: a measured ratio


def test_an_old_run_is_not_recorded_or_a_labelled_estimate(tmp_path, make_run, ev, eval_share) -> None:
    old = _old_run(make_run, ev, tmp_path)
    [cost] = eval_share.stage_costs(old)
    assert not cost.recorded and cost.eval_steps == {"screen": 20 * 40 + 20 * 50, "gate": 200 * 45}
    [line] = eval_share.report([old])
    assert "not recorded" in line and "ESTIMATED" not in line and "%" not in line
    [line] = eval_share.report([old], cost_ratio=0.5)
    weighted = (1800 + 9000) * 0.5
    assert "ESTIMATED" in line and f"{100 * weighted / (10000 + weighted):.1f} %" in line and "--cost-ratio" in line


def test_the_mode_a_stage_evaluated_in_comes_from_its_summary_else_a_true_or_false_config(run_a, eval_share,
                                                                                           tmp_path) -> None:
    """summary.json records the mode (``"auto"`` in config.toml does not say it); a background stage gives no
    inline cost ratio, and its report says how it evaluated."""
    assert [c.background for c in eval_share.stage_costs(run_a)] == [False, False]  # tiny runs: "auto" -> inline
    run = shutil.copytree(run_a, tmp_path / "A")
    summary = json.loads((run / "summary.json").read_text())
    summary["stages"]["1"]["evaluated_in_background"] = True
    (run / "summary.json").write_text(json.dumps(summary))
    first = eval_share.stage_costs(run)[0]
    assert first.background is True and first.cost_ratio() is None
    assert ", background evaluation;" in eval_share.format_cost(first, None)
    del summary["stages"]["1"]["evaluated_in_background"]  # a run from before it was recorded: config.toml's "auto"
    (run / "summary.json").write_text(json.dumps(summary))
    assert eval_share.stage_costs(run)[0].background is None


def test_the_command_line(tmp_path, make_run, ev) -> None:
    old = _old_run(make_run, ev, tmp_path)
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "train_fps.py"), "--runs", str(old)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "stage 1" in proc.stdout and "not recorded" in proc.stdout, proc.stderr
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "train_fps.py"), "--runs", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1
