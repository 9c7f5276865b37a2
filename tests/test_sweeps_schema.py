"""Every sweep YAML passes W&B's sweep schema, the offline engine's checks and the config-key check."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from dinosim.cli.run_cmds import parse_stages
from dinosim.envs.rewards import TERMS
from dinosim.errors import ConfigError
from dinosim.sweeps.keys import check_keys
from dinosim.sweeps.wandb_schema import schema_violations
from dinosim.sweeps.yaml_spec import load_sweep, spec_from_dict
from dinosim.training.metrics import EVAL_COMPONENT_PREFIX, LOWER_IS_BETTER, STAGE_END_SCALARS, sweep_metric_names

SWEEPS = sorted((Path(__file__).resolve().parent.parent / "sweeps").glob("*.yaml"))
REQUIRED = {"velociraptor_stage1_grid", "velociraptor_stage1_random", "trex_stage1_random",
            "brachiosaurus_stage1_random", "velociraptor_curriculum_bayes", "velociraptor_unified_bayes"}


def test_required_sweeps_exist():
    assert REQUIRED <= {p.stem for p in SWEEPS}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_yaml_is_valid(path):
    raw = yaml.safe_load(path.read_text())
    from wandb.sdk.launch.sweeps.utils import load_sweep_config

    assert load_sweep_config(str(path)) == raw  # what `wandb sweep` sends to the server (which applies the schema)
    assert schema_violations(raw) == []
    spec = load_sweep(path)
    check_keys(spec)
    assert raw["program"] == "scripts/train_sb3.py"
    assert spec.metric in sweep_metric_names(TERMS)
    assert spec.goal == ("minimize" if spec.metric in LOWER_IS_BETTER else "maximize")
    assert spec.run_cap is not None
    toks = [str(t) for t in spec.command]
    assert toks[-2:] == ["--override", "${args_no_hyphens}"]  # fixed overrides, if any, come in an earlier --override
    stages = parse_stages(toks[toks.index("--stages") + 1]) if "--stages" in toks else ()
    if "stage3" in " ".join(spec.parameters) or 3 in stages:
        # the task itself decides a stage-3 sweep: its success rate, or the steps to its success gate
        assert spec.metric == "eval/success_rate" or spec.metric in STAGE_END_SCALARS
    if spec.metric.startswith(EVAL_COMPONENT_PREFIX):  # one reward term: its own keys (weight, cap) are not swept
        term = spec.metric[len(EVAL_COMPONENT_PREFIX):]
        assert not any(name.rsplit(".", 1)[-1].startswith(term) for name in spec.parameters)


def test_unified_sweep_contents():
    spec = load_sweep(next(p for p in SWEEPS if p.stem == "velociraptor_unified_bayes"))
    p = spec.parameters
    assert p["ppo.learning_rate"].config == {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-3}
    assert p["ppo.ent_coef"].config == {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}
    assert p["ppo.n_epochs"].values == [4, 5, 6, 8, 10]
    assert p["ppo.policy_kwargs.net_arch"].values == [[128, 64], [256, 128, 64], [512, 256, 128], [256, 256, 256]]
    for key in ("ppo.n_steps", "ppo.gamma", "ppo.gae_lambda", "ppo.clip_range", "env.alive_bonus",
                "env.posture_weight", "env.forward_vel_weight", "env.smoothness_weight", "env.energy_penalty_weight"):
        assert key in p
    assert p["env.fall_penalty"].distribution == "categorical"
    assert spec.hyperband is not None and spec.method == "bayes"
    assert {c.text for c in spec.constraints} >= {"ppo.learning_rate > 5e-4 and ppo.n_epochs > 8",
                                                  "env.fall_penalty < -400 and ppo.learning_rate > 5e-4"}


def test_curriculum_sweep_uses_stage_scoped_keys():
    spec = load_sweep(next(p for p in SWEEPS if p.stem == "velociraptor_curriculum_bayes"))
    assert "stage2.ppo.learning_rate" in spec.parameters and "stage3.env.strike_bonus" in spec.parameters


BASE = {"method": "random", "metric": {"name": "eval/mean_reward", "goal": "maximize"}, "program": "x.py",
        "parameters": {"ppo.learning_rate": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-3}}}


@pytest.mark.parametrize("mutate", [
    lambda c: c.update(extra_key=1),
    lambda c: c.update(method="hill-climb"),
    lambda c: c["parameters"]["ppo.learning_rate"].update(min="1e-5"),  # YAML 1e-5 without a dot is a string
    lambda c: c["parameters"].update({"x.y": {"distribution": "log_uniform", "min": -5, "max": -1}}),  # deprecated
    lambda c: c["parameters"].update({"x.y": {"min": 3, "max": 1}}),
    lambda c: c.update(early_terminate={"type": "hyperband"}),
    lambda c: c.update(run_cap=0),
    lambda c: c["metric"].update(goal="up"),
    lambda c: c["parameters"].update({"bad name!": {"value": 1}}),
])
def test_schema_rejects(mutate):
    cfg = copy.deepcopy(BASE)
    mutate(cfg)
    assert schema_violations(cfg)


def test_schema_accepts_base():
    assert schema_violations(copy.deepcopy(BASE)) == []


def test_unknown_config_key_fails(tmp_path):
    for bad in ("env.bite_bonus", "ppo.learnin_rate", "stage2.ppo.learning_rate", "env.strike_bonus.x"):
        raw = copy.deepcopy(BASE)
        raw["command"] = ["${env}", "${interpreter}", "${program}", "train", "--species", "velociraptor", "--stage",
                          "1", "--override", "${args_no_hyphens}"]
        raw["parameters"][bad] = {"values": [1.0, 2.0]}
        with pytest.raises(ConfigError, match="unknown config key"):
            check_keys(spec_from_dict(raw, tmp_path / "s.yaml"))
    raw = copy.deepcopy(BASE)
    raw["command"] = ["train", "--species", "trex", "--stage", "1", "--skip-if", "env.strike_bonus > 1"]
    with pytest.raises(ConfigError, match="env.strike_bonus"):
        check_keys(spec_from_dict(raw, tmp_path / "s.yaml"))
