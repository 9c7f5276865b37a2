"""W&B tracking: flattened config, mode choice, logging at the global step, offline fallback without hanging."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dinosim.config.flatten import flatten_config
from dinosim.config.resolve import resolve_run
from dinosim.tracking.wandb_run import (
    STAGE_KEY,
    STEP_KEY,
    WandbTracker,
    choose_mode,
    has_api_key,
    server_reachable,
    wandb_enabled_from_env,
)

UNREACHABLE = {"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "f" * 40}


def test_flatten_config_uses_override_spelling():
    rc = resolve_run("velociraptor", "ppo", (1, 2), ["stage2.ppo.learning_rate=1e-05", "env.alive_bonus=1.5",
                                                   "ppo.policy_kwargs.net_arch=[64, 64]"], seed=3)
    before = copy.deepcopy(rc.stage_configs)
    flat = flatten_config(rc)
    assert rc.stage_configs == before and flatten_config(rc) == flat  # pure
    assert flat["stage2.ppo.learning_rate"] == 1e-05 and flat["stage1.ppo.learning_rate"] == 3e-4
    assert flat["ppo.learning_rate"] == 3e-4  # unscoped = first stage of the run
    assert flat["env.alive_bonus"] == flat["stage2.env.alive_bonus"] == 1.5
    assert flat["ppo.policy_kwargs.net_arch"] == [64, 64] and flat["stage2.ppo.policy_kwargs.net_arch"] == [64, 64]
    assert (flat["species"], flat["algorithm"], flat["seed"], flat["stages"]) == ("velociraptor", "ppo", 3, [1, 2])
    assert "curriculum.timesteps" in flat and "stage2.curriculum.ramp_timesteps" in flat
    assert not any(isinstance(v, dict) for v in flat.values())


def test_enabled_from_env():
    assert wandb_enabled_from_env({"WANDB_SWEEP_ID": "abc"})
    assert wandb_enabled_from_env({"WANDB_RUN_ID": "r", "WANDB_SWEEP_PARAM_PATH": "p"})
    assert not wandb_enabled_from_env({"WANDB_RUN_ID": "r"})
    assert not wandb_enabled_from_env({})


def test_mode_choice(tmp_path):
    netrc = tmp_path / "netrc"
    assert choose_mode({"WANDB_MODE": "disabled"}) == "disabled"
    assert choose_mode({"WANDB_MODE": "offline", **UNREACHABLE}) == "offline"
    assert not has_api_key({"NETRC": str(netrc)})
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    assert has_api_key({"NETRC": str(netrc)})
    assert choose_mode({"NETRC": str(tmp_path / "none")}) == "offline"  # no key: never a login prompt
    t0 = time.monotonic()
    assert not server_reachable(UNREACHABLE)
    assert choose_mode(UNREACHABLE) == "offline"
    assert time.monotonic() - t0 < 10


class FakeRun:
    def __init__(self):
        self.rows, self.summary, self.metrics = [], {}, []

    def log(self, row):
        self.rows.append(dict(row))

    def define_metric(self, name, step_metric=None):
        self.metrics.append((name, step_metric))


def test_kv_writer_eval_and_gate_rows(tmp_path):
    run = FakeRun()
    tracker = WandbTracker(run, tmp_path, "offline")
    tracker._define_metrics()
    assert (STEP_KEY, None) in run.metrics and ("*", STEP_KEY) in run.metrics
    tracker.set_stage(2, step_offset=1000)
    writer = tracker.kv_writer()
    import numpy as np

    writer.write({"train/loss": np.float32(0.5), "reward/alive": 2, "time/fps": 30, "text": "x", "skip": 1.0},
                 {"train/loss": None, "reward/alive": None, "time/fps": None, "text": None, "skip": ("wandb",)}, 64)
    assert run.rows[-1] == {"train/loss": 0.5, "reward/alive": 2, "time/fps": 30, STEP_KEY: 1064, STAGE_KEY: 2}
    tracker.log_eval({"global_step": 2000, "stage": 2, "eval/mean_reward": 5.0, "eval/success_rate": None})
    tracker.log_eval({"global_step": 3000, "stage": 2, "eval/mean_reward": 4.0, "eval/success_rate": 0.5})
    assert run.rows[-1] == {"eval/mean_reward": 4.0, "eval/success_rate": 0.5, STAGE_KEY: 2, STEP_KEY: 3000}
    assert run.summary["best/eval/mean_reward"] == 5.0 and run.summary["best/eval/mean_reward_step"] == 2000
    assert run.summary["final/eval/mean_reward"] == 4.0 and run.summary["final/eval/success_rate"] == 0.5
    # an evaluation that stopped early (its mean is that of the episodes it played) is final, never best
    tracker.log_eval({"global_step": 3500, "stage": 2, "eval/mean_reward": 9.0, "eval/stopped/length": 1})
    assert run.summary["best/eval/mean_reward"] == 5.0 and run.summary["final/eval/mean_reward"] == 9.0
    tracker.log_gate(2, True, 3000, timesteps_used=2000)
    assert run.summary["gate/stage2/passed"] is True and run.summary["gate/stage2/global_step"] == 3000
    assert run.summary["gate/stage2/timesteps_used"] == 2000


TRACKER_SCRIPT = """
import sys
from pathlib import Path
from PIL import Image
from dinosim.config.resolve import resolve_run
from dinosim.tracking.wandb_run import WandbTracker, log_video
from dinosim.training.request import WandbOptions
run_dir = Path(sys.argv[1])
frames = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(4)]
frames[0].save(run_dir.parent / "v.gif", save_all=True, append_images=frames[1:], duration=50)
rc = resolve_run("velociraptor", "ppo", (1,))
ids = []
for _ in range(2):  # the second start resumes the stored run id
    t = WandbTracker.start(WandbOptions(enabled=True, tags=("t1",)), rc, run_dir)
    t.set_stage(1, 0)
    t.kv_writer().write({"train/loss": 0.1}, {"train/loss": None}, 128)
    t.log_eval({"global_step": 256, "stage": 1, "eval/mean_reward": 1.0})
    t.log_video(run_dir.parent / "v.gif", 1, 256)
    ids.append(t.run.id)
    print("MODE", t.mode)
    t.finish()
assert log_video(run_dir.parent / "v.gif", 1, run_dir=run_dir)
print("IDS", ids[0], ids[1])
"""


def _clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(extra)
    return env


def test_offline_fallback_does_not_hang(tmp_path):
    run_dir = tmp_path / "run"
    env = _clean_env({**UNREACHABLE, "HOME": str(tmp_path)})
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", TRACKER_SCRIPT, str(run_dir)], env=env, capture_output=True, text=True,
                       timeout=150, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    assert time.monotonic() - t0 < 150
    assert r.stdout.count("MODE offline") == 2
    first, second = r.stdout.split("IDS ")[1].split()
    assert first == second
    stored = json.loads((run_dir / "wandb.json").read_text())
    assert stored["id"] == first and stored["mode"] == "offline" and len(stored["sync_dirs"]) == 3
    assert all(Path(d).is_dir() and list(Path(d).glob("*.wandb")) for d in stored["sync_dirs"])
    assert "wandb sync " in r.stderr


def test_cli_train_with_wandb_unreachable(tmp_path):
    env = _clean_env({**UNREACHABLE, "HOME": str(tmp_path), "DINOSIM_RUNS_DIR": str(tmp_path / "runs")})
    args = ["train", "--species", "velociraptor", "--stage", "1", "--n-envs", "1", "--no-progress", "--wandb",
            "--wandb-tags", "ci,tiny", "--run-dir", str(tmp_path / "run"), "--override", "curriculum.timesteps=256",
            "ppo.n_steps=64", "ppo.batch_size=64", "ppo.n_epochs=1", "curriculum.eval_freq=128",
            "curriculum.eval_episodes=1", "env.max_episode_steps=10", "ppo.policy_kwargs.net_arch=[16]",
            "curriculum.min_avg_episode_length=0"]  # 10-step episodes: the stage's video films ~6 frames, not ~20
    r = subprocess.run([sys.executable, "-m", "dinosim", *args], env=env, capture_output=True, text=True, timeout=240,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    stored = json.loads((tmp_path / "run" / "wandb.json").read_text())
    assert stored["mode"] == "offline" and stored["sync_dirs"]
    assert f"wandb sync {stored['sync_dirs'][0]}" in r.stderr
    # the end of the stage rendered the best policy and attached it to the W&B run
    assert list((tmp_path / "run" / "stage1").glob("best_policy.*"))
    assert list((tmp_path / "run").glob("wandb/offline-run-*/files/media/videos/video/stage1_*"))
    # and the diagnosis of the stage as a table
    assert list((tmp_path / "run").glob("wandb/offline-run-*/files/media/table/diagnose/stage1_*.table.json"))


def test_skip_under_wandb_agent_is_marked_and_quick(tmp_path):
    """Under `wandb agent` (its env vars), a --skip-if hit ends at once with exit 0 and a W&B run tagged skipped."""
    params = tmp_path / "config-agentrun1.yaml"
    params.write_text("ppo.learning_rate:\n  value: 0.001\n")
    env = _clean_env({**UNREACHABLE, "HOME": str(tmp_path), "WANDB_SWEEP_ID": "sweep1", "WANDB_RUN_ID": "agentrun1",
                      "WANDB_SWEEP_PARAM_PATH": str(params), "TMPDIR": str(tmp_path),
                      "DINOSIM_RUNS_DIR": str(tmp_path / "runs")})
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "dinosim", "train", "--stage", "1", "--skip-if",
                        "ppo.learning_rate > 5e-4 and ppo.n_epochs > 8", "--ppo.learning_rate=0.001"],
                       env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 60
    assert "skipped: skip-if:" in r.stdout
    offline = list(tmp_path.glob("dinosim-skip-*/wandb/offline-run-*-agentrun1"))
    assert offline and list(offline[0].glob("*.wandb"))
    assert not (tmp_path / "runs").exists()


def test_forced_online_with_dead_server_falls_back_offline(tmp_path):
    """WANDB_MODE=online and no server: wandb.init gives up after its init_timeout and the run logs offline."""
    script = TRACKER_SCRIPT.split("ids = []")[0] + (
        "t = WandbTracker.start(WandbOptions(enabled=True), rc, run_dir)\n"
        "t.log_eval({'global_step': 1, 'stage': 1, 'eval/mean_reward': 1.0})\n"
        "print('MODE', t.mode)\nt.finish()\n")
    env = _clean_env({**UNREACHABLE, "HOME": str(tmp_path), "WANDB_MODE": "online", "DINOSIM_WANDB_INIT_TIMEOUT": "5"})
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], env=env, capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "MODE offline" in r.stdout and "online init failed" in r.stderr
    assert time.monotonic() - t0 < 90


def test_log_diagnosis_summary_and_table(tmp_path, ev, make_run):
    run_dir = make_run(tmp_path, "r", {1: [ev(25000 * i, 30.0, 30.0, alive=30) for i in (1, 2, 3)]}, timesteps=1000)
    run = FakeRun()
    tracker = WandbTracker(run, tmp_path, "offline")
    ids = tracker.log_diagnosis(run_dir, 1, global_step=75000)
    assert "balance.falls_early" in ids
    assert run.summary["diagnose/stage1/symptoms"] == ids and run.summary["diagnose/stage1/count"] == len(ids)
    assert run.summary["diagnose/stage1/top"] == ids[0]
    assert 0.5 <= run.summary["diagnose/stage1/balance.falls_early"] <= 1.0
    table = run.rows[-1]["diagnose/stage1"]
    assert run.rows[-1][STEP_KEY] == 75000 and list(table.columns)[:2] == ["stage", "id"]
    assert [row[1] for row in table.data] == ids
