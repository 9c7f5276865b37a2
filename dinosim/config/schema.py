"""Which keys each config section accepts, read from the code that consumes them.

- ``[ppo]``, ``[sac]``, ``[tqc]``, ``[crossq]``: the SB3 / sb3-contrib algorithm constructors (parsed from the
  installed source, see :mod:`dinosim.config.signatures`) plus our :class:`ScheduleSettings` keys; their
  ``policy_kwargs`` keys come from the matching policy constructor.
- ``[env]``: the species' environment constructor.
- ``[curriculum]``: :class:`CurriculumSettings`.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from dinosim.config.settings import CurriculumSettings, ScheduleSettings, field_comments
from dinosim.config.signatures import NO_DEFAULT, Param, annotation_types, module_root, read_init_params
from dinosim.species import SPECIES, module_source_path

ALGORITHM_SECTIONS = ("ppo", "sac", "tqc", "crossq")
SECTIONS = ALGORITHM_SECTIONS + ("env", "curriculum")

# (package, module path inside it, algorithm class, policy module path, policy class)
_ALGORITHMS: dict[str, tuple[str, str, str, str, str]] = {
    "ppo": ("stable_baselines3", "ppo/ppo.py", "PPO", "common/policies.py", "ActorCriticPolicy"),
    "sac": ("stable_baselines3", "sac/sac.py", "SAC", "sac/policies.py", "SACPolicy"),
    "tqc": ("sb3_contrib", "tqc/tqc.py", "TQC", "tqc/policies.py", "TQCPolicy"),
    "crossq": ("sb3_contrib", "crossq/crossq.py", "CrossQ", "crossq/policies.py", "CrossQPolicy"),
}

# Constructor arguments that the training code sets itself; a config may not set them.
_SET_BY_TRAINING = {
    "policy", "env", "tensorboard_log", "verbose", "seed", "device", "_init_setup_model",
    "observation_space", "action_space", "lr_schedule", "render_mode",
}


@dataclass(frozen=True)
class KeySpec:
    """One valid config key: its default (NO_DEFAULT when none), the types it admits and what it means."""

    name: str
    default: Any
    types: frozenset[str]
    description: str
    children: Optional[dict[str, "KeySpec"]] = None  # for dict keys whose own keys are known (policy_kwargs)


def _from_param(param: Param) -> KeySpec:
    return KeySpec(param.name, param.default, param.types, param.description)


def _settable(params: dict[str, Param]) -> dict[str, KeySpec]:
    return {n: _from_param(p) for n, p in params.items() if n not in _SET_BY_TRAINING and p.types - {"none"}}


def _dataclass_keys(cls: type) -> dict[str, KeySpec]:
    comments = field_comments(cls)
    specs = {}
    for f in fields(cls):
        default = f.default if f.default is not MISSING else NO_DEFAULT
        types = annotation_types(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        specs[f.name] = KeySpec(f.name, default, types, comments.get(f.name, ""))
    return specs


@lru_cache(maxsize=None)
def algorithm_keys(algorithm: str) -> dict[str, KeySpec]:
    """Valid keys of ``[<algorithm>]``: the constructor's settable arguments plus our schedule keys."""
    package, module, cls, policy_module, policy_cls = _ALGORITHMS[algorithm]
    root = module_root(package)
    if root is None:
        raise ModuleNotFoundError(f"{package} is not installed; `pip install -e .` installs it")
    keys = _settable(read_init_params(root / module, cls))
    policy_keys = _settable(read_init_params(root / policy_module, policy_cls))
    keys["policy_kwargs"] = KeySpec(
        "policy_kwargs", NO_DEFAULT, frozenset({"dict"}),
        f"keyword arguments of {policy_cls} (net_arch, log_std_init, ...)", policy_keys,
    )
    schedule = _dataclass_keys(ScheduleSettings)
    if algorithm != "ppo":
        schedule.pop("clip_range_end")
    keys.update(schedule)
    return keys


def env_source(species: str) -> tuple[Path, str]:
    """Source file and class name of a species' environment."""
    info = SPECIES[species]
    return module_source_path(info.env_module), info.env_class


@lru_cache(maxsize=None)
def env_keys(species: str) -> dict[str, KeySpec]:
    """Valid keys of ``[env]``: the keyword arguments of the species' environment constructor."""
    path, cls = env_source(species)
    return _settable(read_init_params(path, cls))


@lru_cache(maxsize=None)
def curriculum_keys() -> dict[str, KeySpec]:
    """Valid keys of ``[curriculum]``: the fields of :class:`CurriculumSettings`."""
    return _dataclass_keys(CurriculumSettings)


def section_keys(section: str, species: str) -> dict[str, KeySpec]:
    """Valid keys of a section for a species."""
    if section in ALGORITHM_SECTIONS:
        return algorithm_keys(section)
    if section == "env":
        return env_keys(species)
    if section == "curriculum":
        return curriculum_keys()
    raise KeyError(section)
