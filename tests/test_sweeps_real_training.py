"""Real offline sweeps: every trial is a real `dinosim train` run (tiny budgets), one test per method.

Kept under ~2 minutes on 2 cores: 384-step stage-1 runs with one env, 3 evaluations each.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import tomllib
import yaml

from dinosim.sweeps.engine import EngineOptions, run_sweep
from dinosim.sweeps.yaml_spec import load_sweep

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
TINY = {"curriculum.timesteps": 384, "ppo.n_steps": 64, "ppo.n_epochs": 1, "curriculum.eval_freq": 128,
        "curriculum.eval_episodes": 1, "curriculum.min_avg_reward": 1.0e9, "curriculum.save_freq": 100000,
        "env.max_episode_steps": 50, "ppo.policy_kwargs.net_arch": [16], "curriculum.min_avg_episode_length": 0}


def write(tmp_path: Path, name: str, method: str, params: dict, **extra) -> Path:
    parameters = {k: {"value": v} for k, v in TINY.items()}
    parameters.update(params)
    cfg = {"name": name, "method": method, "metric": {"name": "eval/mean_reward", "goal": "maximize"},
           "program": str(ROOT / "scripts" / "train_sb3.py"),
           "command": ["${env}", "${interpreter}", "${program}", "train", "--species", "velociraptor", "--stage", "1",
                       "--n-envs", "1", "--no-progress", "--skip-if", "ppo.learning_rate > 5e-4 and ppo.gamma > 0",
                       "--override", "${args_no_hyphens}"],
           "parameters": parameters, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def study(sweep_dir: Path, name: str):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def last_eval(trial) -> float:
    lines = (Path(trial.user_attrs["trial_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if "eval/mean_reward" in line][-1]["eval/mean_reward"]


def test_grid_sweep_through_cli_with_failure_and_skip(tmp_path):
    path = write(tmp_path, "real_grid", "grid", {"ppo.learning_rate": {"values": [0.0001, 0.001]},
                                                 "ppo.batch_size": {"values": [64, 48]}}, run_cap=10)
    r = subprocess.run([sys.executable, "-m", "dinosim", "sweep", "run", str(path), "--workers", "2",
                        "--sweep-dir", str(tmp_path / "sd")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    trials = {(t.user_attrs["params"]["ppo.learning_rate"], t.user_attrs["params"]["ppo.batch_size"]): t
              for t in study(tmp_path / "sd", "real_grid").get_trials()}
    assert len(trials) == 4
    ok = trials[(0.0001, 64)]
    assert ok.state.name == "COMPLETE" and ok.value == last_eval(ok) and len(ok.intermediate_values) == 3
    # n_steps * n_envs = 64 is not a multiple of 48: the CLI exits 2, the trial fails, the sweep goes on
    assert trials[(0.0001, 48)].state.name == "FAIL" and "exit code 2" in trials[(0.0001, 48)].user_attrs["fail_reason"]
    skipped = trials[(0.001, 64)]
    assert skipped.state.name == "PRUNED"
    assert skipped.user_attrs["skipped"] == "skip-if: ppo.learning_rate > 5e-4 and ppo.gamma > 0"
    # ppo.gamma is no sweep parameter: the program itself decided, recorded the skip and trained nothing
    assert not list((Path(skipped.user_attrs["trial_dir"]) / "runs").glob("*/*"))
    assert "best eval/mean_reward" in r.stdout


def test_random_sweep_with_hyperband(tmp_path):
    path = write(tmp_path, "real_random", "random",
                 {"ppo.learning_rate": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.0004},
                  "ppo.batch_size": {"value": 64}},
                 run_cap=4, early_terminate={"type": "hyperband", "min_iter": 1, "max_iter": 3, "eta": 2})
    result = run_sweep(load_sweep(path), EngineOptions(workers=2, sweep_dir=tmp_path / "sd", sampler_seed=0))
    trials = study(tmp_path / "sd", "real_random").get_trials()
    assert len(trials) == 4 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert complete and all(t.value == last_eval(t) for t in complete)
    assert all(1 <= len(t.intermediate_values) < 3 for t in trials if t.state.name == "PRUNED")
    assert result.best_value == max(t.value for t in complete)
    # the trial's run folder holds the config the sweep asked for
    t = complete[0]
    run_dir = next((Path(t.user_attrs["trial_dir"]) / "runs").glob("velociraptor/*"))
    cfg = tomllib.loads((run_dir / "stage1" / "config.toml").read_text())
    assert cfg["ppo"]["learning_rate"] == t.user_attrs["params"]["ppo.learning_rate"]
    assert cfg["ppo"]["policy_kwargs"]["net_arch"] == [16]


def test_bayes_sweep_and_export_best(tmp_path):
    path = write(tmp_path, "real_bayes", "bayes",
                 {"ppo.ent_coef": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.01},
                  "env.alive_bonus": {"distribution": "uniform", "min": 0.5, "max": 3.0},
                  "ppo.learning_rate": {"value": 0.0003}, "ppo.batch_size": {"value": 64}}, run_cap=2)
    run_sweep(load_sweep(path), EngineOptions(workers=2, sweep_dir=tmp_path / "sd", sampler_seed=0))
    trials = study(tmp_path / "sd", "real_bayes").get_trials()  # two TPE start-up trials, one per worker
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    best = max(trials, key=lambda t: t.value)
    r = subprocess.run([sys.executable, "-m", "dinosim", "sweep", "export-best", str(path), "--sweep-dir",
                        str(tmp_path / "sd"), "--out", str(tmp_path / "best.toml")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    data = tomllib.loads((tmp_path / "best.toml").read_text())
    assert data["ppo"]["ent_coef"] == pytest.approx(best.user_attrs["params"]["ppo.ent_coef"])
    assert data["env"]["alive_bonus"] == pytest.approx(best.user_attrs["params"]["env.alive_bonus"])
    assert data["curriculum"]["timesteps"] == 4_000_000 and data["ppo"]["learning_rate"] == 3e-4  # constants stay
    assert f"sweep real_bayes #{best.number}" in (tmp_path / "best.toml").read_text()


def test_seeds_run_the_cli_with_each_seed(tmp_path):
    path = write(tmp_path, "real_seeds", "random", {"ppo.learning_rate": {"values": [0.0001]},
                                                    "ppo.batch_size": {"value": 64}}, run_cap=1)
    run_sweep(load_sweep(path), EngineOptions(workers=1, seeds=2, sweep_dir=tmp_path / "sd"))
    (t,) = study(tmp_path / "sd", "real_seeds").get_trials()
    assert t.state.name == "COMPLETE" and len(t.user_attrs["seed_values"]) == 2
    assert t.value == pytest.approx(sum(t.user_attrs["seed_values"]) / 2)
    seeds = sorted(json.loads((d / "run.json").read_text())["config"]["run"]["seed"]
                   for d in (Path(t.user_attrs["trial_dir"]) / "runs").glob("velociraptor/*"))
    assert seeds == [0, 1]


def test_a_sweep_minimises_the_steps_to_a_gate(tmp_path):
    """metric stage/steps_to_gate: a stage whose gate passes at its first evaluation scores the steps to that
    snapshot; one whose gate cannot pass scores every step it used, so it ranks last."""
    path = write(tmp_path, "real_steps", "grid", {"curriculum.min_avg_reward": {"values": [-1.0e9, 1.0e9]},
                                                  "curriculum.gate_episodes": {"value": 4},
                                                  "ppo.batch_size": {"value": 64}}, run_cap=2)
    raw = yaml.safe_load(path.read_text())
    raw["metric"] = {"name": "stage/steps_to_gate", "goal": "minimize"}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_sweep(load_sweep(path), EngineOptions(workers=2, sweep_dir=tmp_path / "sd"))
    sweep = study(tmp_path / "sd", "real_steps")
    values = {t.user_attrs["params"]["curriculum.min_avg_reward"]: t.value for t in sweep.get_trials()}
    assert values == {-1.0e9: 128, 1.0e9: 384}
    assert sweep.best_trial.user_attrs["params"]["curriculum.min_avg_reward"] == -1.0e9
