"""`dinosim sweep validate` runs a sample of each sweep's trials as the agent would (rendered command + --dry-run)
and refuses a metric no evaluation logs: every sweep of issue 12 that said "ok" while every trial failed."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from dinosim.sweeps.distributions import parse_param
from dinosim.sweeps.dry_runs import sample_configurations

ROOT = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((ROOT / "sweeps" / "velociraptor_stage1_random.yaml").read_text())


def validate(tmp_path: Path, capsys, raw: dict) -> tuple[int, str, str]:
    from dinosim.cli import main

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "validate", str(path)])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def _command(raw: dict, old: str, new: str) -> None:
    raw["command"] = [new if str(t) == old else t for t in raw["command"]]


def _params(raw: dict, **params: dict) -> None:
    raw["parameters"].update({k.replace("__", "."): v for k, v in params.items()})


BAD = [
    ("subcommand", lambda r: _command(r, "train", "trian"), "No such command 'trian'"),
    ("stage", lambda r: _command(r, "1", "4"), "'--stage': 4 is not in the range"),
    ("species", lambda r: _command(r, "velociraptor", "dragon"), "--species 'dragon', which is not a species"),
    ("metric", lambda r: r["metric"].update(name="eval/mean_rewrd"), "did you mean 'eval/mean_reward'"),
    ("wandb-only metric", lambda r: r["metric"].update(name="rollout/ep_rew_mean"), "not a metric a sweep"),
    ("evaluation time", lambda r: r["metric"].update(name="eval_time/wall_s"), "not a metric a sweep"),  # bookkeeping
    ("steps maximised", lambda r: r["metric"].update(name="stage/steps_to_gate_ranked", goal="maximize"),
     "use goal: minimize"),
    ("values types", lambda r: _params(r, ppo__learning_rate={"values": [0.0003, "x"]}), "'x' has the wrong type"),
    ("n_steps x n_envs vs batch", lambda r: _params(r, ppo__n_steps={"values": [512, 1000]}), "not a multiple"),
    ("range extreme", lambda r: _params(r, ppo__gamma={"distribution": "uniform", "min": 0.9, "max": 1.01}),
     "ppo.gamma = 1.01 must be in (0, 1]"),
    ("rising schedule", lambda r: _params(r, ppo__learning_rate={"values": [0.0003, 0.00005]}),
     "the schedule would rise"),
]


@pytest.mark.parametrize("name, mutate, words", BAD, ids=[b[0] for b in BAD])
def test_validate_refuses_sweeps_whose_trials_would_fail(tmp_path, capsys, name, mutate, words):
    raw = copy.deepcopy(BASE)
    mutate(raw)
    code, _, err = validate(tmp_path, capsys, raw)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and words in err, err


def test_committed_sweeps_pass_with_their_trials_dry_run(tmp_path, capsys):
    from dinosim.cli import main

    paths = sorted(str(p) for p in (ROOT / "sweeps").glob("*.yaml"))
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "validate", *paths])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    counts = [int(n) for n in re.findall(r"(\d+) trials dry-run", out)]
    assert len(counts) == len(paths) and min(counts) >= 9, out


def test_sample_holds_every_extreme_of_every_parameter():
    params = {
        "a": parse_param("a", {"values": [1, 2, 3]}),
        "b": parse_param("b", {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-3}),
        "c": parse_param("c", {"distribution": "q_uniform", "min": 25, "max": 300, "q": 25}),
        "d": parse_param("d", {"value": 7}),
    }
    configs = sample_configurations(params, random_draws=5)
    seen = {name: {c[name] for c in configs} for name in params}
    assert {1, 2, 3} <= seen["a"] and {1e-5, 1e-3} <= seen["b"] and {25, 300} <= seen["c"] and seen["d"] == {7}
    assert {"a": 1, "b": 1e-5, "c": 25, "d": 7} in configs and {"a": 3, "b": 1e-3, "c": 300, "d": 7} in configs
    assert all(1e-5 <= c["b"] <= 1e-3 for c in configs)


def test_logged_metric_list_covers_every_eval_literal_of_the_training_code():
    from dinosim.envs.rewards import TERMS
    from dinosim.training.metrics import EVAL_COMPONENT_PREFIX, eval_metric_names

    names = set(eval_metric_names(TERMS))
    for path in (ROOT / "dinosim" / "training").glob("*.py"):
        for literal in re.findall(r"\"(eval/[A-Za-z0-9_/]*)\"", path.read_text()):
            assert literal in names or literal in ("eval/", EVAL_COMPONENT_PREFIX), (path.name, literal)
