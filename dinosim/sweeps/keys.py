"""Check that a sweep only names config keys that exist, so a typo fails before any trial runs.

A parameter ``section.key`` (or ``stageN.section.key``, or ``seed``) is known when it appears in one of the species'
stage TOML files (any stage for an unscoped key, stage N for a scoped one) or is a field of the training settings
dataclasses (``[curriculum]`` keys and the ``[ppo]``/``[sac]`` schedule keys). The species and stage come from the
sweep command (``--species X``, ``--stage N``); ``curriculum`` commands check all stages.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from typing import Any, Iterable, Optional

from dinosim.species import CONFIGS_DIR, SPECIES, STAGES
from dinosim.sweeps.macros import option_values

_STAGE_PREFIX = re.compile(r"^stage(\d+)\.(.+)$")
TOP_LEVEL_KEYS = ("seed", "n_envs", "algorithm")


def _flatten(prefix: str, table: dict[str, Any], out: set[str]) -> None:
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.add(key)
            _flatten(key, v, out)
        else:
            out.add(key)


def stage_keys(species: str, stage: int) -> set[str]:
    """Dotted keys of one stage: those in its TOML file plus the settings dataclass fields."""
    from dinosim.training.settings import CurriculumSettings, ScheduleSettings

    path = CONFIGS_DIR / species / SPECIES[species].stage_files[stage - 1]
    keys: set[str] = set()
    _flatten("", tomllib.loads(path.read_text(encoding="utf-8")), keys)
    keys |= {f"curriculum.{f.name}" for f in fields(CurriculumSettings)}
    for algo in ("ppo", "sac"):
        keys |= {f"{algo}.{f.name}" for f in fields(ScheduleSettings)}
    return keys


def command_target(command: Iterable[Any]) -> tuple[Optional[str], tuple[int, ...]]:
    """(species, stages) that a sweep command trains; (None, ()) when the command does not say."""
    toks = [str(t) for t in command]
    species = (option_values(toks, "--species") or [None])[0]
    stage_vals = option_values(toks, "--stage")
    if "curriculum" in toks:
        stages = tuple(int(s) for s in option_values(toks, "--stages")[:1][0].split(",")) if option_values(toks, "--stages") else STAGES
    elif stage_vals and stage_vals[0].isdigit():
        stages = (int(stage_vals[0]),)
    else:
        stages = ()
    return species, stages


def unknown_keys(names: Iterable[str], species: str, stages: tuple[int, ...]) -> list[str]:
    """The parameter names that are not config keys of ``species`` for the given stages."""
    if species not in SPECIES:
        return [f"(unknown species {species!r})"]
    per_stage = {s: stage_keys(species, s) for s in STAGES}
    active = stages or STAGES
    bad: list[str] = []
    for name in names:
        if name in TOP_LEVEL_KEYS:
            continue
        m = _STAGE_PREFIX.match(name)
        if m:
            st = int(m.group(1))
            if st not in per_stage or m.group(2) not in per_stage[st] or st not in active:
                bad.append(name)
        elif not any(name in per_stage[s] for s in active):
            bad.append(name)
    return bad
