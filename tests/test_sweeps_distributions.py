"""Every W&B distribution the sweeps use maps to Optuna with W&B's semantics."""

from __future__ import annotations

import math

import optuna
import pytest

from dinosim.errors import ConfigError
from dinosim.sweeps.distributions import decode_params, grid_size, grid_values, parse_param, suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _samples(cfg, n=300, name="p"):
    spec = parse_param(name, cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        t = study.ask()
        out.append(suggest(t, spec))
        study.tell(t, 0.0)
    return spec, out, study


def test_inferred_distributions():
    assert parse_param("a", {"value": 3}).distribution == "constant"
    assert parse_param("a", {"values": [1, 2]}).distribution == "categorical"
    assert parse_param("a", {"min": 1, "max": 5}).distribution == "int_uniform"
    assert parse_param("a", {"min": 0.1, "max": 5}).distribution == "uniform"


def test_uniform_int_uniform_constant():
    _, xs, _ = _samples({"distribution": "uniform", "min": -1.0, "max": 2.0})
    assert all(-1.0 <= x <= 2.0 for x in xs) and max(xs) - min(xs) > 2.5
    _, ks, _ = _samples({"distribution": "int_uniform", "min": 2, "max": 5})
    assert set(ks) == {2, 3, 4, 5} and all(isinstance(k, int) for k in ks)
    _, cs, _ = _samples({"value": [1, 2]}, n=3)
    assert cs == [[1, 2]] * 3


def test_log_uniform_values_and_natural_log_bounds():
    _, xs, _ = _samples({"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-3})
    assert all(1e-5 <= x <= 1e-3 for x in xs)
    below = sum(x < 1e-4 for x in xs) / len(xs)  # log-uniform: half the mass below the geometric middle
    assert 0.35 < below < 0.65
    _, ys, _ = _samples({"distribution": "log_uniform", "min": math.log(1e-5), "max": math.log(1e-3)})
    assert all(1e-5 * (1 - 1e-9) <= y <= 1e-3 * (1 + 1e-9) for y in ys)
    _, zs, _ = _samples({"distribution": "inv_log_uniform_values", "min": 0.01, "max": 1.0})
    assert all(0.01 <= z <= 1.0 for z in zs)


def test_q_uniform_quantizes_like_wandb():
    _, xs, _ = _samples({"distribution": "q_uniform", "min": 25, "max": 300, "q": 25})
    assert all(isinstance(x, int) and x % 25 == 0 and 25 <= x <= 300 for x in xs)
    _, ys, _ = _samples({"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25})
    assert set(ys) <= {0.0, 0.25, 0.5, 0.75, 1.0} and isinstance(ys[0], float)
    _, zs, _ = _samples({"distribution": "q_log_uniform_values", "min": 16, "max": 512, "q": 16})
    assert all(z % 16 == 0 and 16 <= z <= 512 for z in zs)


def test_categorical_lists_round_trip():
    arches = [[128, 64], [256, 128, 64], [512, 256, 128], [256, 256, 256]]
    spec, xs, study = _samples({"values": arches}, n=80)
    assert all(x in arches for x in xs) and len({tuple(x) for x in xs}) == 4
    t = study.trials[0]
    assert decode_params({"p": spec}, t.params) == {"p": xs[0]}


def test_grid_values_follow_wandb():
    assert grid_values(parse_param("a", {"distribution": "int_uniform", "min": 1, "max": 3})) == [1, 2, 3]
    assert grid_values(parse_param("a", {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25})) == [
        0.0, 0.25, 0.5, 0.75]  # numpy.arange: max excluded
    specs = {"a": parse_param("a", {"values": [1, 2, 3]}), "b": parse_param("b", {"values": [[1], [2]]}),
             "c": parse_param("c", {"value": 5})}
    assert grid_size(specs) == 6
    with pytest.raises(ConfigError, match="grid"):
        grid_values(parse_param("a", {"distribution": "uniform", "min": 0.0, "max": 1.0}))


@pytest.mark.parametrize("cfg", [
    {"distribution": "normal", "mu": 0, "sigma": 1}, {"values": [1, 2], "probabilities": [0.5, 0.5]},
    {"parameters": {"x": {"value": 1}}}, {"distribution": "uniform", "min": 2.0, "max": 1.0},
    {"distribution": "log_uniform_values", "min": 0.0, "max": 1.0},
    {"distribution": "uniform", "min": "1e-5", "max": 1.0},
    {"values": []}, {"foo": 1},
])
def test_rejected(cfg):
    with pytest.raises(ConfigError):
        parse_param("a", cfg)
