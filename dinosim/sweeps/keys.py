"""Check that a sweep only names config keys that exist, so a typo fails before any trial runs.

A parameter ``section.key[.sub...]`` or ``stageN.section.key`` is known when the config schema
(:func:`dinosim.config.schema.section_keys`, read from the code that consumes each section) accepts it for the
species; ``seed`` is the run's seed. Species and stages come from the sweep command (``--species X``, ``--stage N``,
``curriculum --stages 1-3``); a stage-scoped key must target a stage the command runs.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from dinosim.species import SPECIES, STAGES
from dinosim.sweeps.macros import option_values

_STAGE_PREFIX = re.compile(r"^(?:stage)?(\d+)\.(.+)$")
TOP_LEVEL_KEYS = ("seed",)


def command_target(command: Iterable[Any]) -> tuple[str, tuple[int, ...]]:
    """(species, stages) that a sweep command trains (species defaults to the CLI's, velociraptor).

    ``train`` without ``--stage`` or an unparsable ``--stages`` give all stages (the check is then lenient).
    """
    toks = [str(t) for t in command]
    species = (option_values(toks, "--species") or ["velociraptor"])[0]
    if "curriculum" in toks:
        spec = (option_values(toks, "--stages") or ["1-3"])[0]
        m = re.fullmatch(r"(\d)-(\d)", spec.strip())
        if m:
            return species, tuple(range(int(m.group(1)), int(m.group(2)) + 1))
        if re.fullmatch(r"\d(,\d)*", spec.strip()):
            return species, tuple(int(s) for s in spec.split(","))
        return species, STAGES
    stage = option_values(toks, "--stage")
    if stage and stage[0].isdigit():
        return species, (int(stage[0]),)
    return species, STAGES


def key_known(dotted: str, species: str) -> bool:
    """Whether ``section.key[.sub...]`` (no stage prefix) is a config key of ``species``."""
    from dinosim.config.schema import SECTIONS, section_keys

    section, _, rest = dotted.partition(".")
    if section not in SECTIONS or not rest:
        return False
    specs: Optional[dict[str, Any]] = section_keys(section, species)
    for part in rest.split("."):
        if specs is None:  # a table whose keys are free-form (e.g. optimizer_kwargs): anything below is allowed
            return True
        spec = specs.get(part)
        if spec is None:
            return False
        specs = spec.children if spec.children is not None else (None if "dict" in spec.types else {})
    return True


def unknown_keys(names: Iterable[str], species: str, stages: tuple[int, ...]) -> list[str]:
    """The parameter names that are not config keys of ``species`` (or target a stage the command skips)."""
    if species not in SPECIES:
        return [f"(unknown species {species!r})"]
    bad: list[str] = []
    for name in names:
        if name in TOP_LEVEL_KEYS:
            continue
        m = _STAGE_PREFIX.match(name)
        if m and m.group(1).isdigit() and "." in m.group(2):
            if int(m.group(1)) not in stages or not key_known(m.group(2), species):
                bad.append(name)
        elif not key_known(name, species):
            bad.append(name)
    return bad


def check_keys(spec: Any) -> None:
    """Raise ConfigError naming every sweep parameter (and ``--skip-if`` key) the command's config does not have.

    ``spec`` is a :class:`dinosim.sweeps.yaml_spec.SweepSpec`. Skipped when the command does not run dinosim
    (no ``train``/``curriculum`` token), e.g. a test program.
    """
    from dinosim.errors import ConfigError

    toks = [str(t) for t in spec.command]
    if "train" not in toks and "curriculum" not in toks:
        return
    species, stages = command_target(toks)
    if species not in SPECIES:
        raise ConfigError(f"{spec.path}: the command trains --species {species!r}, which is not a species "
                          f"(choose from {', '.join(sorted(SPECIES))})")
    names = list(spec.parameters)
    for c in spec.constraints:
        names += sorted(c.keys)
    bad = unknown_keys(dict.fromkeys(names), species, stages)
    if bad:
        raise ConfigError(f"{spec.path}: unknown config key(s) for {species} stage(s) "
                          f"{','.join(map(str, stages))}: {', '.join(bad)} (see `dinosim config keys`)")


def check_metric(spec: Any) -> None:
    """Raise ConfigError when a sweep of dinosim optimises a metric that no evaluation records (the offline engine
    would see no value, every trial would fail), or maximises one that is better lower (steps to a gate, a
    shortfall). Skipped when the command does not run dinosim."""
    from dinosim.config.validate import did_you_mean
    from dinosim.envs.rewards import TERMS
    from dinosim.errors import ConfigError
    from dinosim.sweeps.dry_runs import runs_dinosim
    from dinosim.training.metrics import (
        EVAL_COMPONENT_PREFIX,
        EVAL_SCALARS,
        LOWER_IS_BETTER,
        STAGE_END_SCALARS,
        sweep_metric_names,
    )

    if not runs_dinosim(spec):
        return
    names = sweep_metric_names(TERMS)
    if spec.metric not in names:
        raise ConfigError(f"{spec.path}: metric.name {spec.metric!r} is not a metric a sweep can optimise"
                          f"{did_you_mean(spec.metric, names)}; use one of {', '.join(EVAL_SCALARS)}, "
                          f"{EVAL_COMPONENT_PREFIX}<term> (terms: {', '.join(TERMS)}) or, at a stage's end, "
                          f"{', '.join(STAGE_END_SCALARS)}")
    if spec.metric in LOWER_IS_BETTER and spec.goal != "minimize":
        raise ConfigError(f"{spec.path}: metric.goal {spec.goal!r} would look for the most steps to a gate or the "
                          f"largest shortfall: {spec.metric} is better lower, use goal: minimize")
