"""The run folder module: atomic writes, JSON-lines readers, checkpoint and stage naming, the policy-file lookup."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dinosim import runfolder
from dinosim.errors import DinosimError


# -- atomic writes and JSON lines -----------------------------------------------------------------------------------
def test_atomic_write_replaces_whole_file_and_leaves_no_temp_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a" / "x.json"
    runfolder.atomic_write_json(target, {"v": 1})
    assert json.loads(target.read_text()) == {"v": 1}

    class Boom:
        pass

    with pytest.raises(TypeError):
        runfolder.atomic_write_json(target, {"v": Boom()})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_json_lines_are_whole_under_concurrent_appenders(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    script = textwrap.dedent(f"""
        import sys
        from dinosim.runfolder import append_json_line
        for i in range(300):
            append_json_line({str(path)!r}, {{"writer": int(sys.argv[1]), "i": i, "pad": "x" * 2000}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in range(3)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 900
    for w in range(3):
        assert [r["i"] for r in records if r["writer"] == w] == list(range(300))


def test_checkpoints_count_only_when_complete_and_prune_keeps_newest(tmp_path: Path) -> None:
    for step in (100, 200, 300, 400):
        model, vecnorm, meta = runfolder.checkpoint_paths(tmp_path, step)
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(b"m")
        vecnorm.write_bytes(b"v")
        if step != 400:  # killed before its meta file: not complete
            meta.write_text("{}")
    assert [c[0] for c in runfolder.complete_checkpoints(tmp_path)] == [100, 200, 300]
    runfolder.prune_checkpoints(tmp_path, keep=2)
    assert [c[0] for c in runfolder.complete_checkpoints(tmp_path)] == [200, 300]
    assert not runfolder.checkpoint_paths(tmp_path, 100)[0].exists()


def test_new_run_dir_layout_and_env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    monkeypatch.setenv(runfolder.RUNS_DIR_ENV, str(tmp_path / "root"))
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    first = runfolder.new_run_dir("trex", "demo", now=now)
    second = runfolder.new_run_dir("trex", "demo", now=now)
    assert first == tmp_path / "root" / "trex" / "20260102-030405-demo"
    assert second.name == "20260102-030405-demo-2"
    explicit = runfolder.new_run_dir("trex", None, explicit=tmp_path / "mine")
    assert explicit == tmp_path / "mine" and explicit.is_dir()
    (explicit / runfolder.RUN_FILE).write_text("{}")
    with pytest.raises(DinosimError, match="already holds a run"):
        runfolder.new_run_dir("trex", None, explicit=explicit)
    with pytest.raises(DinosimError, match="--name"):
        runfolder.new_run_dir("trex", "bad/name")


def test_json_lines_reader_skips_torn_blank_and_non_dict_lines(tmp_path: Path) -> None:
    path = tmp_path / runfolder.METRICS_FILE
    assert runfolder.read_json_lines(path) == []  # not written yet
    runfolder.append_json_line(path, {"a": 1})
    with open(path, "ab") as fh:
        fh.write(b"\n[1, 2]\n" + '{"b": "\u00e9"}'.encode() + b"\n" + b'{"c": "\xc3')  # torn mid-character
    assert runfolder.read_json_lines(path) == [{"a": 1}, {"b": "\u00e9"}]


def test_stage_folders_are_named_and_found_by_number(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        runfolder.stage_dir(tmp_path, n).mkdir()
    (tmp_path / "stage3").write_text("a file, not a stage folder")
    (tmp_path / "stagex").mkdir()
    assert runfolder.stage_dirs(tmp_path) == {1: tmp_path / "stage1", 2: tmp_path / "stage2", 10: tmp_path / "stage10"}
    assert runfolder.stage_number(tmp_path / "stage7") == 7 and runfolder.stage_number(tmp_path / "stage7b") is None
    assert runfolder.stage_dirs(tmp_path / "missing") == {}


def test_policy_files_pair_model_with_its_own_vecnormalize(tmp_path: Path) -> None:
    stage = tmp_path / "stage1"
    best = stage / runfolder.BEST_DIR
    assert runfolder.policy_files(stage) == (None, None)
    stage.mkdir()
    (stage / runfolder.MODEL_FILE).write_bytes(b"final")
    (stage / runfolder.VECNORM_FILE).write_bytes(b"final stats")
    assert runfolder.policy_files(stage) == (stage / runfolder.MODEL_FILE, stage / runfolder.VECNORM_FILE)
    best.mkdir()
    (best / runfolder.MODEL_FILE).write_bytes(b"best")
    # best/ without its statistics: never paired with the final model's statistics
    assert runfolder.policy_files(stage) == (best / runfolder.MODEL_FILE, None)
    (best / runfolder.VECNORM_FILE).write_bytes(b"best stats")
    assert runfolder.policy_files(stage) == (best / runfolder.MODEL_FILE, best / runfolder.VECNORM_FILE)
    assert runfolder.policy_files(stage, "final") == (stage / runfolder.MODEL_FILE, stage / runfolder.VECNORM_FILE)
    with pytest.raises(DinosimError, match="prefer"):
        runfolder.policy_files(stage, "newest")


def test_process_alive(tmp_path: Path) -> None:
    import os

    assert runfolder.process_alive(os.getpid()) and not runfolder.process_alive(None)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not runfolder.process_alive(child.pid)  # reaped: gone


def test_select_policy_by_name_checkpoint_step_or_auto(tmp_path: Path) -> None:
    stage = tmp_path / "stage2"
    model, vecnorm, meta = runfolder.checkpoint_paths(stage, 512)
    model.parent.mkdir(parents=True)
    model.write_bytes(b"m")
    vecnorm.write_bytes(b"v")
    meta.write_text("{}")
    assert runfolder.select_policy(stage, "best") == (None, None)
    assert runfolder.select_policy(stage, "final") == (None, None)
    assert runfolder.select_policy(stage, "512") == (model, vecnorm)
    assert runfolder.select_policy(stage, "256") == (None, None)
    assert runfolder.select_policy(stage, "auto") == (model, vecnorm)  # no best/ or final: newest checkpoint
    (stage / runfolder.MODEL_FILE).write_bytes(b"final")
    assert runfolder.select_policy(stage, "auto") == (stage / runfolder.MODEL_FILE, None)


def test_pair_meta_file_names_the_checksums_of_each_kind_of_pair(tmp_path: Path) -> None:
    stage = tmp_path / "stage1"
    assert runfolder.pair_meta_file(stage / runfolder.MODEL_FILE) == stage / runfolder.FINAL_META_FILE
    best = stage / runfolder.BEST_DIR / runfolder.MODEL_FILE
    assert runfolder.pair_meta_file(best) == stage / runfolder.BEST_DIR / runfolder.BEST_META_FILE
    model, _, meta = runfolder.checkpoint_paths(stage, 4096)
    assert runfolder.pair_meta_file(model) == meta
