"""Installing and importing dinosim the way Gymnasium, rl-zoo3 and pip users do (issue 14, points 1-3)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dinosim.species import SPECIES

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("mujoco", "torch", "stable_baselines3", "wandb", "dinosim.envs")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINOSIM_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"), **extra)
    return env


def test_import_dinosim_registers_every_id_lazily():
    code = ("import sys, dinosim\nfrom gymnasium.envs.registration import registry\n"
            f"ids = {sorted(s.env_id for s in SPECIES.values())!r}\n"
            "print([registry[i].entry_point for i in ids])\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
            "import gymnasium as gym\nenv = gym.make('dinosim/TRex-v0')\nprint(type(env.unwrapped).__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    entry_points, heavy, env_class = proc.stdout.splitlines()
    assert entry_points == str(sorted(f"{s.env_module}:{s.env_class}" for s in SPECIES.values()))
    assert heavy == "[]"
    assert env_class == "TRexEnv"


def test_tomllib_is_imported_only_by_the_config_loader():
    """Python 3.10 has no tomllib: every other module parses TOML through dinosim.config.loader."""
    pattern = re.compile(r"^\s*(import\s+(tomllib|tomli)\b|from\s+(tomllib|tomli)\s+import)", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "dinosim").rglob("*.py")
                 if pattern.search(p.read_text(encoding="utf-8")) and p != ROOT / "dinosim" / "config" / "loader.py"]
    assert offenders == []
    assert pattern.search((ROOT / "dinosim" / "config" / "loader.py").read_text())  # the grep itself matches


@pytest.mark.slow
def test_rl_zoo3_trains_with_gym_packages_dinosim(tmp_path, missing_tool):
    """Needs rl_zoo3 (the bench extra, which .ci/run installs). Two rollouts of 128 steps: the second one's log shows
    the PPO update after the first (T-Rex episodes of a random policy last ~30 steps: the monitor records several)."""
    if importlib.util.find_spec("rl_zoo3") is None:
        missing_tool("rl_zoo3 is not installed: pip install -e '.[bench]'")
    cmd = [sys.executable, "-m", "rl_zoo3.train", "--gym-packages", "dinosim", "--env", "dinosim/TRex-v0",
           "--algo", "ppo", "-n", "256", "-f", str(tmp_path / "logs"), "--eval-freq", "-1", "--device", "cpu",
           "--seed", "0", "--hyperparams", "n_envs:1", "policy:'MlpPolicy'", "n_timesteps:256", "n_steps:128",
           "batch_size:64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"n_updates\s*\|\s*10\s*\|", proc.stdout), proc.stdout[-3000:]  # n_epochs (10) updates ran
    models = list((tmp_path / "logs" / "ppo").glob("dinosim-TRex-v0_*/dinosim-TRex-v0.zip"))
    assert len(models) == 1
    monitor = next(models[0].parent.glob("*.monitor.csv")).read_text().splitlines()
    assert len(monitor) > 2  # header lines + at least one finished episode of the real env


def _copy_sources(target: Path) -> Path:
    """The files a build reads (pyproject, setup.py, README, the package, configs/), so building leaves no build/
    or egg-info in the checkout."""
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "dinosim", target / "dinosim", ignore=ignore)
    shutil.copytree(ROOT / "configs", target / "configs", ignore=ignore)
    return target


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_has_configs_and_trains(tmp_path):
    """A wheel built from the repo, installed into a fresh venv (reusing the installed torch/SB3 through
    --system-site-packages, dinosim itself from the wheel), dry-runs, exports configs and trains from /tmp."""
    source = _copy_sources(tmp_path / "src")
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in _clean_env(DINOSIM_RUNS_DIR=str(work / "runs")).items() if k != "PYTHONPATH"}

    def run(*cmd: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, cwd=work, timeout=900, env=env)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        return proc

    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
        str(source))
    wheel = next(dist.glob("dinosim-*.whl"))
    run(sys.executable, "-m", "venv", "--system-site-packages", str(venv))
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "dinosim")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel))
    where = run(python, "-c", "import dinosim, dinosim.species as s; print(dinosim.__file__); "
                              "print(s.BUILTIN_CONFIGS_DIR)").stdout.split()
    assert Path(where[0]).is_relative_to(venv), where  # dinosim comes from the wheel, not the checkout
    assert where[1] == str(Path(where[0]).parent / "configs"), where  # and reads the configs shipped inside it
    dry = run(cli, "curriculum", "--species", "trex", "--dry-run").stdout
    assert "[stage3.curriculum]" in dry and 'species = "trex"' in dry
    run(cli, "config", "export", "--species", "trex", str(work / "mine"))
    for name in SPECIES["trex"].stage_files:
        assert (work / "mine" / "trex" / name).read_text() == (ROOT / "configs" / "trex" / name).read_text()
    out = run(cli, "train", "--species", "trex", "--stage", "1", "--timesteps", "256", "--n-envs", "1", "-q",
              "--run-dir", str(work / "runs" / "t"), "--config-dir", str(work / "mine"), "--override",
              "ppo.n_steps=128", "ppo.batch_size=64", "curriculum.eval_freq=128", "curriculum.eval_episodes=1",
              "env.max_episode_steps=50", "curriculum.min_avg_episode_length=25").stdout
    assert out.startswith(f"run finished: {work / 'runs' / 't'}")
    summary = json.loads((work / "runs" / "t" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["stages"]["1"]["timesteps_used"] >= 256
