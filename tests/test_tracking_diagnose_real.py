"""`dinosim diagnose` on REAL tiny training runs configured to show symptoms (velociraptor and T-Rex, 2 envs,
a few thousand steps each; the TensorBoard series are read by the real EventAccumulator reader)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SMALL = ["ppo.batch_size=64", "ppo.n_epochs=1", "ppo.policy_kwargs.net_arch=[16,16]", "curriculum.eval_episodes=2",
         "curriculum.save_freq=100000"]


def train(run_main, tmp: Path, name: str, species: str, stage: int, timesteps: int, *overrides: str) -> Path:
    """``dinosim train`` in this process (``run_main``: the ``dinosim_main_quiet`` fixture): torch, SB3 and MuJoCo
    are imported once for all runs (a subprocess a run paid ~5 s of imports each, most of each run's time)."""
    args = ["train", "--species", species, "--stage", str(stage), "--n-envs", "2", "--timesteps", str(timesteps),
            "--no-progress", "--run-dir", str(tmp / name), "--override", *SMALL, *overrides]
    code, _, err = run_main(*args, DINOSIM_RUNS_DIR=str(tmp))
    assert code == 0, err[-3000:]
    return tmp / name


def diagnose_json(*runs: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "dinosim", "diagnose", "--json", *map(str, runs)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def symptoms(report: dict, run: int = 0) -> dict[str, dict]:
    return {s["id"]: s for st in report["runs"][run]["stages"] for s in st["symptoms"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dinosim_main_quiet) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("diagnose-real")
    run = functools.partial(train, dinosim_main_quiet, tmp)
    return {
        # one rollout of 512 x 2 envs (a budget below it is refused by the config checks now): the policy trains
        # once and falls within ~40 of 500 steps
        "budget": run("budget", "velociraptor", 1, 1024, "ppo.n_steps=512", "curriculum.eval_freq=256"),
        # a bite bonus of 1 against the per-step pay of alive + posture + proximity over a 300-step episode
        "bonus": run("bonus", "trex", 3, 2048, "ppo.n_steps=128", "curriculum.eval_freq=400",
                     "env.bite_bonus=1.0", "env.max_episode_steps=300", "curriculum.warmup_timesteps=0",
                     "curriculum.ramp_timesteps=0", "curriculum.critic_warmup_timesteps=0"),
        # walking stage with 30-step episodes: the untrained policy survives them standing in place
        "still": run("still", "velociraptor", 2, 2048, "ppo.n_steps=128", "curriculum.eval_freq=512",
                     "env.max_episode_steps=30", "curriculum.min_avg_episode_length=25"),
    }


def test_falls_early_after_one_update(runs):
    found = symptoms(diagnose_json(runs["budget"]))
    assert "algorithm.budget_below_rollout" not in found  # the budget is exactly one rollout
    falls = found["balance.falls_early"]
    assert falls["numbers"]["fraction"] < 0.2 and falls["numbers"]["fell_fraction"] == 1.0  # signal/fell from TB


def test_bonus_smaller_than_discounted_per_step_rewards(runs):
    found = symptoms(diagnose_json(runs["bonus"]))
    small = found["behaviour.bonus_too_small"]
    assert small["numbers"]["bonus"] == 1.0 and small["numbers"]["standby_value"] > 1.0
    assert small["overrides"][0].startswith("stage3.env.bite_bonus=")
    assert "behaviour.never_triggers" in found


def test_standing_still_in_the_walking_stage(runs):
    found = symptoms(diagnose_json(runs["still"]))
    still = found["locomotion.standing_still"]
    assert abs(still["numbers"]["forward_velocity"]) < 0.2  # 10 % of forward_vel_max 2 m/s
    assert "stage2.env.forward_vel_weight=3.0" in still["overrides"]  # committed 1.5 doubled
    assert "locomotion.sideways" not in found  # sway within 1.2 s episodes is no sideways walk


def test_signals_are_logged_per_episode(runs):
    from dinosim.tracking.run_logs import read_scalars

    tags = read_scalars(runs["still"] / "stage2")
    for name in ("forward_velocity", "lateral_velocity", "yaw_rate", "drift", "gait_asymmetry", "fell"):
        series = tags[f"signal/{name}"]
        assert len(series) >= 2 and all(v == v for v in series.values)
    assert all(0.0 <= v <= 1.0 for v in tags["signal/fell"].values)
    assert max(tags["signal/drift"].values) < 1.5  # 30 steps (1.2 s) of standing
