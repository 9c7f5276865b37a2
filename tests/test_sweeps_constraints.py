"""--skip-if constraints: a whitelisted expression parser over dotted config keys, enforced by the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dinosim.sweeps.constraints import ConstraintError, first_violated, parse_constraint

FLAT = {"ppo.learning_rate": 1e-3, "ppo.n_epochs": 10, "ppo.ent_coef": 0.06, "ppo.clip_range": 0.1,
        "env.fall_penalty": -500.0, "ppo.policy_kwargs.net_arch": [256, 256], "stage2.ppo.learning_rate": 1e-5,
        "ppo.lr_schedule": "linear", "ppo.use_sde": False}


@pytest.mark.parametrize("text, expected", [
    ("ppo.learning_rate > 5e-4 and ppo.n_epochs > 8", True),
    ("ppo.learning_rate > 5e-4 and ppo.n_epochs > 10", False),
    ("ppo.ent_coef > 0.05 and ppo.clip_range < 0.15", True),
    ("env.fall_penalty < -400 and ppo.learning_rate > 5e-4", True),
    ("env.fall_penalty < -600 or not ppo.n_epochs == 10", False),
    ("not (ppo.n_epochs >= 4 and ppo.n_epochs <= 10)", False),
    ("1e-4 < ppo.learning_rate <= 1e-3", True),
    ("stage2.ppo.learning_rate * 100 > ppo.learning_rate", False),
    ("ppo.policy_kwargs.net_arch == [256, 256]", True),
    ("ppo.lr_schedule in ['cosine', 'constant']", False),
    ("ppo.lr_schedule not in ('cosine',)", True),
    ("ppo.use_sde == False and -ppo.n_epochs < -5", True),
    ("ppo.n_epochs % 3 == 1 and ppo.n_epochs // 3 == 3 and 2 ** 3 == 8", True),
])
def test_evaluate(text, expected):
    assert parse_constraint(text).evaluate(FLAT) is expected


def test_keys_and_partial():
    c = parse_constraint("ppo.learning_rate > 5e-4 and ppo.n_epochs > 8")
    assert c.keys == {"ppo.learning_rate", "ppo.n_epochs"}
    assert c.evaluate_partial({"ppo.learning_rate": 1e-3}) is None
    assert c.evaluate_partial({"ppo.learning_rate": 1e-3, "ppo.n_epochs": 9}) is True


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')", "open('x')", "ppo.learning_rate()", "ppo[0] > 1", "lambda: 1",
    "[x for x in ppo]", "ppo.learning_rate if 1 else 2", "(ppo := 3)", "{'a': 1}", "ppo.x.__class__ > 1 or f'{a}'",
    "a > ", "", "   ", "1 +* 2", "(1).real > 0", "ppo.n_epochs > 8; import os",
])
def test_rejects_non_whitelisted(text):
    with pytest.raises(ConstraintError):
        parse_constraint(text)


def test_unknown_key_and_type_errors():
    with pytest.raises(ConstraintError, match="unknown config key"):
        parse_constraint("ppo.learnin_rate > 1").evaluate(FLAT)
    with pytest.raises(ConstraintError):
        parse_constraint("ppo.lr_schedule > 1").evaluate(FLAT)


def test_first_violated_on_run_config():
    from dinosim.config.resolve import resolve_run

    rc = resolve_run("velociraptor", "ppo", (1,), ["ppo.learning_rate=0.001"])
    hit = first_violated(["ppo.n_epochs > 100", "ppo.learning_rate > 5e-4 and ppo.n_epochs > 8"], rc)
    assert hit is not None and hit.text == "ppo.learning_rate > 5e-4 and ppo.n_epochs > 8"
    assert first_violated(["ppo.learning_rate > 0.01"], rc) is None


def _cli(args, env_extra, tmp_path):
    env = {**os.environ, **env_extra}
    env.pop("WANDB_SWEEP_ID", None)
    return subprocess.run([sys.executable, "-m", "dinosim", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


def test_cli_skips_run_and_records_marker(tmp_path):
    metrics = tmp_path / "m.jsonl"
    r = _cli(["train", "--species", "velociraptor", "--stage", "1",
              "--skip-if", "ppo.learning_rate > 5e-4 and ppo.n_epochs > 8", "--override", "ppo.learning_rate=0.001"],
             {"DINOSIM_TRIAL_METRICS": str(metrics), "DINOSIM_RUNS_DIR": str(tmp_path / "runs")}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "skipped: skip-if: ppo.learning_rate > 5e-4 and ppo.n_epochs > 8" in r.stdout
    assert json.loads(metrics.read_text().splitlines()[0]) == {
        "skipped": True, "reason": "skip-if: ppo.learning_rate > 5e-4 and ppo.n_epochs > 8"}
    assert not (tmp_path / "runs").exists()


def test_cli_bad_constraint_is_exit_2(tmp_path):
    r = _cli(["train", "--stage", "1", "--skip-if", "ppo.learning_rte > 1", "--dry-run"], {}, tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "ppo.learning_rte" in r.stderr
