"""``dinosim sweep export-best``: write a sweep's winning values into the stage TOML files, keeping their layout.

* Only swept parameters are exported (constants such as a sweep's shortened ``curriculum.timesteps`` are not);
  ``seed`` never is.
* ``stageN.section.key`` goes to stage N's file; an unscoped ``section.key`` goes to every stage the sweep command
  ran (``train --stage N``: stage N; ``curriculum``: each stage, as the override applied to each).
* Files: ``--to FILE`` names the file of the sweep's stage (the other stages' files are its siblings with their
  usual names); default: the species' committed files. ``--out PATH`` writes copies instead of editing in place: a
  file path when one file changes, else a folder.
* Editing uses tomlkit: comments, order and blank lines stay; each changed value keeps its old comment and gets
  ``sweep <name> #<trial>: <metric>=<value> (was <old>)``; ints stay ints where the file had an int and the value is
  integral, floats stay floats. A key missing from its table is appended to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dinosim.errors import ConfigError
from dinosim.runfolder import atomic_write_text
from dinosim.species import CONFIGS_DIR, SPECIES
from dinosim.sweeps.keys import command_target
from dinosim.sweeps.report import LoadedSweep, top_trials
from dinosim.sweeps.storage import trial_params

_STAGE = re.compile(r"^(?:stage)?(\d+)\.(.+)$")


@dataclass(frozen=True)
class Change:
    file: Path
    key: str  # dotted key inside the file, e.g. ppo.policy_kwargs.net_arch
    old: Any
    new: Any


def best_trial(loaded: LoadedSweep) -> Any:
    top = top_trials(loaded, 1)
    if not top:
        raise ConfigError(f"sweep {loaded.spec.name} has no complete trial to export")
    return top[0]


def plan_changes(loaded: LoadedSweep, to: Optional[Path] = None) -> tuple[dict[Path, dict[str, Any]], Any]:
    """{stage file: {dotted key: value}} for the best trial, and that trial."""
    trial = best_trial(loaded)
    species, stages = command_target(loaded.spec.command)
    if species not in SPECIES:
        raise ConfigError(f"unknown species {species!r} in the sweep command")
    files = SPECIES[species].stage_files
    base_dir = CONFIGS_DIR / species
    run_stage = stages[0] if len(stages) == 1 else None
    if to is not None:
        if len(stages) != 1:
            raise ConfigError("--to names one stage file; this sweep runs several stages (use --out DIR instead)")
        base_dir = to.parent

    def path_of(stage: int) -> Path:
        if to is not None and stage == run_stage:
            return to
        return base_dir / files[stage - 1]

    plan: dict[Path, dict[str, Any]] = {}
    params = trial_params(trial)
    for name, spec in loaded.spec.parameters.items():
        if spec.is_constant or name == "seed" or name not in params:
            continue
        m = _STAGE.match(name)
        if m and "." in m.group(2):
            targets, key = [int(m.group(1))], m.group(2)
        else:
            targets, key = list(stages), name
        for stage in targets:
            plan.setdefault(path_of(stage), {})[key] = params[name]
    return plan, trial


def _coerce_like(old: Any, new: Any) -> Any:
    if isinstance(old, bool) or isinstance(new, bool):
        return new
    if isinstance(old, float) and isinstance(new, int):
        return float(new)
    if isinstance(old, int) and isinstance(new, float) and new.is_integer():
        return int(new)
    return new


def apply_to_toml(text: str, values: dict[str, Any], note: str) -> tuple[str, list[tuple[str, Any, Any]]]:
    """Set dotted keys in TOML ``text`` (tomlkit), commenting each changed line; returns (text, [(key, old, new)])."""
    import tomlkit

    doc = tomlkit.parse(text)
    changed: list[tuple[str, Any, Any]] = []
    for dotted, value in values.items():
        *tables, key = dotted.split(".")
        container: Any = doc
        for t in tables:
            if t not in container:
                container[t] = tomlkit.table()
            container = container[t]
        old_item = container.get(key)
        old = old_item.unwrap() if hasattr(old_item, "unwrap") else old_item
        new = _coerce_like(old, value)
        if old is not None and old == new and type(old) is type(new):
            continue
        item = tomlkit.item(new)
        prior = old_item.trivia.comment.lstrip("#").strip() if hasattr(old_item, "trivia") else ""
        was = f" (was {_fmt(old)})" if old is not None else " (new key)"
        item.comment(f"{prior + ' | ' if prior else ''}{note}{was}")
        ws = old_item.trivia.comment_ws if hasattr(old_item, "trivia") and prior else ""
        item.trivia.comment_ws = ws or "  "
        container[key] = item
        changed.append((dotted, old, new))
    return tomlkit.dumps(doc), changed


def _fmt(v: Any) -> str:
    import tomlkit

    try:
        return tomlkit.item(v).as_string()
    except Exception:  # noqa: BLE001
        return repr(v)


def export_best(loaded: LoadedSweep, to: Optional[Path] = None, out: Optional[Path] = None) -> list[Change]:
    """Write the best trial's values (see the module docstring); returns every change made."""
    plan, trial = plan_changes(loaded, to)
    note = f"sweep {loaded.spec.name} #{trial.number}: {loaded.spec.metric}={trial.value:.6g}"
    if out is not None and len(plan) > 1 and out.suffix == ".toml":
        raise ConfigError(f"--out {out}: {len(plan)} stage files change; give a folder")
    edited: dict[Path, tuple[str, list[tuple[str, Any, Any]]]] = {}
    writes: list[tuple[Path, str]] = []  # every file is edited in memory first: a failure writes none of them
    for src, values in plan.items():
        try:
            text = src.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{src}: config file not found") from None
        edited[src] = apply_to_toml(text, values, note)
    _check_exported(loaded.spec.command, to, {src: new_text for src, (new_text, _) in edited.items()})
    changes: list[Change] = []
    for src, (new_text, changed) in edited.items():
        if out is None:
            dest = src
        elif out.suffix == ".toml":
            dest = out
        else:
            dest = out / src.name
        if changed or dest != src:
            writes.append((dest, new_text))
        changes += [Change(dest, k, o, n) for k, o, n in changed]
    for dest, new_text in writes:
        atomic_write_text(dest, new_text)  # a kill leaves the old or the new file, never half a committed TOML
    return changes


def _check_exported(command: list[Any], to: Optional[Path], texts: dict[Path, str]) -> None:
    """Resolve every edited stage file with the sweep command's species, algorithm and n_envs; ConfigError (and
    nothing written) when the winning values make a stage config invalid, e.g. a learning rate below the file's
    ``learning_rate_end``."""
    import shutil
    import tempfile

    from dinosim.config.resolve import resolve_run
    from dinosim.sweeps.macros import option_values

    species, stages = command_target(command)
    files = SPECIES[species].stage_files
    algorithm = (option_values(command, "--algorithm") or ["ppo"])[0]
    n_envs = (option_values(command, "--n-envs") or ["4"])[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / species
        shutil.copytree(CONFIGS_DIR / species, folder)
        checked = []
        for src, text in texts.items():
            stage = stages[0] if to is not None and src == to else files.index(src.name) + 1
            (folder / files[stage - 1]).write_text(text, encoding="utf-8")
            checked.append(stage)
        try:
            config = resolve_run(species, algorithm, tuple(sorted(checked)), n_envs=int(n_envs),
                                 config_dir=Path(tmp))
            for stage in config.stages:  # the budget a plain `train` of the exported stage would use
                config.check_budget(stage, config.curriculum(stage).timesteps)
        except (ConfigError, ValueError) as exc:
            message = str(exc).replace(str(folder), "<exported>")
            raise ConfigError(f"the best trial's values would make the stage config invalid, nothing was written: "
                              f"{message}") from None
