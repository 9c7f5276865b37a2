"""`sweep report` (top-k, importance, PNGs) and `sweep export-best` (tomlkit round trip) on a fake-program study."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import tomllib
import yaml

from dinosim.errors import ConfigError
from dinosim.species import CONFIGS_DIR
from dinosim.sweeps.engine import EngineOptions, run_sweep
from dinosim.sweeps.export import apply_to_toml, export_best
from dinosim.sweeps.report import build_report, load_study
from dinosim.sweeps.yaml_spec import load_sweep

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def make_sweep(sweep_program: str) -> Callable[..., Path]:
    """Run a small random sweep of the fake program through the real engine; returns its YAML path."""

    def make_sweep(tmp_path: Path, command_tail: list[str], params: dict, run_cap: int = 8, workers: int = 2) -> Path:
        prog = tmp_path / "fake_train.py"
        prog.write_text(sweep_program)
        cfg = {"name": "fake_velo", "method": "random", "metric": {"name": "eval/mean_reward", "goal": "maximize"},
               "run_cap": run_cap, "program": str(prog),
               "command": ["${env}", "${interpreter}", "${program}", "train", *command_tail, "--override",
                           "${args_no_hyphens}"],
               "parameters": {"ppo.learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
                              "ppo.ent_coef": {"values": [0.0, 0.01]}, **params}}
        path = tmp_path / "fake_velo.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        run_sweep(load_sweep(path), EngineOptions(sweep_dir=tmp_path / "sd", poll_interval=0.05, sampler_seed=1,
                                                  workers=workers))
        return path

    return make_sweep


def test_report_top_k_importance_and_plots(tmp_path, expected_value, make_sweep):
    path = make_sweep(tmp_path, ["--species", "velociraptor", "--stage", "1"],
                      {"env.alive_bonus": {"distribution": "uniform", "min": 0.5, "max": 3.0},
                       "fake.evals": {"value": 1}}, run_cap=24, workers=1)  # sequential: same trials every time
    loaded = load_study(path, sweep_dir=tmp_path / "sd")
    report = build_report(loaded, k=3)
    values = [row["value"] for row in report.top]
    assert len(values) == 3 and values == sorted(values, reverse=True)
    assert report.top[0]["value"] == pytest.approx(expected_value(report.top[0]["params"], 1))
    assert set(report.importance) == {"ppo.learning_rate", "ppo.ent_coef", "env.alive_bonus"}
    assert max(report.importance, key=report.importance.get) == "ppo.learning_rate"
    for name in ("importance.png", "history.png", "parallel.png"):
        png = tmp_path / "sd" / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    # the sweep folder works as SWEEP too, through the CLI
    r = subprocess.run([sys.executable, "-m", "dinosim", "sweep", "report", str(tmp_path / "sd"), "--top", "2",
                        "--no-plots"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "sweep fake_velo" in r.stdout and f"#{report.top[0]['number']}" in r.stdout


def test_export_best_round_trip_keeps_comments(tmp_path, make_sweep):
    path = make_sweep(tmp_path, ["--species", "velociraptor", "--stage", "1"],
                      {"ppo.policy_kwargs.net_arch": {"values": [[128, 64], [256, 128, 64]]},
                       "env.fall_penalty": {"values": [-10.0, -100.0]},
                       "stage1.ppo.n_epochs": {"values": [4, 5]},
                       "curriculum.timesteps": {"value": 1000}, "fake.evals": {"value": 2}})
    target = tmp_path / "stage1_balance.toml"
    shutil.copy(CONFIGS_DIR / "velociraptor" / "stage1_balance.toml", target)
    before = target.read_text()
    loaded = load_study(path, sweep_dir=tmp_path / "sd")
    best = max((t for t in loaded.study.get_trials() if t.value is not None), key=lambda t: t.value)
    changes = export_best(loaded, to=target)
    after = target.read_text()
    data = tomllib.loads(after)
    params = best.user_attrs["params"]
    assert data["ppo"]["learning_rate"] == pytest.approx(params["ppo.learning_rate"])
    assert data["ppo"]["ent_coef"] == params["ppo.ent_coef"]
    assert data["ppo"]["policy_kwargs"]["net_arch"] == params["ppo.policy_kwargs.net_arch"]
    assert data["env"]["fall_penalty"] == params["env.fall_penalty"]
    assert data["ppo"]["n_epochs"] == params["stage1.ppo.n_epochs"] and isinstance(data["ppo"]["n_epochs"], int)
    assert data["curriculum"]["timesteps"] == 4_000_000  # constants are not exported
    note = f"sweep fake_velo #{best.number}: eval/mean_reward="
    changed_keys = {c.key for c in changes}
    for line in after.splitlines():
        key = line.split("=")[0].strip()
        if any(key == c.split(".")[-1] for c in changed_keys) and "=" in line and note in line:
            break
    else:
        pytest.fail("no changed line carries the sweep note")
    # comments and untouched lines survive
    for line in before.splitlines():
        if line.startswith("#") or line.startswith("[") or "vf_coef" in line or "log_std_init" in line:
            assert line in after.splitlines()
    assert "# linear decay: large early steps, fine-tuning late" in after or "learning_rate_end" in after
    # the result is still a valid stage config for the resolver
    out_dir = tmp_path / "configs" / "velociraptor"
    out_dir.mkdir(parents=True)
    for f in (CONFIGS_DIR / "velociraptor").glob("*.toml"):
        shutil.copy(f, out_dir / f.name)
    shutil.copy(target, out_dir / "stage1_balance.toml")
    from dinosim.config.resolve import resolve_run

    rc = resolve_run("velociraptor", "ppo", (1,), config_dir=tmp_path / "configs")
    assert rc.stage_configs[1]["ppo"]["learning_rate"] == pytest.approx(params["ppo.learning_rate"])
    # exporting again changes nothing
    assert export_best(loaded, to=target) == []


def test_export_stage_scoped_keys_go_to_their_stage_file(tmp_path, make_sweep):
    path = make_sweep(tmp_path, ["--species", "velociraptor", "curriculum", "--stages", "1-3"],
                      {"stage2.ppo.learning_rate": {"values": [0.0002, 0.00002]},
                       "stage3.env.strike_bonus": {"values": [50.0, 150.0]}, "fake.evals": {"value": 2}}, run_cap=4)
    loaded = load_study(path, sweep_dir=tmp_path / "sd")
    out = tmp_path / "exported"
    changes = export_best(loaded, out=out)
    files = {c.file.name for c in changes}
    assert {"stage2_locomotion.toml", "stage3_strike.toml"} <= files
    s2 = tomllib.loads((out / "stage2_locomotion.toml").read_text())
    s3 = tomllib.loads((out / "stage3_strike.toml").read_text())
    best = max((t for t in loaded.study.get_trials() if t.value is not None), key=lambda t: t.value)
    assert s2["ppo"]["learning_rate"] == best.user_attrs["params"]["stage2.ppo.learning_rate"]
    assert s3["env"]["strike_bonus"] == best.user_attrs["params"]["stage3.env.strike_bonus"]
    # an unscoped key of a curriculum sweep goes to every stage
    for name in ("stage1_balance.toml", "stage2_locomotion.toml", "stage3_strike.toml"):
        assert tomllib.loads((out / name).read_text())["ppo"]["ent_coef"] == best.user_attrs["params"]["ppo.ent_coef"]
    # the committed files were not touched
    assert "sweep fake_velo" not in (CONFIGS_DIR / "velociraptor" / "stage2_locomotion.toml").read_text()


def test_apply_to_toml_types_and_new_keys():
    text = "[ppo]\nn_epochs = 10  # epochs\ngamma = 0.99\n"
    new, changed = apply_to_toml(text, {"ppo.n_epochs": 5.0, "ppo.gamma": 1, "ppo.target_kl": 0.02}, "sweep s")
    data = tomllib.loads(new)
    assert data["ppo"] == {"n_epochs": 5, "gamma": 1.0, "target_kl": 0.02}
    assert "n_epochs = 5  # epochs | sweep s (was 10)" in new
    assert [c[0] for c in changed] == ["ppo.n_epochs", "ppo.gamma", "ppo.target_kl"]


def test_export_refuses_values_that_make_the_stage_config_invalid(tmp_path, make_sweep):
    # stage 1 decays learning_rate to 1e-4: a winning learning rate below it would make the schedule rise
    path = make_sweep(tmp_path, ["--species", "velociraptor", "--stage", "1"],
                      {"ppo.learning_rate": {"values": [0.00002, 0.00003]}, "fake.evals": {"value": 1}}, run_cap=2)
    target = tmp_path / "stage1_balance.toml"
    shutil.copy(CONFIGS_DIR / "velociraptor" / "stage1_balance.toml", target)
    before = target.read_text()
    with pytest.raises(ConfigError, match="nothing was written: .*the schedule would rise"):
        export_best(load_study(path, sweep_dir=tmp_path / "sd"), to=target)
    assert target.read_text() == before


def test_report_lists_the_most_frequent_symptoms(tmp_path, ev, make_run, balance_evals):
    """Trials' run folders (<trial_dir>/runs/<species>/<stamp>) are diagnosed; each trial counts a symptom once."""
    from types import SimpleNamespace

    from dinosim.sweeps.report import Report, symptom_counts

    falling = [ev(25000 * i, 30.0, 30.0, alive=30) for i in (1, 2, 3)]
    trials = []
    for number, records in enumerate((falling, falling, balance_evals(), falling)):
        trial_dir = tmp_path / f"{number:04d}"
        make_run(trial_dir / "runs", f"run{number}", {1: records})
        trials.append(SimpleNamespace(user_attrs={"trial_dir": str(trial_dir)}))
    trials.append(SimpleNamespace(user_attrs={}))  # a trial that never started: not diagnosed
    counts, diagnosed = symptom_counts(trials)
    assert diagnosed == 4 and counts["balance.falls_early"] == 3
    assert list(counts)[0] == "balance.falls_early"
    text = Report("s", "eval/mean_reward", "maximize", {}, [], {}, "n/a", symptoms=counts,
                  diagnosed_trials=diagnosed).to_text()
    assert "most frequent symptoms" in text and "balance.falls_early" in text and "(75%)" in text
