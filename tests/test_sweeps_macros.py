"""The offline engine expands sweep commands exactly like `wandb agent` (checked against wandb's own code)."""

from __future__ import annotations

import json
import sys

import pytest

from dinosim.sweeps.macros import DEFAULT_SWEEP_COMMAND, command_args, expand_command, expand_envvars, option_values

PARAMS = {
    "ppo.learning_rate": 1e-05,
    "ppo.policy_kwargs.net_arch": [256, 256],
    "ppo.normalize_advantage": True,
    "ppo.use_sde": False,
    "env.fall_penalty": -50.0,
    "ppo.n_epochs": 8,
    "ppo.lr_schedule": "cosine",
    "stage2.ppo.clip_range": 0.15000000000000002,
}

COMMANDS = [
    None,
    ["${env}", "${interpreter}", "${program}", "train", "--species", "velociraptor", "--stage", 1,
     "--skip-if", "ppo.learning_rate > 5e-4 and ppo.n_epochs > 8", "--override", "${args_no_hyphens}"],
    ["${interpreter}", "${program}", "${args_json}", "${args_no_boolean_flags}", "${args_no_equals}", "${unknown}"],
    ["${interpreter}", "${program}", "${args_append_hydra}", "${args_override_hydra}", "${args_json_file}",
     "x${envvar:DINOSIM_TEST_VAR}y", "${envvar:DINOSIM_UNSET_VAR}", "--prefix-${args}"],
]


def _wandb_agent_argv(monkeypatch, tmp_path, command, params, program):
    """The argv wandb's own Agent._command_run builds (its process class replaced by a recorder)."""
    from wandb import wandb_agent

    captured = {}

    class Recorder:
        def __init__(self, command=None, env=None, **kwargs):
            captured["command"] = command

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep123")
    # Agent._command_run writes these into os.environ; registering them here makes monkeypatch restore them, so
    # later tests do not run as if under a W&B agent (run id "run42").
    monkeypatch.setenv("WANDB_RUN_ID", "unset")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "unset")
    monkeypatch.setattr(wandb_agent, "AgentProcess", Recorder)
    agent = wandb_agent.Agent(api=None, queue=None, sweep_id="sweep123")
    agent._sweep_command = list(command) if command else list(wandb_agent.Agent.DEFAULT_SWEEP_COMMAND)
    agent._command_run({"run_id": "run42", "program": program, "args": {k: {"value": v} for k, v in params.items()}})
    json_file = str(tmp_path / "wandb" / "sweep-sweep123" / "config-run42.json")
    return captured["command"], json_file


@pytest.mark.parametrize("command", COMMANDS)
def test_expansion_equals_wandb_agent(monkeypatch, tmp_path, command):
    monkeypatch.setenv("DINOSIM_TEST_VAR", "VALUE")
    monkeypatch.delenv("DINOSIM_UNSET_VAR", raising=False)
    expected, json_file = _wandb_agent_argv(monkeypatch, tmp_path, command, PARAMS, "scripts/train_sb3.py")
    ours = expand_command(command, PARAMS, "scripts/train_sb3.py", args_json_file=json_file)
    assert ours == expected


def test_argument_lists_equal_wandb_utils():
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    theirs = create_sweep_command_args({"args": {k: {"value": v} for k, v in PARAMS.items()}})
    ours = command_args(PARAMS)
    for key, value in ours.items():
        assert value == theirs[key], key


def test_values_render_with_str():
    argv = expand_command(["${args_no_hyphens}"], PARAMS, "p")
    assert "ppo.learning_rate=1e-05" in argv
    assert "ppo.policy_kwargs.net_arch=[256, 256]" in argv
    assert "ppo.normalize_advantage=True" in argv
    assert "stage2.ppo.clip_range=0.15000000000000002" in argv
    assert json.loads(expand_command(["${args_json}"], PARAMS, "p")[0]) == PARAMS


def test_interpreter_and_default_command():
    argv = expand_command(None, {"a.b": 1}, "prog.py", interpreter=sys.executable)
    assert argv == ["/usr/bin/env", sys.executable, "prog.py", "--a.b=1"]
    assert tuple(DEFAULT_SWEEP_COMMAND) == ("${env}", "${interpreter}", "${program}", "${args}")


def test_envvar_and_option_values():
    assert expand_envvars(["a${envvar:X_Y}b", 3], {"X_Y": "1"}) == ["a1b", 3]
    cmd = ["train", "--skip-if", "a.b > 1", "--skip-if=c.d < 2", "--stage", 1]
    assert option_values(cmd, "--skip-if") == ["a.b > 1", "c.d < 2"]
    assert option_values(cmd, "--stage") == ["1"]
