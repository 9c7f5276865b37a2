"""Background evaluation: the evaluation process gives the inline numbers, and a killed one costs nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dinosim.config.settings import CurriculumSettings
from dinosim.runfolder import METRICS_FILE
from dinosim.training.evaluation import EvalPlan, model_policy, obs_normalizer, play_plan

ENV = {"task": "strike", "max_episode_steps": 40, "strike_bonus": 10.0}
# stage 1 for 2048 steps, evaluated every 256: the gate is unreachable, so both modes evaluate the same snapshots
RUN = ["train", "--species", "velociraptor", "--stage", "1", "--timesteps", "2048", "--n-envs", "2", "--no-progress"]


def _snapshot_model():
    """A small untrained PPO policy and a VecNormalize whose statistics have seen a few steps."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from dinosim.envs import make_env

    venv = VecNormalize(DummyVecEnv([lambda: make_env("velociraptor", dict(ENV))]), gamma=0.99)
    venv.reset()
    for _ in range(20):
        venv.step([venv.action_space.sample()])
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, policy_kwargs={"net_arch": [16, 16]}, seed=3,
                device="cpu")
    return model, venv


def test_a_snapshot_played_from_its_bytes_gives_the_inline_numbers() -> None:
    import torch

    from dinosim.envs import make_env
    from dinosim.run_integrity import model_bytes, vecnormalize_bytes
    from dinosim.training.eval_worker import SnapshotJob, play_snapshot

    model, venv = _snapshot_model()
    cur = CurriculumSettings(eval_episodes=3, gate_episodes=2, min_avg_reward=-1e9)
    plan = EvalPlan(step=4096, mark=4096, run_seed=5, first_seed=7, gate_if_pass=True, curriculum=cur)
    envs = [make_env("velociraptor", dict(ENV)) for _ in range(2)]
    inline = play_plan(plan, model_policy(model), envs, obs_normalizer(venv))
    job = SnapshotJob(plan, "ppo", model_bytes(model), vecnormalize_bytes(venv))
    rng_before = torch.get_rng_state()
    replayed = play_snapshot(job, [make_env("velociraptor", dict(ENV)) for _ in range(2)])  # same batch: same BLAS
    assert inline.gate is not None and replayed.gate is not None  # the screening passed: the gate was played
    for a, b in ((inline.screen, replayed.screen), (inline.gate, replayed.gate)):
        assert (a.returns, a.lengths, a.components, a.successes) == (b.returns, b.lengths, b.components, b.successes)
    assert torch.equal(torch.get_rng_state(), rng_before)  # loading a model in the training process reseeds nothing
    assert inline.next_seed == replayed.next_seed == 7 + 3 + 2
    assert list(plan.screen_seeds) == list(range(plan.screen_seeds.start, plan.gate_seeds.start))


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def _worker_pid(parent: int) -> int | None:
    """The pid of ``parent``'s spawned multiprocessing child (not its resource tracker), if running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            return int(entry.name)
    return None


def _popen(root: Path, overrides: list[str], run_dir: Path, background: bool) -> subprocess.Popen:
    """The tiny tracking runs' stage-1 overrides with an unreachable gate, in background or inline mode."""
    overrides = [*(o for o in overrides if not o.startswith("2.")), "1.curriculum.min_avg_reward=1000.0"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "dinosim", *RUN, "--run-dir", str(run_dir), "--override", *overrides,
           f"curriculum.background_eval={str(background).lower()}"]
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the evaluation process through /proc")
def test_killing_the_evaluation_process_changes_no_record_and_training_ends_cleanly(
        tmp_path: Path, checkout_root: Path, tiny_overrides: list[str]) -> None:
    background = _popen(checkout_root, tiny_overrides, tmp_path / "background", True)
    inline = _popen(checkout_root, tiny_overrides, tmp_path / "inline", False)
    metrics = tmp_path / "background" / METRICS_FILE
    killed = None
    deadline = time.time() + 300
    while killed is None and background.poll() is None and time.time() < deadline:
        pid = _worker_pid(background.pid)
        if pid is not None and metrics.exists() and metrics.read_text().strip():
            os.kill(pid, signal.SIGKILL)  # after it answered once: the next evaluation is in flight or due
            killed = pid
        time.sleep(0.02)
    out, err = background.communicate(timeout=300)
    assert killed is not None, f"the run ended before its evaluation process could be killed:\n{err[-2000:]}"
    assert background.returncode == 0, err[-3000:]
    died = [line for line in err.splitlines() if "background evaluation process died" in line]
    assert len(died) == 1 and died[0].startswith("warning: stage 1:") and "evaluating inline" in died[0], err
    _, inline_err = inline.communicate(timeout=300)
    assert inline.returncode == 0, inline_err[-3000:]
    got, want = _records(tmp_path / "background"), _records(tmp_path / "inline")
    assert [r["global_step"] for r in got] == list(range(256, 2049, 256))
    assert got == want  # same snapshots, same seeds: the same numbers, whichever process played them
    summary = json.loads((tmp_path / "background" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["stages"]["1"]["evaluations"] == 8
