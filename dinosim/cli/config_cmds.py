"""`dinosim config keys`: every valid config key, with its default and what it means."""

from __future__ import annotations

from typing import Optional

import click

from dinosim.config.checks import section_rules
from dinosim.config.rules import Rule
from dinosim.config.schema import NO_DEFAULT, SECTIONS, KeySpec, section_keys
from dinosim.config.toml_writer import value_text
from dinosim.species import SPECIES


@click.group()
def config() -> None:
    """Inspect the configuration schema."""


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
            click.echo(f"  {name}.{key}  ({types}, default {_default_text(spec)}{_rule_text(rules.get(key))})  "
                       f"{spec.description}")
            for child_key, child in sorted((spec.children or {}).items()):
                child_types = "|".join(sorted(child.types))
                click.echo(f"    {name}.{key}.{child_key}  ({child_types}, default {_default_text(child)}"
                           f"{_rule_text(policy_rules.get(child_key))})  {child.description}")
        click.echo("")


def _rule_text(rule: Optional[Rule]) -> str:
    return f"; {rule.describe()}" if rule is not None else ""
