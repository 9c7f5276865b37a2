"""Real (tiny) runs under faults: SIGTERM/SIGHUP during training, and fault injection into every file of a run
folder (random truncation, random bit flips, wrong-typed JSON, deletion) answered by every command that reads it
with a clean fallback or one `error:` line naming the file, never a traceback."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from test_training_curriculum import N_ENVS, TINY, assert_every_file_loads, cli, run_in_process, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_checkpoint_like_ctrl_c(tmp_path: Path, signum: int, code: int) -> None:
    run_dir = tmp_path / "run"
    proc = cli("train", "--species", "velociraptor", "--stage", "1", "--timesteps", "100000", "--n-envs",
               str(N_ENVS), "--vec-env", "subproc", "--run-dir", str(run_dir), "--no-progress", "--override", *TINY)
    wait_for(run_dir / "stage1" / "checkpoints", "step_*.json", proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-3000:]
    assert f"interrupted ({signal.Signals(signum).name})" in err and f"dinosim resume {run_dir}" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    newest = max(int(p.stem.split("_")[1]) for p in (run_dir / "stage1" / "checkpoints").glob("*.json"))
    assert newest == summary["global_step"]  # the signal itself was checkpointed
    assert_every_file_loads(run_dir)
    if signum != signal.SIGTERM:
        return
    # resumable, and the lock died with the process
    resumed = cli("resume", str(run_dir), "--no-progress")
    wait_for(run_dir / "stage1" / "checkpoints", f"step_*{newest + 256:012d}.json", resumed)
    resumed.send_signal(signal.SIGTERM)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 143 and f"resumed from the checkpoint at step {newest}" in out, err[-2000:]


# -- fault injection --------------------------------------------------------------------------------------------------
def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))] if data else data


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\x01"
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def wrong_json(data: bytes, rng: random.Random) -> bytes:
    return rng.choice([b"[]", b"null", b'"text"', b"42", b'{"stages": 3}', b"{}"])


DAMAGES: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncated": truncate, "bit-flipped": flip_bits, "wrong-typed": wrong_json,
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real interrupted run: checkpoints at 256 and 512, best/, final files, metrics, TensorBoard events."""
    root = tmp_path_factory.mktemp("template")
    code, _ = run_in_process(root, [1], [], 768)
    assert code == 0
    run_dir = root / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["status"], summary["stages"]["1"]["status"] = "interrupted", "running"  # killed before the end
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def readers_of(relative: str) -> list[list[str]]:
    """The commands that read this file (argument lists after `dinosim`, {run} = the run folder)."""
    name = Path(relative).name
    if relative.startswith("stage1/checkpoints/") or name in ("evaluations.npz", ".lock"):
        return [["resume", "{run}", "--no-progress"]]
    if relative.startswith("stage1/best/") or name in ("model.zip", "vecnormalize.pkl"):
        return [["evaluate", "{run}", "--episodes", "1"]]
    if name in ("metrics.jsonl", "config.toml") or "events" in name:
        return [["summary", "{run}"], ["plot", "{run}", "--out", "{run}/curves.png"]]
    return [["summary", "{run}"], ["plot", "{run}", "--out", "{run}/curves.png"],
            ["evaluate", "{run}", "--episodes", "1"], ["resume", "{run}", "--no-progress"]]  # run/summary.json


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """`dinosim ARGS` in this process (torch is imported once for all cases); (exit code, stderr)."""
    from dinosim.cli import main

    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def test_damaged_run_files_give_one_line_errors_or_a_clean_fallback(template: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    rng = random.Random(13)
    files = sorted(str(p.relative_to(template)) for p in template.rglob("*") if p.is_file())
    assert {"run.json", "summary.json", "metrics.jsonl", "stage1/best/best.json",
            "stage1/checkpoints/step_000000000512_model.zip"} <= set(files)
    outcomes: dict[str, int] = {}
    for relative in files:
        damages = dict(DAMAGES) if relative.endswith(".json") else {k: DAMAGES[k] for k in ("truncated", "bit-flipped")}
        damages["deleted"] = lambda data, rng: b""  # marker: removed below
        for kind, damage in damages.items():
            case = tmp_path / f"case-{len(outcomes)}"
            shutil.copytree(template, case)
            target = case / relative
            if kind == "deleted":
                target.unlink()
            else:
                target.write_bytes(damage(target.read_bytes(), rng))
            for args in readers_of(relative):
                argv = [a.replace("{run}", str(case)) for a in args]
                code, err = run_cli(argv, capsys)
                label = f"{relative} {kind}: dinosim {' '.join(args)}"
                assert "Traceback" not in err, f"{label}\n{err[-3000:]}"
                errors = [line for line in err.splitlines() if line.startswith("error:")]
                if code != 0:
                    assert code == 2 and len(errors) == 1, f"{label} -> exit {code}\n{err[-3000:]}"
                    assert err.strip().splitlines()[-1] == errors[0], f"{label}\n{err[-3000:]}"
                outcomes[f"{label}"] = code
    assert len(outcomes) > 60
    # some damage must be caught (not everything "works"): the digests name damaged policy files
    assert any(code == 2 for key, code in outcomes.items() if "best/model.zip bit-flipped" in key)
    assert any(code == 2 for key, code in outcomes.items() if key.startswith("run.json truncated"))
    # and a damaged newest checkpoint falls back to the previous one: resume succeeds
    assert outcomes["stage1/checkpoints/step_000000000512_model.zip truncated: dinosim resume {run} --no-progress"] == 0


def test_resume_says_which_checkpoint_it_used(template: Path, tmp_path: Path) -> None:
    case = tmp_path / "run"
    shutil.copytree(template, case)
    newest = case / "stage1" / "checkpoints" / "step_000000000512_vecnormalize.pkl"
    newest.write_bytes(newest.read_bytes()[:50])
    out = subprocess.run([sys.executable, "-m", "dinosim", "resume", str(case), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"skipping the damaged checkpoint at step 512: {newest}: damaged" in out.stderr
    assert "stage 1: resumed from the checkpoint at step 256" in out.stdout
    assert json.loads((case / "summary.json").read_text())["status"] == "finished"


def test_no_secret_in_output_or_run_files(tmp_path: Path) -> None:
    """A W&B key in the environment is never written: not to the output, the run folder, nor W&B's offline files
    (the W&B config holds the flattened run config, not the environment)."""
    key = "0123456789abcdef" * 2 + "deadbeef"
    run_dir = tmp_path / "run"
    proc = cli("train", "--species", "velociraptor", "--stage", "1", "--timesteps", "256", "--n-envs", str(N_ENVS),
               "--run-dir", str(run_dir), "--no-progress", "--wandb", "--override", *TINY,
               env={"WANDB_API_KEY": key, "WANDB_MODE": "offline", "WANDB_BASE_URL": "http://127.0.0.1:9"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert key not in out + err
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any("wandb" in str(p) for p in files)  # W&B's offline run is inside the run folder
    assert not [p for p in files if key.encode() in p.read_bytes()]
