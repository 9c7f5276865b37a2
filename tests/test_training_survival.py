"""Run folders that survive damage, signals and concurrency (no training here; see test_training_faults.py):
the run lock, checksummed checkpoints and best/ pairs, temp-file cleanup, file modes, one-line errors for damaged
run files, SIGTERM/SIGHUP as Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dinosim.errors import DinosimError
from dinosim.run_integrity import (
    BEST_META_FILE,
    check_policy_pair,
    checkpoint_damage,
    intact_policy,
    newest_intact_checkpoint,
    save_best_pair,
    save_final_pair,
    write_checkpoint,
)
from dinosim.run_lock import LOCK_FILE, lock_run_dir
from dinosim.runfolder import (
    atomic_write_bytes,
    atomic_write_json,
    checkpoint_paths,
    complete_checkpoints,
    prune_checkpoints,
    remove_stale_temp_files,
)
from dinosim.training.state import RunSummary, StageState, read_run_file, write_run_file
from dinosim.training.stop_signals import Terminated, exit_code_for, signal_name, stop_signals_interrupt


def zip_bytes(text: str = "weights") -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data", text)
    return buffer.getvalue()


def checkpoint(folder: Path, step: int, text: str = "w") -> tuple[int, Path, Path, Path]:
    write_checkpoint(folder, step, zip_bytes(f"{text}{step}"), b"stats%d" % step,
                     {"global_step": step, "stage": 1, "state": {"stage": 1, "status": "running"}})
    return (step, *checkpoint_paths(folder, step))


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (proc.returncode,
                                                                                         proc.stderr)
    assert "Traceback" not in proc.stderr and all(w in lines[0] for w in words), lines[0]
    return lines[0]


def dinosim(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dinosim", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


# -- the run lock ------------------------------------------------------------------------------------------------------
def test_lock_is_exclusive_per_folder_and_released(tmp_path: Path) -> None:
    with lock_run_dir(tmp_path) as lock:
        assert lock.held and (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(DinosimError, match=f"process {os.getpid()} is already training"):
            lock_run_dir(tmp_path)  # another open file description: flock refuses it even in this process
        other = tmp_path / "other"
        other.mkdir()
        lock_run_dir(other).release()  # folders are independent
    lock_run_dir(tmp_path).release()  # released: free again


def test_second_train_or_resume_on_a_locked_folder_is_one_line(tmp_path: Path, lock_holder) -> None:
    """A live holder (here a plain process holding the lock) refuses `train --run-dir` into the same folder and
    `resume` of it, before any heavy import; the check-then-create race of `train --run-dir` is closed by the lock."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with lock_holder(run_dir) as holder:
        one_line_error(dinosim("train", "--stage", "1", "--run-dir", str(run_dir), "--timesteps", "25000"),
                       f"process {holder.pid} is already training")
        write_run_file(run_dir, {"command": "train", "config": _config()})
        RunSummary(command="train", species="velociraptor", algorithm="ppo",
                   stages={1: StageState(stage=1, status="running")}, status="interrupted").save(run_dir)
        one_line_error(dinosim("resume", str(run_dir)), f"process {holder.pid} is already training")


def _config() -> dict:
    from dinosim.config.resolve import resolve_run

    return resolve_run("velociraptor", "ppo", (1,)).to_dict()


# -- temp files, pruning, modes ---------------------------------------------------------------------------------------
def test_temp_cleanup_touches_only_the_runs_own_folders(tmp_path: Path) -> None:
    """`--run-dir runs`: the in-flight temporary files of other runs below it are left alone."""
    own = [tmp_path / ".tmp-summary.json.x", tmp_path / "stage1" / ".tmp-model.zip.y",
           tmp_path / "stage1" / "best" / ".tmp-best.json.z", tmp_path / "stage1" / "checkpoints" / ".tmp-c.q"]
    others = [tmp_path / "velociraptor" / "20260101-000000" / "stage1" / ".tmp-model.zip.a",
              tmp_path / "sweeps" / "s" / "trials" / "0000" / "runs" / ".tmp-x.b"]
    for path in own + others:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    (tmp_path / "stage1" / ".tmp-best.abc").mkdir()  # a best/ pair being written when the run was killed
    (tmp_path / "stage1" / ".tmp-best.abc" / "model.zip").write_bytes(b"x")
    remove_stale_temp_files(tmp_path)
    assert not any(p.exists() for p in own) and not (tmp_path / "stage1" / ".tmp-best.abc").exists()
    assert all(p.exists() for p in others)


def test_prune_removes_what_a_failed_save_left(tmp_path: Path) -> None:
    for step in (100, 200, 300):
        checkpoint(tmp_path, step)
    orphan_model, orphan_vecnorm, _ = checkpoint_paths(tmp_path, 250)  # a save that died after the model
    atomic_write_bytes(orphan_model, zip_bytes())
    prune_checkpoints(tmp_path, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert [c[0] for c in complete_checkpoints(tmp_path)] == [200, 300] and len(names) == 6
    assert not orphan_model.exists() and not orphan_vecnorm.exists()


def test_failed_checkpoint_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dinosim.run_integrity as integrity

    real = integrity.atomic_write_bytes

    def failing(path: Path, data: bytes) -> None:
        if path.name.endswith("vecnormalize.pkl"):
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(integrity, "atomic_write_bytes", failing)
    with pytest.raises(OSError):
        checkpoint(tmp_path, 64)
    assert list((tmp_path / "checkpoints").iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_run_files_honour_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "summary.json", {"a": 1})
        save_best_pair(tmp_path / "stage1", zip_bytes(), b"stats", {"global_step": 1})
        lock_run_dir(tmp_path).release()
    finally:
        os.umask(previous)
    for path, mode in ((tmp_path / "summary.json", 0o666), (tmp_path / LOCK_FILE, 0o666),
                       (tmp_path / "stage1" / "best", 0o777), (tmp_path / "stage1" / "best" / "model.zip", 0o666)):
        assert path.stat().st_mode & 0o777 == mode & ~umask, path


# -- checksums --------------------------------------------------------------------------------------------------------
def test_resume_candidate_skips_damaged_checkpoints(tmp_path: Path) -> None:
    old, new = checkpoint(tmp_path, 128), checkpoint(tmp_path, 256)
    assert newest_intact_checkpoint(tmp_path) == (new, [])
    data = new[2].read_bytes()
    new[2].write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one flipped bit in the vecnormalize file
    found, damaged = newest_intact_checkpoint(tmp_path)
    assert found == old and damaged[0][0] == 256 and str(new[2]) in damaged[0][1] and "sha256" in damaged[0][1]
    meta = json.loads(old[3].read_text())
    meta["state"]["budget"] = "lots"  # well-formed JSON, wrong type: refused by the state check
    old[3].write_text(json.dumps(meta))
    assert "damaged stage state" in checkpoint_damage(old, StageState.checked)
    old[3].write_text("[]")
    assert "expected a JSON object" in checkpoint_damage(old)
    legacy = checkpoint(tmp_path, 512)  # written before checksums: accepted when its model is a readable zip
    meta = json.loads(legacy[3].read_text())
    del meta["sha256"]
    legacy[3].write_text(json.dumps(meta))
    assert checkpoint_damage(legacy) is None
    legacy[1].write_bytes(legacy[1].read_bytes()[:20])
    assert "not a readable model archive" in checkpoint_damage(legacy)


def test_a_checkpoint_at_the_same_step_is_not_rewritten(tmp_path: Path) -> None:
    first = checkpoint(tmp_path, 64, text="a")
    before = first[1].read_bytes()
    checkpoint(tmp_path, 64, text="b")  # Ctrl-C right after a resume: same step, nothing trained since
    assert first[1].read_bytes() == before and checkpoint_damage(first) is None


@pytest.mark.parametrize("exchange", [True, False])
def test_best_pair_is_replaced_as_one_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    import dinosim.run_integrity as integrity

    if not exchange:  # platforms without renameat2(RENAME_EXCHANGE): two renames
        monkeypatch.setattr(integrity, "_exchange", lambda a, b: False)
    best = save_best_pair(tmp_path, zip_bytes("one"), b"stats-one", {"global_step": 1})
    save_best_pair(tmp_path, zip_bytes("two"), b"stats-two", {"global_step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no temporary folder left
    meta = json.loads((best / BEST_META_FILE).read_text())
    assert meta["global_step"] == 2 and set(meta["sha256"]) == {"model.zip", "vecnormalize.pkl"}
    assert (best / "vecnormalize.pkl").read_bytes() == b"stats-two"
    check_policy_pair(best / "model.zip", best / "vecnormalize.pkl")
    (best / "vecnormalize.pkl").write_bytes(b"stats-one")  # a pair that does not belong together
    with pytest.raises(DinosimError, match="vecnormalize.pkl: damaged"):
        check_policy_pair(best / "model.zip", best / "vecnormalize.pkl")


def test_final_pair_carries_checksums_and_a_stale_meta_never_vouches(tmp_path: Path) -> None:
    save_final_pair(tmp_path, zip_bytes("one"), b"stats-one", {"stage": 1, "step": 8})
    check_policy_pair(tmp_path / "model.zip", tmp_path / "vecnormalize.pkl")
    meta = json.loads((tmp_path / "final.json").read_text())
    assert meta["step"] == 8 and set(meta["sha256"]) == {"model.zip", "vecnormalize.pkl"}
    save_final_pair(tmp_path, zip_bytes("two"), b"stats-two", {"stage": 1, "step": 16})
    check_policy_pair(tmp_path / "model.zip", tmp_path / "vecnormalize.pkl")
    (tmp_path / "model.zip").write_bytes(zip_bytes("one"))  # a valid archive, but not the one that was written
    with pytest.raises(DinosimError, match="model.zip: damaged"):
        check_policy_pair(tmp_path / "model.zip", tmp_path / "vecnormalize.pkl")


@pytest.mark.parametrize("which,damage,words", [
    ("final", "model.zip", "stage1/model.zip: damaged"),
    ("final", "vecnormalize.pkl", "stage1/vecnormalize.pkl: damaged"),
    ("final", "final.json", "final.json: not valid JSON"),
    ("final", "-vecnormalize.pkl", "stage1/vecnormalize.pkl: No such file"),
    ("64", "checkpoints/step_000000000064_model.zip", "step_000000000064_model.zip: damaged"),
    ("64", "checkpoints/step_000000000064_vecnormalize.pkl", "step_000000000064_vecnormalize.pkl: damaged"),
    ("64", "-checkpoints/step_000000000064.json", "an incomplete checkpoint (no step_000000000064.json"),
    ("64", "checkpoints/step_000000000064.json", "step_000000000064.json: not valid JSON"),
])
def test_evaluate_names_a_damaged_final_or_checkpoint_file(tmp_path: Path, which: str, damage: str,
                                                            words: str) -> None:
    """`evaluate --model final|STEP` checks the pair's checksums before anything is unpickled: a damaged, missing
    or uncommitted file is one line naming it, exit 2 (before torch is imported: the check is stdlib only)."""
    run_dir = tmp_path / "run"
    stage = run_dir / "stage1"
    write_run_file(run_dir, {"command": "train", "config": _config()})
    save_final_pair(stage, zip_bytes("final"), b"stats", {"stage": 1, "step": 128})
    checkpoint(stage, 64)
    if damage.startswith("-"):
        (stage / damage[1:]).unlink()
    else:
        data = (stage / damage).read_bytes()
        (stage / damage).write_bytes(data[: len(data) // 2])
    one_line_error(dinosim("evaluate", str(run_dir), "--model", which, "--episodes", "1"), words)


def test_evaluate_auto_passes_over_damaged_pairs_to_the_next_intact_one(tmp_path: Path) -> None:
    """`evaluate` (``--model auto``: best, final, then checkpoints newest first) with damaged files: before, the
    first damaged pair was an error (and a damaged newest checkpoint hid the older ones); now each damaged pair is
    skipped with a warning naming it and why, and the next intact pair is played. Nothing intact: one error."""
    run_dir = tmp_path / "run"
    stage = run_dir / "stage1"
    write_run_file(run_dir, {"command": "train", "config": _config()})
    save_best_pair(stage, zip_bytes("best"), b"stats-best", {"global_step": 96})
    save_final_pair(stage, zip_bytes("final"), b"stats-final", {"stage": 1, "step": 128})
    checkpoint(stage, 64)
    checkpoint(stage, 128)
    assert intact_policy(stage) == (stage / "best" / "model.zip", stage / "best" / "vecnormalize.pkl", [])
    for damaged in ("best/model.zip", "vecnormalize.pkl", "checkpoints/step_000000000128_model.zip"):
        data = (stage / damaged).read_bytes()
        (stage / damaged).write_bytes(data[: len(data) // 2])
    model, vecnorm, skipped = intact_policy(stage)
    assert (model, vecnorm) == checkpoint_paths(stage, 64)[:2]
    assert [which for which, _ in skipped] == ["best", "final", "128"]
    assert all(damaged in reason for (_, reason), damaged in zip(skipped, (
        "best/model.zip: damaged", "stage1/vecnormalize.pkl: damaged", "step_000000000128_model.zip: damaged")))
    proc = dinosim("evaluate", str(run_dir), "--episodes", "1")  # the fake checkpoint 64 is the one it loads
    lines = proc.stderr.strip().splitlines()
    assert lines[:3] == [f"warning: stage 1: skipping the damaged {what}: {reason}" for what, (_, reason) in
                         zip(("best model", "final model", "checkpoint 128"), skipped)], proc.stderr
    assert len(lines) == 4 and lines[3].startswith(f"error: {checkpoint_paths(stage, 64)[1]}: cannot load"), lines
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    proc = dinosim("evaluate", str(run_dir), "--stage", "1", "--episodes", "1")
    assert proc.returncode == 2 and proc.stderr.count("warning: stage 1: skipping the damaged") == 4, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: {run_dir}: no intact model for stage 1 (every one is damaged; first: {skipped[0][1]}")


# -- one-line errors for damaged run files ----------------------------------------------------------------------------
@pytest.mark.parametrize("content,words", [
    (b"", "not valid JSON"), (b"[]", "expected a JSON object"), (b'{"stages": [], "command": "train"}', "not a"),
    (b'{"command": "train", "species": "velociraptor", "algorithm": "ppo", "stages": {"1": {"stage": "one"}}}',
     "not a dinosim run summary"), (b"\xff\xfe{", "not valid JSON"),
])
def test_damaged_summary_is_one_line_naming_it(tmp_path: Path, content: bytes, words: str) -> None:
    (tmp_path / "summary.json").write_bytes(content)
    with pytest.raises(DinosimError, match=words) as info:
        RunSummary.load(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "summary.json"))


def test_run_file_checked_by_type_and_by_digest(tmp_path: Path) -> None:
    digest = write_run_file(tmp_path, {"command": "train", "config": _config()})
    assert read_run_file(tmp_path, digest)["command"] == "train"
    data = json.loads((tmp_path / "run.json").read_text())
    data["config"]["stage1"]["ppo"]["learning_rate"] = "fast"
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(DinosimError, match="run.json: not a dinosim run file"):
        read_run_file(tmp_path)
    text = (tmp_path / "run.json").read_text().replace('"fast"', "0.0003")
    (tmp_path / "run.json").write_text(text)  # valid again, but not the bytes the run started with
    read_run_file(tmp_path)
    with pytest.raises(DinosimError, match="run.json: damaged"):
        read_run_file(tmp_path, digest)


def test_reported_tracebacks_are_one_line_errors(tmp_path: Path) -> None:
    """The cases issue 13 found: resume with summary.json = [], evaluate with a truncated run.json,
    DINOSIM_RUNS_DIR naming a file."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_run_file(run_dir, {"command": "train", "config": _config()})
    (run_dir / "summary.json").write_text("[]")
    one_line_error(dinosim("resume", str(run_dir)), "summary.json", "expected a JSON object")
    (run_dir / "run.json").write_bytes((run_dir / "run.json").read_bytes()[:100])
    one_line_error(dinosim("evaluate", str(run_dir)), "run.json", "not valid JSON")
    (tmp_path / "afile").write_text("x")
    one_line_error(dinosim("train", "--stage", "1", "--timesteps", "25000", env={"DINOSIM_RUNS_DIR": str(tmp_path /
                                                                                                      "afile")}),
                   "DINOSIM_RUNS_DIR", "not a folder")


# -- SIGTERM / SIGHUP -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum,code,name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_stop_signals_raise_a_keyboard_interrupt_with_their_exit_code(signum: int, code: int, name: str) -> None:
    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt) as info:
        with stop_signals_interrupt():
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert isinstance(info.value, Terminated) and exit_code_for(info.value) == code
    assert signal_name(info.value) == name and signal.getsignal(signum) is before
    try:
        raise RuntimeError("wrapped") from info.value
    except RuntimeError as wrapped:
        assert exit_code_for(wrapped) == code  # found through the chain (click's Abort wraps it)
    assert exit_code_for(KeyboardInterrupt()) == 130 and signal_name(None) == "Ctrl-C"
