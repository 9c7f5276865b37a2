"""The override grammar: every accepted form, precedence, nested keys, and each error."""

from __future__ import annotations

import re

import pytest

from dinosim.config.overrides import extract_override_tokens, ordered_for_application, parse_override
from dinosim.config.resolve import resolve_run
from dinosim.config.values import parse_value
from dinosim.errors import ConfigError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3", 3), ("2e-4", 2e-4), ("1e-05", 1e-05), ("-100", -100), ("true", True), ("True", True),
        ("False", False), ("None", None), ("[256, 256]", [256, 256]), ("[256,256]", [256, 256]),
        ('"text"', "text"), ("{net_arch = [64]}", {"net_arch": [64]}), ("{'a': 1}", {"a": 1}),
        ("auto", "auto"), ("(1, 2)", [1, 2]), ("2048.0", 2048.0),
    ],
)
def test_values_parse_as_toml_then_python_literals_then_strings(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "text, stage, section, path",
    [
        ("ppo.learning_rate=1e-3", None, "ppo", ("learning_rate",)),
        ("2.ppo.learning_rate=1e-3", 2, "ppo", ("learning_rate",)),
        ("stage3.env.strike_bonus=5", 3, "env", ("strike_bonus",)),
        ("ppo.policy_kwargs.net_arch=[256,256]", None, "ppo", ("policy_kwargs", "net_arch")),
    ],
)
def test_key_forms(text, stage, section, path):
    override = parse_override(text)
    assert (override.stage, override.section, override.path) == (stage, section, path)


@pytest.mark.parametrize("text", ["ppo", "ppo=1", "ppo.=1", ".ppo.x=1", "ppo.x=", "1.x=1", "1ppo.x=1", "ppo..x=1"])
def test_malformed_overrides_are_errors(text):
    with pytest.raises(ConfigError):
        parse_override(text)


def test_command_line_forms_keep_their_order():
    args = ["--stage", "1", "--override", "a.b=1", "c.d=2", "--dry-run", "-o", "e.f=3", "--override=g.h=4",
            "--ppo.learning_rate=3e-05", "--seed", "5"]
    overrides, rest = extract_override_tokens(args)
    assert overrides == ["a.b=1", "c.d=2", "e.f=3", "g.h=4", "ppo.learning_rate=3e-05"]
    assert rest == ["--stage", "1", "--dry-run", "--seed", "5"]


def test_override_flag_without_value_is_an_error():
    with pytest.raises(ConfigError, match="needs at least one"):
        extract_override_tokens(["--override", "--dry-run"])
    with pytest.raises(ConfigError, match="needs a value"):
        extract_override_tokens(["--ppo.learning_rate"])


def test_stage_scoped_wins_whatever_the_order_and_last_of_equals_wins():
    texts = ["1.ppo.ent_coef=0.03", "ppo.ent_coef=0.01", "ppo.ent_coef=0.02", "stage1.ppo.ent_coef=0.04"]
    ordered = ordered_for_application([parse_override(t) for t in texts])
    assert [o.raw for o in ordered] == ["ppo.ent_coef=0.01", "ppo.ent_coef=0.02", "1.ppo.ent_coef=0.03",
                                        "stage1.ppo.ent_coef=0.04"]
    config = resolve_run("velociraptor", "ppo", (1, 2), texts[:3])
    assert config.section(1, "ppo")["ent_coef"] == 0.03
    assert config.section(2, "ppo")["ent_coef"] == 0.02


def test_nested_keys_and_inline_tables():
    config = resolve_run("trex", "ppo", (1,), ["ppo.policy_kwargs.net_arch=[64, 32]"])
    assert config.section(1, "ppo")["policy_kwargs"]["net_arch"] == [64, 32]
    config = resolve_run("trex", "ppo", (1,), ["ppo.policy_kwargs={net_arch = [8], log_std_init = -1}"])
    assert config.section(1, "ppo")["policy_kwargs"] == {"net_arch": [8], "log_std_init": -1.0}


def test_int_for_float_and_integral_float_for_int():
    config = resolve_run("velociraptor", "ppo", (1,), ["ppo.learning_rate=1", "ppo.n_steps=1024.0"])
    assert config.section(1, "ppo")["learning_rate"] == 1.0
    assert type(config.section(1, "ppo")["learning_rate"]) is float
    assert config.section(1, "ppo")["n_steps"] == 1024 and type(config.section(1, "ppo")["n_steps"]) is int


@pytest.mark.parametrize(
    "override, message",
    [
        ("ppo.learning_rat=1e-3", "did you mean 'learning_rate'"),
        ("pppo.n_steps=64", "unknown section 'pppo'"),
        ("ppo.n_steps=2048.5", "must be an integer"),
        ("ppo.n_steps=abc", "wrong type"),
        ("ppo.learning_rate=nan", "not a finite number"),
        ("4.ppo.n_steps=64", "out of range"),
        ("2.ppo.n_steps=64", "does not run"),
        ("ppo.batch_size=100", "not a multiple"),
        ("ppo.policy_kwargs.net_arh=[1]", "did you mean 'net_arch'"),
        ("ppo.n_steps.x=1", "is not a table"),
        ("curriculum.min_success_rate=2", "must be in [0, 1]"),
        ("ppo.lr_schedule=step", "choose from"),
        ("env.alive_bonus=[1]", "wrong type"),
        ("curriculum.eval_freq=0", "must be >= 1"),
    ],
)
def test_each_error_names_the_culprit(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_run("velociraptor", "ppo", (1,), [override])


def test_bare_seed_override_sets_the_run_seed():
    from dinosim.config.overrides import split_run_overrides

    assert split_run_overrides(["seed=3", "ppo.gamma=0.9", "seed=4.0"]) == ({"seed": 4}, ["ppo.gamma=0.9"])
    with pytest.raises(ConfigError, match="seed must be an integer"):
        split_run_overrides(["seed=1.5"])
