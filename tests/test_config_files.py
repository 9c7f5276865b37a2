"""The committed configs and the TOML loader: every file validates, bad files give file:line errors."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from dinosim.config.resolve import ALGORITHMS, RunConfig, resolve_run
from dinosim.config.schema import algorithm_keys, section_keys
from dinosim.errors import ConfigError
from dinosim.species import CONFIGS_DIR, SPECIES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.mark.parametrize("species", sorted(SPECIES))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_committed_configs_resolve(species, algorithm):
    config = resolve_run(species, algorithm, (1, 2, 3))
    data = tomllib.loads(config.to_toml())
    assert RunConfig.from_dict(data).to_dict() == config.to_dict()
    assert data["run"]["species"] == species and data["run"]["algorithm"] == algorithm
    for stage in (1, 2, 3):
        assert set(data[f"stage{stage}"]) >= {"env", "curriculum", algorithm}


def test_hyperparameter_progression_follows_the_stages():
    for species in SPECIES:
        config = resolve_run(species, "ppo", (1, 2, 3))
        lrs = [config.section(s, "ppo")["learning_rate"] for s in (1, 2, 3)]
        assert lrs == [3e-4, 1e-4, 1e-4]  # stage 3 keeps stage 2's rate: at 5e-5 the bite/strike learnt too slowly
        assert [config.section(s, "sac")["learning_rate"] for s in (1, 2, 3)] == [3e-4, 1e-4, 5e-5]
        assert config.section(3, "ppo")["clip_range"] <= config.section(1, "ppo")["clip_range"]
        assert config.curriculum(3).min_success_rate is not None


def test_algo_kwargs_exclude_schedule_keys_and_respect_the_constructor():
    config = resolve_run("velociraptor", "tqc", (1,))
    kwargs = config.algo_kwargs(1)
    assert "learning_rate_end" not in kwargs and "lr_schedule" not in kwargs
    assert set(kwargs) <= set(algorithm_keys("tqc"))
    assert kwargs["train_freq"] == 16 and kwargs["gradient_steps"] == 8


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    shutil.copytree(CONFIGS_DIR, tmp_path / "configs")
    return tmp_path / "configs"


def _edit(config_dir: Path, old: str, new: str) -> None:
    path = config_dir / "velociraptor" / "stage1_balance.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("n_epochs = 10", "n_epochs = = 10", r"stage1_balance.toml:\d+:\d+: TOML syntax error"),
        ("n_epochs = 10", "n_epoch = 10", r"stage1_balance.toml:\d+: unknown key 'n_epoch' .*did you mean 'n_epochs'"),
        ("[curriculum]", "[curiculum]", r"stage1_balance.toml:\d+: unknown section \[curiculum\]"),
        ("n_epochs = 10", 'n_epochs = "ten"', r"stage1_balance.toml:\d+: ppo.n_epochs = 'ten' has the wrong type"),
    ],
)
def test_toml_errors_name_file_and_line(config_dir, old, new, message):
    _edit(config_dir, old, new)
    with pytest.raises(ConfigError, match=message):
        resolve_run("velociraptor", "ppo", (1,), config_dir=config_dir)


def test_missing_file_is_an_error(config_dir):
    (config_dir / "velociraptor" / "stage2_locomotion.toml").unlink()
    with pytest.raises(ConfigError, match="not found"):
        resolve_run("velociraptor", "ppo", (1, 2), config_dir=config_dir)


def test_env_keys_come_from_the_env_constructor():
    keys = section_keys("env", "velociraptor")
    for name in ("alive_bonus", "fall_penalty", "max_episode_steps"):
        assert name in keys
