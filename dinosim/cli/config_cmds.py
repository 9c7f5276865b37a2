"""`dinosim config keys`: every valid config key, with its default and what it means; `dinosim config export`:
copies of the committed TOMLs to edit and use with ``--config-dir``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from dinosim.config.checks import section_rules
from dinosim.config.curriculum_rules import PPO_ONLY_KEYS
from dinosim.config.rules import Rule
from dinosim.config.schema import NO_DEFAULT, SECTIONS, KeySpec, section_keys
from dinosim.config.toml_writer import value_text
from dinosim.errors import DinosimError
from dinosim.species import BUILTIN_CONFIGS_DIR, CONFIG_DIR_ENV, SPECIES


@click.group()
def config() -> None:
    """Inspect the configuration schema; export the committed configs to edit."""


def _default_text(spec: KeySpec) -> str:
    if spec.default is NO_DEFAULT:
        return "-"
    if spec.default is None:
        return "unset"
    return value_text(spec.default)


@config.command()
@click.option("--species", type=click.Choice(sorted(SPECIES)), default="velociraptor", show_default=True)
@click.option("--section", type=click.Choice(SECTIONS), default=None, help="Only this section.")
def keys(species: str, section: Optional[str]) -> None:
    """List every valid key: section.key, types, default, description (read from the consuming code)."""
    for name in [section] if section else SECTIONS:
        click.echo(f"[{name}]")
        rules, policy_rules = section_rules(name, species)
        for key, spec in sorted(section_keys(name, species).items()):
            types = "|".join(sorted(spec.types))
            only = f" (PPO only: {PPO_ONLY_KEYS[key]})" if name == "curriculum" and key in PPO_ONLY_KEYS else ""
            click.echo(f"  {name}.{key}  ({types}, default {_default_text(spec)}{_rule_text(rules.get(key))})  "
                       f"{spec.description}{only}")
            for child_key, child in sorted((spec.children or {}).items()):
                child_types = "|".join(sorted(child.types))
                click.echo(f"    {name}.{key}.{child_key}  ({child_types}, default {_default_text(child)}"
                           f"{_rule_text(policy_rules.get(child_key))})  {child.description}")
        click.echo("")


def _rule_text(rule: Optional[Rule]) -> str:
    return f"; {rule.describe()}" if rule is not None else ""

@config.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--species", type=click.Choice(sorted(SPECIES)), default=None, help="Only this species [default: all].")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def export(directory: Path, species: Optional[str], force: bool) -> None:
    """Write the committed stage TOMLs to DIRECTORY/<species>/ to start your own configs from.

    Train with them by `--config-dir DIRECTORY` or by setting $DINOSIM_CONFIG_DIR=DIRECTORY.
    """
    names = [species] if species else sorted(SPECIES)
    pairs = [(BUILTIN_CONFIGS_DIR / name / file, directory / name / file)
             for name in names for file in SPECIES[name].stage_files]
    existing = [target for _, target in pairs if target.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise DinosimError(f"{existing[0]} already exists{more}; use --force to overwrite")
    for source, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    where = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
    click.echo(f"wrote {len(pairs)} files to {directory / where}/; use them with "
               f"--config-dir {directory} (or {CONFIG_DIR_ENV}={directory})")
