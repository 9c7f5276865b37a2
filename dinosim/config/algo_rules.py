"""Rules for the ``[ppo]``, ``[sac]``, ``[tqc]`` and ``[crossq]`` values: what the SB3 / sb3-contrib constructors
accept and what trains sensibly, checked before anything is built (standard library only).

Which keys exist comes from the constructors' signatures (:mod:`dinosim.config.schema`); this module says which
values of those keys are good. A key of the schema without a rule here is only type-checked; the test suite
requires a rule for every numeric key. Combinations within one section (a learning rate that would rise, a replay
buffer option that SB3 refuses with another) are checked by :func:`algo_combination_problems`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Optional

from dinosim.config.rules import (
    AnyOf,
    Flag,
    LayerSizes,
    Number,
    OneOf,
    Ordered,
    Problem,
    Rule,
    Table,
    Unsettable,
    message,
    table_problems,
)

MAX_BUFFER = 10_000_000  # transitions (or rollout steps x envs): above this the buffers do not fit in memory

_LR = Number(0.0, 1.0, lo_open=True)
_GAMMA = Number(0.0, 1.0, lo_open=True)
_POS_INT = Number(1, integer=True)
_SDE_FREQ = Number(-1, integer=True)
_OPTIMIZER_KWARGS = Table({  # torch.optim.Adam, the optimizer of every SB3 policy (lr comes from learning_rate)
    "eps": Number(0.0, 1.0, lo_open=True),
    "weight_decay": Number(0.0, 1.0),
    "betas": Ordered(Number(0.0, 1.0, hi_open=True), increasing=False),
    "amsgrad": Flag(),
}, why="the optimizer is torch.optim.Adam")
_NO_EXTRACTOR_KWARGS = Table({}, why="the default FlattenExtractor takes no arguments")


def _policy_rules(net_keys: tuple[str, ...]) -> dict[str, Rule]:
    return {
        "net_arch": LayerSizes(keys=net_keys),
        "log_std_init": Number(-20.0, 2.0),
        "ortho_init": Flag(),
        "full_std": Flag(),
        "use_expln": Flag(),
        "squash_output": Flag(only=False, why="SB3 allows it only with gSDE, which sets it itself"),
        "share_features_extractor": Flag(),
        "normalize_images": Flag(),
        "optimizer_kwargs": _OPTIMIZER_KWARGS,
        "features_extractor_kwargs": _NO_EXTRACTOR_KWARGS,
        "use_sde": Unsettable("the algorithm passes its own use_sde to the policy; set <algorithm>.use_sde"),
        "clip_mean": Number(0.0, lo_open=True),
        "n_critics": Number(1, 10, integer=True),
        "n_quantiles": Number(1, 100, integer=True),
        "batch_norm": Flag(),
        "batch_norm_eps": Number(0.0, 1.0, lo_open=True),
        "batch_norm_momentum": Number(0.0, 1.0, lo_open=True),
        "renorm_warmup_steps": Number(0, integer=True),
    }


class TrainFreq(Rule):
    """SB3's ``train_freq``: a positive int (steps), or ``[n, "step"]`` / ``[n, "episode"]``."""

    def problem(self, value: Any) -> Optional[str]:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return None if value >= 1 else f"must be {self.describe()}"
        if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
                and not isinstance(value[0], bool) and value[0] >= 1 and value[1] in ("step", "episode")):
            return None
        return f"must be {self.describe()}"

    def describe(self) -> str:
        return 'an integer >= 1 or [n, "step"] / [n, "episode"] with n >= 1'


class EntCoef(Rule):
    """SAC's ``ent_coef``: a number > 0, ``"auto"`` (learned, starting at 1) or ``"auto_X"`` (learned from X > 0)."""

    def problem(self, value: Any) -> Optional[str]:
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None if math.isfinite(value) and value > 0 else f"must be {self.describe()}"
        if isinstance(value, str):
            match = re.fullmatch(r"auto(?:_(.+))?", value)
            if match and match.group(1) is None:
                return None
            try:
                start = float(match.group(1)) if match else math.nan
            except ValueError:
                start = math.nan
            if math.isfinite(start) and start > 0:
                return None
        return f"must be {self.describe()}"

    def describe(self) -> str:
        return 'a number > 0, "auto" or "auto_X" with a number X > 0 (the starting value)'


_SCHEDULE_RULES: dict[str, Rule] = {
    "learning_rate_end": Number(0.0, 1.0),
    "lr_schedule": OneOf(("linear", "cosine"), "a schedule shape"),
    "lr_decay_timesteps": Number(1, 10**12, integer=True),
}

PPO_RULES: dict[str, Rule] = {
    "learning_rate": _LR,
    "n_steps": Number(1, MAX_BUFFER, integer=True),
    "batch_size": Number(2, MAX_BUFFER, integer=True),
    "n_epochs": Number(1, 1000, integer=True),
    "gamma": _GAMMA,
    "gae_lambda": Number(0.0, 1.0),
    "clip_range": Number(0.0, 1.0, lo_open=True),
    "clip_range_vf": Number(0.0, lo_open=True),
    "clip_range_end": Number(0.0, 1.0),
    "normalize_advantage": Flag(),
    "ent_coef": Number(0.0, 1.0),
    "vf_coef": Number(0.0, 10.0, lo_open=True),
    "max_grad_norm": Number(0.0, lo_open=True),
    "use_sde": Flag(),
    "sde_sample_freq": _SDE_FREQ,
    "rollout_buffer_kwargs": Table({}, why="the rollout buffer's arguments are set by PPO"),
    "target_kl": Number(0.0, lo_open=True),
    "stats_window_size": _POS_INT,
    **_SCHEDULE_RULES,
}

OFF_POLICY_RULES: dict[str, Rule] = {
    "learning_rate": _LR,
    "buffer_size": Number(1, MAX_BUFFER, integer=True),
    "learning_starts": Number(0, integer=True),
    "batch_size": Number(1, MAX_BUFFER, integer=True),
    "tau": Number(0.0, 1.0, lo_open=True),
    "gamma": _GAMMA,
    "train_freq": TrainFreq(),
    "gradient_steps": AnyOf([Number(1, 10_000, integer=True), OneOf((-1,), "-1")]),
    "replay_buffer_kwargs": Table({"handle_timeout_termination": Flag()},
                                  why="the other replay buffer arguments are set by the algorithm"),
    "optimize_memory_usage": Flag(),
    "n_steps": Number(1, 1000, integer=True),
    "ent_coef": EntCoef(),
    "target_update_interval": _POS_INT,
    "target_entropy": AnyOf([OneOf(("auto",), '"auto"'), Number()]),
    "use_sde": Flag(),
    "sde_sample_freq": _SDE_FREQ,
    "use_sde_at_warmup": Flag(),
    "stats_window_size": _POS_INT,
    "top_quantiles_to_drop_per_net": Number(0, integer=True),
    "policy_delay": _POS_INT,
    **_SCHEDULE_RULES,
}

ALGORITHM_RULES: dict[str, dict[str, Rule]] = {
    "ppo": PPO_RULES, "sac": OFF_POLICY_RULES, "tqc": OFF_POLICY_RULES, "crossq": OFF_POLICY_RULES,
}
POLICY_RULES: dict[str, dict[str, Rule]] = {
    "ppo": _policy_rules(("pi", "vf")), "sac": _policy_rules(("pi", "qf")),
    "tqc": _policy_rules(("pi", "qf")), "crossq": _policy_rules(("pi", "qf")),
}


def algo_problems(algorithm: str, section: str, values: Mapping[str, Any]) -> list[Problem]:
    """Problems of the keys of one algorithm section (``section`` names it in messages)."""
    out = table_problems(section, ALGORITHM_RULES[algorithm], values)
    policy = values.get("policy_kwargs")
    if isinstance(policy, dict):
        out += table_problems(f"{section}.policy_kwargs", POLICY_RULES[algorithm], policy)
    return out


def algo_combination_problems(algorithm: str, section: str, values: Mapping[str, Any], n_envs: int) -> list[Problem]:
    """Problems between keys of the merged constructor arguments of ``algorithm`` (``values``) and ``n_envs``."""
    out: list[Problem] = []
    out += _rising(section, "learning_rate", values, 3e-4)
    if algorithm == "ppo":
        out += _rising(section, "clip_range", values, 0.2)
        rollout = int(values.get("n_steps", 2048)) * n_envs
        if rollout > MAX_BUFFER:
            out.append((f"{section}.n_steps", f"{section}.n_steps * n_envs = {rollout} is above {MAX_BUFFER}: the "
                        "rollout buffer would not fit in memory"))
        if values.get("normalize_advantage", True) and rollout < 2:
            out.append((f"{section}.n_steps", f"{section}.n_steps * n_envs must be at least 2 with "
                        f"normalize_advantage (got {rollout})"))
        return out
    policy = values.get("policy_kwargs") or {}
    if values.get("optimize_memory_usage"):
        buffer_kwargs = values.get("replay_buffer_kwargs") or {}
        if buffer_kwargs.get("handle_timeout_termination", True):
            out.append((f"{section}.optimize_memory_usage", f"{section}.optimize_memory_usage = true needs "
                        f"{section}.replay_buffer_kwargs = {{handle_timeout_termination = false}} (SB3 refuses both)"))
        if int(values.get("n_steps", 1)) > 1:
            out.append((f"{section}.optimize_memory_usage", f"{section}.optimize_memory_usage = true does not work "
                        f"with {section}.n_steps > 1 (the n-step replay buffer)"))
    train_freq = values.get("train_freq")
    if isinstance(train_freq, list) and train_freq[1:] == ["episode"] and n_envs > 1:
        out.append((f"{section}.train_freq", f"{section}.train_freq = {train_freq!r} counts episodes, which SB3 "
                    f"allows with one env only (n_envs = {n_envs}); use --n-envs 1 or a step count"))
    if algorithm == "tqc":
        drop, quantiles = values.get("top_quantiles_to_drop_per_net", 2), policy.get("n_quantiles", 25)
        if isinstance(drop, int) and isinstance(quantiles, int) and drop >= quantiles:
            out.append((f"{section}.top_quantiles_to_drop_per_net",
                        f"{section}.top_quantiles_to_drop_per_net = {drop} must be below "
                        f"{section}.policy_kwargs.n_quantiles = {quantiles}: no quantile would be left"))
    return out


def _rising(section: str, key: str, values: Mapping[str, Any], default: float) -> list[Problem]:
    start, end = values.get(key, default), values.get(f"{key}_end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end > start:
        dotted = f"{section}.{key}_end"
        reason = (f"is above {section}.{key} = {start!r}: the schedule would rise during training; set {dotted} "
                  f"<= {key} (or None for a constant {key})")
        return [(f"{section}.{key}|{dotted}", message(dotted, end, reason))]
    return []


_SDE_ONLY = ("sde_sample_freq", "use_sde_at_warmup", "policy_kwargs.full_std", "policy_kwargs.use_expln",
             "policy_kwargs.clip_mean")
"""Keys (paths inside an algorithm section) that SB3 reads only with ``use_sde = true``."""


def inert_algo_keys(section: str, values: Mapping[str, Any]) -> dict[str, str]:
    """``{key path: why its value has no effect}`` for set values of one merged algorithm section that SB3 would
    ignore: a schedule shape without an end value, gSDE options without gSDE, a target entropy with a fixed
    ``ent_coef``."""
    policy = values.get("policy_kwargs") or {}
    present = {**{k: v for k, v in values.items() if k != "policy_kwargs"},
               **{f"policy_kwargs.{k}": v for k, v in policy.items()}}
    out: dict[str, str] = {}
    for key in ("lr_schedule", "lr_decay_timesteps"):
        if values.get("learning_rate_end") is None and present.get(key) is not None:
            out[key] = f"has no effect: {section}.learning_rate_end is not set, so the rate is constant"
    if not values.get("use_sde"):
        for key in _SDE_ONLY:
            if present.get(key) is not None:
                out[key] = f"has no effect: SB3 reads it only with {section}.use_sde = true"
    ent_coef = values.get("ent_coef")
    if (present.get("target_entropy") is not None and isinstance(ent_coef, (int, float))
            and section != "ppo"):
        out["target_entropy"] = (f"has no effect: {section}.ent_coef = {ent_coef!r} is fixed; the target entropy "
                                 "is only used to learn it (\"auto\")")
    return out
