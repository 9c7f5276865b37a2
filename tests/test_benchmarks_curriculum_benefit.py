"""`benchmarks/curriculum_benefit.py --warm/--scratch`: ratios and chain totals read from run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benefit(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import curriculum_benefit

    return curriculum_benefit


def _run(tmp_path: Path, name: str, seed: int, stages: dict[int, tuple[bool, int]]) -> Path:
    """A run folder with only what the benchmark reads: run.json's seed, summary.json's per-stage gate and steps."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"config": {"run": {"seed": seed, "stages": sorted(stages)}}}))
    entries = {str(s): {"status": "done", "gate_passed": passed, "timesteps_used": steps, "wall_time": 60.0}
               for s, (passed, steps) in stages.items()}
    (folder / "summary.json").write_text(json.dumps({"stages": entries}))
    return folder


def test_ratio_and_chain_per_stage(tmp_path: Path, benefit, capsys: pytest.CaptureFixture[str]) -> None:
    warm = _run(tmp_path, "warm", 0, {1: (True, 600_000), 2: (True, 256_500), 3: (False, 900_000)})
    summary = json.loads((warm / "summary.json").read_text())  # stage 2 ran 6,500 steps past its passing snapshot
    summary["stages"]["2"].update(start_step=606_500, gate_passed_at=856_500,
                                  warm_start=str(warm / "stage1" / "best" / "model.zip"))
    summary["stages"]["3"]["warm_start"] = str(warm / "stage1" / "best" / "model.zip")  # warm_start_stage = 1
    (warm / "summary.json").write_text(json.dumps(summary))
    scratch2 = _run(tmp_path, "scratch2", 0, {2: (True, 500_000)})
    scratch3 = _run(tmp_path, "scratch3", 0, {3: (True, 700_000)})
    other_seed = _run(tmp_path, "scratch2-seed1", 1, {2: (True, 50_000)})
    code = benefit.main(["--warm", str(warm), "--scratch", str(other_seed), str(scratch2), str(scratch3)])
    lines = capsys.readouterr().out.splitlines()
    stage2 = next(x for x in lines if x.strip().startswith("stage 2"))
    stage3 = next(x for x in lines if x.strip().startswith("stage 3"))
    assert "ratio 0.50" in stage2 and "chain 1-2: 850,000 steps (1.70 of scratch)" in stage2  # same seed only
    assert "warm (from stage 1)" in stage2 and "warm (from stage 1)" in stage3  # each line names its source
    assert "not passed in 900,000" in stage3 and "chain" not in stage3
    assert code == 1  # a ratio could not be computed
