"""Resolve the configuration of a run: committed TOML per stage + overrides -> validated :class:`RunConfig`.

Data flow: ``read_toml`` each stage file -> check every section/key/type against :mod:`dinosim.config.schema` ->
apply overrides (global first, then stage-scoped; a table merges into the table there) -> fill defaults from the
consuming code -> each consumer's value rules and the combinations (:mod:`dinosim.config.checks`). Every problem
raises :class:`ConfigError` with one line naming the override or file line that set the value, and the key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence

from dinosim.config.algo_rules import inert_algo_keys
from dinosim.config.checks import (
    INHERITS_SAC,
    algorithm_values,
    drop_unread,
    inherit,
    network_change,
    network_of,
    not_read,
    run_option_problems,
    stage_budget_problems,
    stage_problems,
)
from dinosim.config.curriculum_rules import inert_curriculum_keys, warm_start_source
from dinosim.config.env_rules import inert_env_keys
from dinosim.config.loader import read_toml, stage_file
from dinosim.config.notes import cap_eval_envs, stage_note
from dinosim.config.origins import Origins, line_of
from dinosim.config.overrides import Override, ordered_for_application, parse_overrides
from dinosim.config.schema import ALGORITHM_SECTIONS, NO_DEFAULT, SECTIONS, KeySpec, section_keys
from dinosim.config.settings import CurriculumSettings, ScheduleSettings
from dinosim.config.toml_writer import dumps
from dinosim.config.validate import coerce, did_you_mean, unknown_key
from dinosim.errors import ConfigError
from dinosim.species import CONFIGS_DIR, SPECIES, STAGES

ALGORITHMS = ALGORITHM_SECTIONS
VEC_ENVS = ("dummy", "threads", "subproc")  # built by dinosim.training.builders.make_vec_env
DEFAULT_VEC_ENV = "threads"  # the README's "Defaults chosen by measurement"
_SCHEDULE_KEYS = {f.name for f in fields(ScheduleSettings)}


@dataclass
class RunConfig:
    """The validated configuration of every stage a command runs, plus run-wide settings."""

    species: str
    algorithm: str
    stages: tuple[int, ...]
    seed: int
    n_envs: int
    vec_env: str
    stage_configs: dict[int, dict[str, dict[str, Any]]]
    overrides: tuple[str, ...] = ()
    unread: tuple[str, ...] = ()  # stage-file values this algorithm does not read (``stage2.curriculum.key``);
    # left out of stage_configs; with ``capped`` (values lowered by resolution) told by notes(), not in to_dict()
    capped: tuple[str, ...] = ()

    def section(self, stage: int, name: str) -> dict[str, Any]:
        return self.stage_configs[stage].get(name, {})

    def algo_kwargs(self, stage: int) -> dict[str, Any]:
        """Constructor kwargs of the chosen algorithm: its section (for tqc/crossq, ``[sac]`` keys that the
        constructor accepts, then their own section) without schedule keys and unset values."""
        own = self.section(stage, self.algorithm)
        if self.algorithm in INHERITS_SAC:
            valid = section_keys(self.algorithm, self.species)
            own = inherit({k: v for k, v in self.section(stage, "sac").items() if k in valid}, own)
        return {k: copy.deepcopy(v) for k, v in own.items() if k not in _SCHEDULE_KEYS and v is not None}

    def schedule(self, stage: int) -> ScheduleSettings:
        own = self.section(stage, self.algorithm if self.algorithm == "ppo" else "sac")
        if self.algorithm in INHERITS_SAC:
            own = {**own, **self.section(stage, self.algorithm)}
        return ScheduleSettings(**{k: own[k] for k in _SCHEDULE_KEYS if k in own})

    def curriculum(self, stage: int) -> CurriculumSettings:
        return CurriculumSettings(**self.section(stage, "curriculum"))

    def network(self, stage: int) -> dict[str, Any]:
        """What fixes the shapes of the stage's policy weights (see :func:`dinosim.config.checks.network_of`)."""
        return network_of(self.stage_configs[stage], self.algorithm)

    def check_budget(self, stage: int, budget: int, warm_started: bool = True) -> None:
        """Raise ConfigError (one line naming the override that set the culprit, if one did) when ``budget`` steps
        are too few for ``stage`` (below one PPO rollout or the off-policy ``learning_starts``, below
        ``curriculum.eval_freq``, or shorter than its warm-up, ramp or critic warm-up; the last two count only when
        the stage is ``warm_started``). See :func:`dinosim.config.checks.stage_budget_problems`."""
        problems = stage_budget_problems(self.stage_configs[stage], self.algorithm, self.n_envs, budget, warm_started)
        if problems:
            key, text = problems[0]
            applied = [o for o in parse_overrides(list(self.overrides)) if o.stage in (None, stage)]
            raise ConfigError(f"{Origins(None, applied).of(key)}stage {stage}: {text}")

    def check_overrides_take_effect(self, warm_started: dict[int, bool]) -> None:
        """Raise ConfigError for an override that no stage it targets would use (``warm_started``: stage ->
        whether it starts from a previous policy); see :func:`dinosim.config.curriculum_rules.inert_curriculum_keys`
        and :func:`dinosim.config.algo_rules.inert_algo_keys`. Stage-file values are not checked: the committed
        files serve a whole curriculum, a single stage and every algorithm."""
        for override in parse_overrides(list(self.overrides)):
            whys = [self.inert(s, warm_started[s]).get((override.section, ".".join(override.path)))
                    for s in self.stages if override.stage in (None, s)]
            if whys and all(whys):
                raise ConfigError(f"override {override.raw!r} {whys[0]}")

    def inert(self, stage: int, warm_started: bool) -> dict[tuple[str, str], str]:
        """``{(section, key path): why it has no effect}`` of one stage's resolved values (tqc/crossq: the key
        under both sections they read)."""
        first = stage == self.stages[0]
        out = {("curriculum", k): why for k, why in
               inert_curriculum_keys(stage, self.section(stage, "curriculum"), warm_started, first).items()}
        out.update({("env", k): why for k, why in inert_env_keys(self.species, self.section(stage, "env")).items()})
        section, values = algorithm_values(self.stage_configs[stage], self.algorithm)
        for key, why in inert_algo_keys(section, values).items():
            out.update({(name, key): why for name in _reads(self.algorithm)})
        return out

    def warm_source(self, stage: int) -> Optional[int]:
        """The stage of this run whose final policy ``stage`` starts from (``curriculum.warm_start_stage``, by
        default the previous stage of the run); None: the run's first stage, or a stage set to start from scratch."""
        return warm_start_source(stage, self.stages, self.curriculum(stage).warm_start_stage)[0]

    def notes(self, warm_started: dict[int, bool]) -> list[str]:
        """One line per stage that has something to say (see :mod:`dinosim.config.notes`): values left out,
        lowered, or without effect in it (``warm_started``: stage -> whether it starts from a previous policy)."""
        out = []
        for stage in self.stages:
            inert = {f"{_reads(self.algorithm)[-1] if section in ALGORITHM_SECTIONS else section}.{key}": why
                     for (section, key), why in self.inert(stage, warm_started[stage]).items()
                     if not self._is_default(stage, section, key)}
            out.append(stage_note(stage, self.algorithm, self.unread, self.capped, inert))
        return [line for line in out if line]

    def _is_default(self, stage: int, section: str, key: str) -> bool:
        """Whether ``section.key`` holds its consumer's literal default (filled in, or set to the same value)."""
        spec = section_keys(section, self.species).get(key)  # None: a policy_kwargs.* key, set by a file or override
        return spec is not None and self.section(stage, section).get(key, spec.default) == spec.default

    def env_kwargs(self, stage: int) -> dict[str, Any]:
        return copy.deepcopy(self.section(stage, "env"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"run": {...}, "stage1": {"ppo": {...}, ...}, ...}`` (the layout of :meth:`to_toml`)."""
        data: dict[str, Any] = {"run": {
            "species": self.species, "algorithm": self.algorithm, "stages": list(self.stages),
            "seed": self.seed, "n_envs": self.n_envs, "vec_env": self.vec_env, "overrides": list(self.overrides),
        }}
        for stage in self.stages:
            data[f"stage{stage}"] = _without_none(self.stage_configs[stage])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        run = data["run"]
        stages = tuple(int(s) for s in run["stages"])
        return cls(
            species=run["species"], algorithm=run["algorithm"], stages=stages, seed=int(run["seed"]),
            n_envs=int(run["n_envs"]), vec_env=run["vec_env"],
            stage_configs={s: _without_none(data[f"stage{s}"]) for s in stages},
            overrides=tuple(run.get("overrides", ())),
        )

    def to_toml(self) -> str:
        """TOML that ``tomllib`` parses: a ``[run]`` table and ``[stageN.<section>]`` tables (unset values left out)."""
        return dumps(self.to_dict())


def _without_none(value: Any) -> Any:
    """A deep copy with ``None`` values (unset, not expressible in TOML) left out of tables."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def resolve_run(
    species: str,
    algorithm: str,
    stages: Sequence[int],
    overrides: Sequence[str] = (),
    *,
    seed: int = 0,
    n_envs: int = 4,
    vec_env: str = DEFAULT_VEC_ENV,
    config_dir: Path = CONFIGS_DIR,
) -> RunConfig:
    """Load, override, validate and complete the config of ``stages``. Raises ConfigError on any problem.

    The step budget is checked where the run starts (:meth:`RunConfig.check_budget`, called by the run's
    preflight), because ``--timesteps`` or a ``RunRequest`` built in code may replace ``curriculum.timesteps``.
    """
    if species not in SPECIES:
        raise ConfigError(f"unknown species {species!r}{did_you_mean(species, SPECIES)}")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algorithm!r}{did_you_mean(algorithm, ALGORITHMS)}")
    if vec_env not in VEC_ENVS:
        raise ConfigError(f"unknown vec env {vec_env!r}: choose from {', '.join(VEC_ENVS)}")
    option_problems = run_option_problems(seed, n_envs)
    if option_problems:
        raise ConfigError(option_problems[0][1])
    for stage in stages:
        if stage not in STAGES:
            raise ConfigError(f"stage {stage} is out of range: stages are {STAGES[0]}-{STAGES[-1]}")
    parsed = parse_overrides(list(overrides))
    _check_override_targets(parsed, species, tuple(stages), algorithm)
    configs, unread, capped = {}, [], []
    for stage in stages:
        path = stage_file(species, stage, config_dir)
        config = _load_stage(path, species)
        applied = [o for o in ordered_for_application(parsed) if o.stage in (None, stage)]
        for override in applied:
            try:
                _apply(config, override, species)
            except ConfigError as exc:
                message = str(exc)
                if not message.startswith("override "):
                    message = f"override {override.raw!r}: {message}"
                raise ConfigError(message) from None
        unread += [f"stage{stage}.{key}" for key in drop_unread(config, algorithm, species)]
        _fill_defaults(config, species, algorithm)
        _check_stage(config, stage, species, algorithm, n_envs, Origins(path, applied))
        capped += cap_eval_envs(config["curriculum"], stage, applied)
        _check_warm_start(configs, config, stage, tuple(stages), algorithm, Origins(path, applied))
        configs[stage] = config
    return RunConfig(species, algorithm, tuple(stages), seed, n_envs, vec_env, configs, tuple(overrides),
                     tuple(unread), tuple(capped))


def _reads(algorithm: str) -> tuple[str, ...]:
    """The algorithm sections a run of ``algorithm`` reads."""
    return ("sac", algorithm) if algorithm in INHERITS_SAC else (algorithm,)


def _check_override_targets(parsed: list[Override], species: str, stages: tuple[int, ...], algorithm: str) -> None:
    for override in parsed:
        why = not_read(override.section, override.path[0], algorithm, species)
        if why is not None:
            raise ConfigError(f"override {override.raw!r} sets {override.section}.{override.path[0]}, which "
                              f"--algorithm {algorithm} does not read ({why})")
        if override.section in ALGORITHM_SECTIONS and override.section not in _reads(algorithm):
            raise ConfigError(
                f"override {override.raw!r} sets [{override.section}], which --algorithm {algorithm} does not read "
                f"(it reads {', '.join(f'[{s}]' for s in _reads(algorithm))})"
            )
        if override.stage is not None:
            if override.stage not in STAGES:
                raise ConfigError(
                    f"override {override.raw!r}: stage {override.stage} is out of range ({STAGES[0]}-{STAGES[-1]})"
                )
            if override.stage not in stages:
                raise ConfigError(
                    f"override {override.raw!r} targets stage {override.stage}, which this command does not run "
                    f"(stages: {', '.join(map(str, stages))})"
                )
        if override.section not in SECTIONS:
            raise ConfigError(
                f"override {override.raw!r}: unknown section {override.section!r}"
                f"{did_you_mean(override.section, SECTIONS)}; sections are {', '.join(SECTIONS)}"
            )


def _load_stage(path: Path, species: str) -> dict[str, dict[str, Any]]:
    data = read_toml(path)
    config: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{line_of(path, section)}: unknown section [{section}]{did_you_mean(section, SECTIONS)}"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{line_of(path, section)}: {section} must be a table [{section}]")
        keys = section_keys(section, species)
        checked = {}
        for key, value in table.items():
            spec = keys.get(key)
            if spec is None:
                raise ConfigError(f"{line_of(path, key)}: {unknown_key(f'[{section}]', key, keys)}")
            try:
                checked[key] = coerce(f"{section}.{key}", spec, value)
            except ConfigError as exc:
                raise ConfigError(f"{line_of(path, key)}: {exc}") from None
        config[section] = checked
    return config


def _apply(config: dict[str, dict[str, Any]], override: Override, species: str) -> None:
    keys = section_keys(override.section, species)
    where = f"override {override.raw!r}"
    head, *rest = override.path
    spec = keys.get(head)
    if spec is None:
        raise ConfigError(f"{where}: {unknown_key(f'[{override.section}]', head, keys)}")
    table = config.setdefault(override.section, {})
    if not rest:
        _store(table, head, coerce(override.dotted, spec, override.value), nested=False)
        return
    if "dict" not in spec.types:
        raise ConfigError(f"{where}: {override.section}.{head} is not a table, it has no key {rest[0]!r}")
    target = table.get(head)
    if not isinstance(target, dict):
        target = table[head] = {}
    specs: Optional[dict[str, KeySpec]] = spec.children
    path_so_far = f"{override.section}.{head}"
    for i, part in enumerate(rest):
        last = i == len(rest) - 1
        child = specs.get(part) if specs is not None else None
        if specs is not None and child is None:
            raise ConfigError(f"{where}: {unknown_key(path_so_far, part, specs)}")
        path_so_far = f"{path_so_far}.{part}"
        if last and override.value is None:
            target.pop(part, None)
        elif last:
            plain = KeySpec(part, NO_DEFAULT, frozenset({"int", "float", "bool", "str", "list", "dict", "none"}), "")
            _store(target, part, coerce(path_so_far, child or plain, override.value), nested=True)
        else:
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                nxt = target[part] = {}
            target, specs = nxt, (child.children if child is not None else None)


def _store(table: dict[str, Any], key: str, value: Any, nested: bool) -> None:
    """Set ``table[key]``; a table value merges into the table already there (key by key, recursively), and
    ``None`` inside a table removes the key (its consumer's default applies)."""
    if value is None and nested:
        table.pop(key, None)
    elif isinstance(value, dict):
        if not isinstance(table.get(key), dict):
            table[key] = {}
        for k, v in value.items():
            _store(table[key], k, v, nested=True)
    else:
        table[key] = value


def _fill_defaults(config: dict[str, dict[str, Any]], species: str, algorithm: str) -> None:
    """Complete the sections the run uses with the consuming code's literal defaults."""
    inherits_sac = algorithm in INHERITS_SAC  # tqc/crossq take [sac] values, then their own section's
    used = ["env", "curriculum"] + (["sac"] if inherits_sac else []) + [algorithm]
    for section in used:
        table = config.setdefault(section, {})
        given_by_sac = config["sac"] if inherits_sac and section == algorithm else {}
        for name, spec in section_keys(section, species).items():
            if name in given_by_sac or not_read(section, name, algorithm, species):
                continue
            if name not in table and spec.default is not NO_DEFAULT and spec.default is not None:
                table[name] = copy.deepcopy(spec.default)


def _check_stage(config: dict[str, dict[str, Any]], stage: int, species: str, algorithm: str, n_envs: int,
                 origin: Origins) -> None:
    where = f"stage {stage}"
    ppo = config.get("ppo", {})
    if algorithm == "ppo":
        n_steps, batch = ppo.get("n_steps", 2048), ppo.get("batch_size", 64)
        if n_steps >= 1 and batch >= 1 and (n_steps * n_envs) % batch:
            raise ConfigError(
                f"{origin.of('ppo.n_steps')}{where}: ppo.n_steps * n_envs = {n_steps} * {n_envs} = "
                f"{n_steps * n_envs} is not a multiple of ppo.batch_size = {batch}"
            )
    problems = stage_problems(config, species, algorithm, n_envs)
    if problems:
        key, text = problems[0]
        raise ConfigError(f"{origin.of(key)}{where}: {text}")


def _check_warm_start(earlier: dict[int, dict[str, dict[str, Any]]], config: dict[str, dict[str, Any]], stage: int,
                      stages: tuple[int, ...], algorithm: str, origin: Origins) -> None:
    """``curriculum.warm_start_stage`` names a stage this run trains before ``stage`` (or 0), and the weights of
    the stage that ``stage`` starts from fit its network."""
    source, problem = warm_start_source(stage, stages, config.get("curriculum", {}).get("warm_start_stage"))
    if problem:
        raise ConfigError(f"{origin.of('curriculum.warm_start_stage')}stage {stage}: {problem}")
    if source is None:
        return
    change = network_change(network_of(earlier[source], algorithm), network_of(config, algorithm))
    if change is not None:
        key, values = change
        dotted = f"{_reads(algorithm)[-1]}.{key}"
        raise ConfigError(f"{origin.of(dotted)}stage {stage}: {dotted} differs from stage {source}'s "
                          f"({values}): a stage starts from stage {source}'s weights, which must have the same "
                          "shapes; use one network in every stage")
