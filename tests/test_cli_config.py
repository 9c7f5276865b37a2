"""The CLI end to end with --dry-run, its errors, and its light imports (no torch / SB3 / wandb)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dinosim.species import SPECIES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "scripts" / "train_sb3.py")
HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "wandb")

# Runs the CLI in-process and reports which heavy modules got imported.
_PROBE = """
import sys
sys.argv = ["dinosim"] + sys.argv[1:]
try:
    from dinosim.cli import main
    main()
except SystemExit as exc:
    heavy = [m for m in {heavy!r} if m in sys.modules]
    print("HEAVY:" + ",".join(heavy), file=sys.stderr)
    raise
"""


def run_cli(*args: str, probe: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", _PROBE.format(heavy=HEAVY)] if probe else [sys.executable, SCRIPT]
    return subprocess.run(command + list(args), capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("species", sorted(SPECIES))
def test_dry_run_prints_parseable_resolved_config_for_every_species(species):
    result = run_cli("curriculum", "--species", species, "--override", "ppo.ent_coef=0.02", "2.ppo.gamma=0.98",
                     "--dry-run")
    assert result.returncode == 0, result.stderr
    data = tomllib.loads(result.stdout)
    assert data["run"] == {**data["run"], "species": species, "algorithm": "ppo", "stages": [1, 2, 3]}
    assert [data[f"stage{s}"]["ppo"]["ent_coef"] for s in (1, 2, 3)] == [0.02, 0.02, 0.02]
    assert data["stage2"]["ppo"]["gamma"] == 0.98 and data["stage1"]["ppo"]["gamma"] != 0.98
    assert "env" in data["stage1"] and "curriculum" in data["stage3"]


@pytest.mark.parametrize(
    "args",
    [
        ["curriculum", "--species", "trex", "--override", "1.ppo.learning_rate=3e-4", "2.ppo.learning_rate=1e-4",
         "--dry-run"],
        ["curriculum", "--species", "brachiosaurus", "--algorithm", "sac", "--dry-run"],
        ["train", "--stage", "1", "--override", "ppo.learning_rate=1e-3", "ppo.ent_coef=0.02", "env.alive_bonus=5.0",
         "--dry-run"],
        ["train", "--stage", "1", "--ppo.learning_rate=2e-04", "--ppo.policy_kwargs.net_arch=[256, 256]", "--dry-run"],
    ],
)
def test_readme_lines_work_and_stay_light(args):
    result = run_cli(*args, probe=True)
    assert result.returncode == 0, result.stderr
    tomllib.loads(result.stdout)
    assert "HEAVY:\n" in result.stderr or result.stderr.rstrip().endswith("HEAVY:")


def test_wandb_style_args_become_overrides():
    result = run_cli("train", "--stage", "1", "--ppo.learning_rate=2e-04", "--ppo.policy_kwargs.net_arch=[256, 256]",
                     "--dry-run")
    data = tomllib.loads(result.stdout)
    assert data["stage1"]["ppo"]["learning_rate"] == 2e-04
    assert data["stage1"]["ppo"]["policy_kwargs"]["net_arch"] == [256, 256]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--stage", "1", "--override", "ppo.learnin_rate=1"], "did you mean 'learning_rate'"),
        (["train", "--stage", "1", "--override", "ppo.n_steps=2048.5"], "must be an integer"),
        (["train", "--stage", "1", "--n-envs", "3", "--override", "ppo.batch_size=256", "ppo.n_steps=100"],
         "not a multiple"),
        (["train", "--stage", "4"], "--stage"),
        (["curriculum", "--stages", "0-2"], "out of range"),
        (["train", "--stage", "1", "--override"], "needs at least one"),
        (["train", "--stage", "1", "--no-such-flag"], "no-such-flag"),
        (["train", "--species", "stegosaurus", "--stage", "1"], "stegosaurus"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_heavy_import(args, message):
    result = run_cli(*args, probe=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("HEAVY:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip().endswith("HEAVY:"), result.stderr


def test_help_is_light():
    for args in (["--help"], ["train", "--help"], ["curriculum", "--help"], ["config", "keys"]):
        result = run_cli(*args, probe=True)
        assert result.returncode == 0, result.stderr
        assert result.stderr.rstrip().endswith("HEAVY:"), (args, result.stderr)


def test_config_keys_lists_keys_from_each_consumer():
    result = run_cli("config", "keys", "--species", "trex")
    assert result.returncode == 0, result.stderr
    for key in ("ppo.learning_rate", "ppo.learning_rate_end", "ppo.policy_kwargs.net_arch", "sac.tau",
                "tqc.top_quantiles_to_drop_per_net", "env.alive_bonus", "curriculum.min_avg_reward"):
        assert f"  {key}  (" in result.stdout, key
