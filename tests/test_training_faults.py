"""Real (tiny) runs under faults: SIGTERM/SIGHUP during training, and fault injection into every file of a run
folder (random truncation, random bit flips, wrong-typed JSON, deletion) answered by every command that reads it
with a clean fallback or one `error:` line naming the file, never a traceback."""

from __future__ import annotations

import json
import random
import shutil
import signal
from pathlib import Path
from typing import Callable

import pytest

pytestmark = pytest.mark.slow


def test_sigterm_and_sighup_checkpoint_like_ctrl_c(tmp_path: Path, tiny, dinosim_popen, wait_for_file) -> None:
    """SIGTERM during training (subprocess envs), then SIGHUP during the resumed run: each is checkpointed like
    Ctrl-C; the run stays resumable (the lock died with the process)."""
    run_dir, checkpoints = tmp_path / "run", tmp_path / "run" / "stage1" / "checkpoints"
    proc = dinosim_popen("train", "--species", "velociraptor", "--stage", "1", "--timesteps", "100000", "--n-envs",
                         str(tiny.n_envs), "--vec-env", "subproc", "--run-dir", str(run_dir), "--no-progress",
                         "--override", *tiny.overrides)
    wait_for_file(checkpoints, "step_*.json", proc)
    proc.send_signal(signal.SIGTERM)
    _, newest = tiny.assert_interrupted(proc, signal.SIGTERM, run_dir)
    resumed = dinosim_popen("resume", str(run_dir), "--no-progress")
    wait_for_file(checkpoints, f"step_*{newest + 256:012d}.json", resumed)
    resumed.send_signal(signal.SIGHUP)
    out, _ = tiny.assert_interrupted(resumed, signal.SIGHUP, run_dir)
    assert f"resumed from the checkpoint at step {newest}" in out


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
def template(tmp_path_factory: pytest.TempPathFactory, tiny) -> Path:
    """A real interrupted run: checkpoints at 256 and 512, best/, final files, metrics, TensorBoard events. Its
    budget, 640, leaves one rollout to train for each resume from the newest checkpoint; only three reward terms
    are not 0 (alive, posture, fall), so each `dinosim plot` draws 5 panels instead of 10 (drawing was most of the
    test's time)."""
    root = tmp_path_factory.mktemp("template")
    few_terms = ["env.drift_penalty_weight=0", "env.energy_penalty_weight=0", "env.nosedive_weight=0",
                 "env.smoothness_weight=0", "env.spin_penalty_weight=0"]
    code, _ = tiny.run(root / "run", [1], few_terms, 640)
    assert code == 0
    run_dir = root / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["status"], summary["stages"]["1"]["status"] = "interrupted", "running"  # killed before the end
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


PLOT = ["plot", "{run}", "--out", "{run}/curves.png", "--dpi", "30"]  # reading is tested, not pixels: ~30 % faster


def readers_of(relative: str) -> list[list[str]]:
    """The commands that read this file (argument lists after `dinosim`, {run} = the run folder)."""
    name = Path(relative).name
    if relative.startswith("stage1/checkpoints/") or name in ("evaluations.npz", ".lock"):
        return [["resume", "{run}", "--no-progress"]]
    if relative.startswith("stage1/best/") or name in ("model.zip", "vecnormalize.pkl"):
        return [["evaluate", "{run}", "--episodes", "1"]]
    if name in ("metrics.jsonl", "config.toml") or "events" in name:
        return [["summary", "{run}"], PLOT]
    return [["summary", "{run}"], PLOT,
            ["evaluate", "{run}", "--episodes", "1"], ["resume", "{run}", "--no-progress"]]  # run/summary.json


def test_damaged_run_files_give_one_line_errors_or_a_clean_fallback(template: Path, tmp_path: Path,
                                                                     dinosim_main) -> None:
    """Each reader runs in this process (torch is imported once for all cases)."""
    rng = random.Random(13)
    files = sorted(str(p.relative_to(template)) for p in template.rglob("*") if p.is_file())
    assert {"run.json", "summary.json", "metrics.jsonl", "stage1/best/best.json",
            "stage1/checkpoints/step_000000000512_model.zip"} <= set(files)
    outcomes: dict[str, int] = {}
    output: dict[str, tuple[str, str]] = {}
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
                code, out, err = dinosim_main(*argv)
                label = f"{relative} {kind}: dinosim {' '.join(args)}"
                assert "Traceback" not in err, f"{label}\n{err[-3000:]}"
                errors = [line for line in err.splitlines() if line.startswith("error:")]
                if code != 0:
                    assert code == 2 and len(errors) == 1, f"{label} -> exit {code}\n{err[-3000:]}"
                    assert err.strip().splitlines()[-1] == errors[0], f"{label}\n{err[-3000:]}"
                outcomes[f"{label}"], output[label] = code, (out, err)
    assert len(outcomes) > 60
    # some damage must be caught (not everything "works"): the digests name damaged policy files, which
    # `evaluate` (--model auto) skips, saying so, for the final model
    flipped = "stage1/best/model.zip bit-flipped: dinosim evaluate {run} --episodes 1"
    out, err = output[flipped]
    assert outcomes[flipped] == 0 and "warning: stage 1: skipping the damaged best model: " in err, err[-3000:]
    assert "best/model.zip: damaged" in err and "stage1/model.zip (deterministic)" in out, out[-3000:]
    assert any(code == 2 for key, code in outcomes.items() if key.startswith("run.json truncated"))
    # and a damaged newest checkpoint falls back to the previous one: resume succeeds
    assert outcomes["stage1/checkpoints/step_000000000512_model.zip truncated: dinosim resume {run} --no-progress"] == 0


def test_resume_says_which_checkpoint_it_used(template: Path, tmp_path: Path, dinosim_main) -> None:
    case = tmp_path / "run"
    shutil.copytree(template, case)
    newest = case / "stage1" / "checkpoints" / "step_000000000512_vecnormalize.pkl"
    newest.write_bytes(newest.read_bytes()[:50])
    code, out, err = dinosim_main("resume", str(case), "--no-progress")
    assert code == 0, err[-3000:]
    assert f"skipping the damaged checkpoint at step 512: {newest}: damaged" in err
    assert "stage 1: resumed from the checkpoint at step 256" in out
    assert json.loads((case / "summary.json").read_text())["status"] == "finished"


def test_no_secret_in_output_or_run_files(tmp_path: Path, tiny, dinosim_popen) -> None:
    """A W&B key in the environment is never written: not to the output, the run folder, nor W&B's offline files
    (the W&B config holds the flattened run config, not the environment)."""
    key = "0123456789abcdef" * 2 + "deadbeef"
    run_dir = tmp_path / "run"
    proc = dinosim_popen("train", "--species", "velociraptor", "--stage", "1", "--timesteps", "256", "--n-envs",
                         str(tiny.n_envs), "--run-dir", str(run_dir), "--no-progress", "--wandb", "--override",
                         *tiny.overrides,
                         env={"WANDB_API_KEY": key, "WANDB_MODE": "offline", "WANDB_BASE_URL": "http://127.0.0.1:9"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert key not in out + err
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any("wandb" in str(p) for p in files)  # W&B's offline run is inside the run folder
    assert not [p for p in files if key.encode() in p.read_bytes()]
