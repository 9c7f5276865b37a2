"""W&B sweep parameter distributions and how the offline engine samples each one with Optuna.

Semantics follow W&B's ``sweeps`` engine (``sweeps/params.py``, ``grid_search.py``):

===========================  ===========================================  ==========================================
W&B form                     W&B value                                    Optuna
===========================  ===========================================  ==========================================
``value: v``                 constant v                                   not sampled, passed as is
``values: [...]``            one of the values                            ``suggest_categorical`` (lists/dicts are
                                                                          offered as their JSON text, decoded back)
``int_uniform`` min,max      integer in [min, max]                        ``suggest_int(min, max)``
``uniform`` min,max          float in [min, max]                          ``suggest_float(min, max)``
``q_uniform`` min,max,q      round(U(min,max)/q)*q (int when q is int)    ``suggest_float`` then the same rounding
``log_uniform_values``       exp(U(log min, log max))                     ``suggest_float(min, max, log=True)``
``log_uniform`` (deprecated) exp(U(min, max)): bounds are natural logs    ``suggest_float(e^min, e^max, log=True)``
``inv_log_uniform_values``   1/x, log-uniform in [min, max]               ``suggest_float(min, max, log=True)``
``q_log_uniform_values``     round(exp(U(log min, log max))/q)*q          log float then the rounding
===========================  ===========================================  ==========================================

Grid search (like W&B) accepts only ``value``, ``values``, ``int_uniform`` (every integer in [min, max]) and
``q_uniform`` (``numpy.arange(min, max, q)``: max excluded). ``probabilities``, normal/beta families and nested
``parameters`` are rejected with a ConfigError: the offline engine cannot reproduce them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from dinosim.errors import ConfigError

if TYPE_CHECKING:
    import optuna

_SUPPORTED = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform_values",
    "log_uniform",
    "inv_log_uniform_values",
    "q_log_uniform_values",
)
_GRID_OK = ("constant", "categorical", "int_uniform", "q_uniform")


@dataclass(frozen=True)
class ParamSpec:
    """One sweep parameter: its name (override spelling), W&B distribution name and the W&B config dict."""

    name: str
    distribution: str
    config: Mapping[str, Any]

    @property
    def is_constant(self) -> bool:
        return self.distribution == "constant"

    @property
    def values(self) -> list[Any]:
        return list(self.config.get("values", []))


def _infer_distribution(name: str, cfg: Mapping[str, Any]) -> str:
    if "parameters" in cfg:
        raise ConfigError(f"parameter {name}: nested `parameters` are not supported; use dotted names instead")
    if "probabilities" in cfg:
        raise ConfigError(f"parameter {name}: `probabilities` are not supported by the offline engine")
    if "distribution" in cfg:
        return str(cfg["distribution"])
    if "value" in cfg:
        return "constant"
    if "values" in cfg:
        return "categorical"
    if "min" in cfg and "max" in cfg:
        both_int = all(isinstance(cfg[k], int) and not isinstance(cfg[k], bool) for k in ("min", "max"))
        return "int_uniform" if both_int else "uniform"
    raise ConfigError(f"parameter {name}: needs `value`, `values`, or `min`/`max` (with a `distribution`)")


def parse_param(name: str, cfg: Any) -> ParamSpec:
    """Validate one ``parameters:`` entry and name its distribution (W&B's inference rules for a missing one)."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"parameter {name}: expected a mapping, got {type(cfg).__name__}")
    dist = _infer_distribution(name, cfg)
    if dist not in _SUPPORTED:
        raise ConfigError(
            f"parameter {name}: distribution {dist!r} is not supported (use one of {', '.join(_SUPPORTED)})")
    if dist == "categorical":
        if not isinstance(cfg.get("values"), list) or not cfg["values"]:
            raise ConfigError(f"parameter {name}: `values` must be a non-empty list")
    elif dist != "constant":
        for key in ("min", "max"):
            if not isinstance(cfg.get(key), (int, float)) or isinstance(cfg.get(key), bool):
                raise ConfigError(f"parameter {name}: `{key}` must be a number (write 1e-5 as 1.0e-5 in YAML)")
        if cfg["min"] >= cfg["max"]:
            raise ConfigError(f"parameter {name}: min {cfg['min']} is not less than max {cfg['max']}")
        if dist in ("log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values") and cfg["min"] <= 0:
            raise ConfigError(f"parameter {name}: {dist} needs min > 0")
        if dist.startswith("q_") and not (isinstance(cfg.get("q", 1), (int, float)) and cfg.get("q", 1) > 0):
            raise ConfigError(f"parameter {name}: q must be a positive number")
    return ParamSpec(name=name, distribution=dist, config=dict(cfg))


def _choice_token(value: Any) -> Any:
    """Optuna categorical choices must be None/bool/int/float/str: lists and dicts become their JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def choices(spec: ParamSpec) -> list[Any]:
    """The Optuna choice tokens of a categorical parameter (see :func:`decode`)."""
    return [_choice_token(v) for v in spec.values]


def decode(spec: ParamSpec, token: Any) -> Any:
    """The sweep value of an Optuna categorical token (the original list for a JSON-encoded choice)."""
    for v in spec.values:
        if _choice_token(v) == token and type(_choice_token(v)) is type(token):
            return v
    return token


def _quantize(x: float, q: Any) -> Any:
    r = round(x / q) * q
    return int(r) if isinstance(q, int) else float(r)


def grid_values(spec: ParamSpec) -> list[Any]:
    """Every value a grid search visits for this parameter (W&B's rules); ConfigError for a continuous one."""
    d, c = spec.distribution, spec.config
    if d not in _GRID_OK:
        raise ConfigError(f"parameter {spec.name}: {d} is not allowed in a grid search ({', '.join(_GRID_OK)} are)")
    if d == "constant":
        return [c["value"]]
    if d == "categorical":
        return spec.values
    if d == "int_uniform":
        return list(range(int(c["min"]), int(c["max"]) + 1))
    q = c.get("q", 1.0)
    n = math.ceil((c["max"] - c["min"]) / q)
    vals = [c["min"] + i * q for i in range(max(n, 0))]
    return [int(v) if isinstance(q, int) and isinstance(c["min"], int) else float(v) for v in vals]


def grid_search_space(specs: Mapping[str, ParamSpec]) -> dict[str, list[Any]]:
    """Optuna GridSampler search space (choice tokens) over the non-constant parameters."""
    return {n: [_choice_token(v) for v in grid_values(s)] for n, s in specs.items() if not s.is_constant}


def grid_size(specs: Mapping[str, ParamSpec]) -> int:
    return math.prod(len(v) for v in grid_search_space(specs).values())


def suggest(trial: "optuna.Trial", spec: ParamSpec, grid: bool = False) -> Any:
    """Sample ``spec`` in ``trial`` and return the value the program receives (rendered later with str())."""
    d, c, n = spec.distribution, spec.config, spec.name
    if d == "constant":
        return c["value"]
    if grid:
        token = trial.suggest_categorical(n, [_choice_token(v) for v in grid_values(spec)])
        return decode(ParamSpec(n, "categorical", {"values": grid_values(spec)}), token)
    if d == "categorical":
        return decode(spec, trial.suggest_categorical(n, choices(spec)))
    if d == "int_uniform":
        return trial.suggest_int(n, int(c["min"]), int(c["max"]))
    if d == "uniform":
        return trial.suggest_float(n, float(c["min"]), float(c["max"]))
    if d == "q_uniform":
        return _quantize(trial.suggest_float(n, float(c["min"]), float(c["max"])), c.get("q", 1.0))
    if d in ("log_uniform_values", "inv_log_uniform_values"):
        return trial.suggest_float(n, float(c["min"]), float(c["max"]), log=True)
    if d == "log_uniform":
        return trial.suggest_float(n, math.exp(c["min"]), math.exp(c["max"]), log=True)
    if d == "q_log_uniform_values":
        return _quantize(trial.suggest_float(n, float(c["min"]), float(c["max"]), log=True), c.get("q", 1.0))
    raise ConfigError(f"parameter {n}: distribution {d!r} is not supported")  # parse_param rejects these first


def extreme_values(spec: ParamSpec) -> list[Any]:
    """The values at the ends of a parameter's range as the sweep can produce them (every value of a categorical
    parameter, the quantized ends of a ``q_`` range, ``e^min``/``e^max`` of ``log_uniform``)."""
    d, c = spec.distribution, spec.config
    if d == "constant":
        return [c["value"]]
    if d == "categorical":
        return spec.values
    if d == "int_uniform":
        return [int(c["min"]), int(c["max"])]
    if d == "log_uniform":
        return [math.exp(c["min"]), math.exp(c["max"])]
    ends = [c["min"], c["max"]]
    if d in ("q_uniform", "q_log_uniform_values"):
        return [_quantize(v, c.get("q", 1.0)) for v in ends]
    return [float(v) for v in ends]


def random_value(spec: ParamSpec, rng: Any) -> Any:
    """One value drawn like the sweep would (``rng`` is a ``random.Random``), without Optuna."""
    d, c = spec.distribution, spec.config
    if d in ("constant", "categorical"):
        return rng.choice(extreme_values(spec))
    if d == "int_uniform":
        return rng.randint(int(c["min"]), int(c["max"]))
    if d == "log_uniform":
        return math.exp(rng.uniform(c["min"], c["max"]))
    if d in ("log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values"):
        value = math.exp(rng.uniform(math.log(c["min"]), math.log(c["max"])))
    else:
        value = rng.uniform(float(c["min"]), float(c["max"]))
    return _quantize(value, c.get("q", 1.0)) if d.startswith("q_") else value


def decode_params(specs: Mapping[str, ParamSpec], optuna_params: Mapping[str, Any]) -> dict[str, Any]:
    """Sweep values from a finished trial's Optuna params (constants filled in, JSON choices decoded)."""
    out: dict[str, Any] = {}
    for n, s in specs.items():
        if s.is_constant:
            out[n] = s.config["value"]
        elif n in optuna_params:
            v = optuna_params[n]
            if s.distribution == "categorical":
                v = decode(s, v)
            elif s.distribution in ("q_uniform", "q_log_uniform_values"):
                v = _quantize(v, s.config.get("q", 1.0))
            out[n] = v
    return out
