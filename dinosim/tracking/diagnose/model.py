"""Symptoms and the ``--override`` suggestions attached to them.

A :class:`Symptom` is one finding of one rule on one stage: a stable ``id`` (``<category>.<name>``), a confidence
in (0, 1], the evidence (human lines plus the numbers behind them) and overrides to try. Overrides are built by
:class:`Suggest` from the stage's own resolved config and checked against the config schema of the run's species
(:func:`dinosim.config.schema.section_keys`): a key the species or algorithm does not accept is never suggested.
Each override is stage-scoped (``stageN.section.key=value``) so it can be pasted into ``train``/``curriculum``/a
sweep as is.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from dinosim.config.schema import section_keys
from dinosim.config.toml_writer import value_text
from dinosim.species import SPECIES
from dinosim.tracking.diagnose.data import StageData

CATEGORIES = ("balance", "locomotion", "behaviour", "algorithm")


@dataclass
class Symptom:
    """One rule's finding on one stage (see the module docstring); ``numbers`` are JSON numbers or None.
    ``id`` is set by the :func:`rule` decorator of the rule that found it."""

    stage: int
    confidence: float
    summary: str
    evidence: list[str]
    numbers: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    id: str = ""

    @property
    def category(self) -> str:
        return self.id.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "stage": self.stage,
                "confidence": round(float(self.confidence), 3), "summary": self.summary,
                "evidence": list(self.evidence), "numbers": {k: _json_number(v) for k, v in self.numbers.items()},
                "overrides": list(self.overrides)}


Rule = Callable[[StageData], Optional[Symptom]]


def rule(symptom_id: str) -> Callable[[Rule], Rule]:
    """Mark a rule function with the id (``<category>.<name>``) of the symptom it finds; the id is defined here
    only, and stamped on every :class:`Symptom` the rule returns (``rule_fn.symptom_id`` reads it back)."""
    category = symptom_id.split(".", 1)[0]
    if category not in CATEGORIES:
        raise ValueError(f"symptom id {symptom_id!r}: category must be one of {CATEGORIES}")

    def mark(fn: Rule) -> Rule:
        @functools.wraps(fn)
        def run(data: StageData) -> Optional[Symptom]:
            found = fn(data)
            if found is not None:
                found.id = symptom_id
            return found

        run.symptom_id = symptom_id  # type: ignore[attr-defined]
        return run

    return mark


def confidence(excess: float, evals: int = 3, needed: int = 3) -> float:
    """Confidence of a finding: 0.5 at the threshold rising to 1 at twice past it (``excess`` = how far past the
    threshold, as a fraction of it, >= 0), scaled down when fewer than ``needed`` evaluations back it."""
    base = 0.5 + 0.5 * min(max(excess, 0.0), 1.0)
    support = min(1.0, max(evals, 1) / max(needed, 1))
    return round(base * (0.6 + 0.4 * support), 3)


def nice(value: float) -> float | int:
    """``value`` rounded to 3 significant figures (ints stay ints)."""
    if isinstance(value, int) or value == 0 or not math.isfinite(value):
        return value
    digits = 2 - int(math.floor(math.log10(abs(value))))
    return round(value, digits) if digits > 0 else float(round(value, digits))


class Suggest:
    """Builds validated, stage-scoped overrides for one stage (see the module docstring)."""

    def __init__(self, data: StageData) -> None:
        self.data = data
        self.out: list[str] = []

    def _valid(self, section: str, key: str) -> bool:
        try:
            keys = section_keys(section, self.data.species)
        except (KeyError, ModuleNotFoundError):
            return False
        head, _, child = key.partition(".")
        spec = keys.get(head)
        if spec is None:
            return False
        return not child or (spec.children is not None and child in spec.children)

    def add(self, section: str, key: str, value: Any) -> "Suggest":
        """Append ``stageN.section.key=value`` unless the key is invalid for this species/algorithm or already set."""
        if value is None or not self._valid(section, key):
            return self
        if isinstance(value, float):
            value = nice(value)
        text = f"stage{self.data.stage}.{section}.{key}={value_text(value)}"
        if not any(o.split("=", 1)[0] == text.split("=", 1)[0] for o in self.out):
            self.out.append(text)
        return self

    def env(self, key: str, value: Any) -> "Suggest":
        return self.add("env", key, value)

    def algo(self, key: str, value: Any) -> "Suggest":
        return self.add(self.data.algo_section, key, value)

    def policy(self, key: str, value: Any) -> "Suggest":
        return self.add(self.data.algo_section, f"policy_kwargs.{key}", value)

    def curriculum(self, key: str, value: Any) -> "Suggest":
        return self.add("curriculum", key, value)

    def scale_env(self, key: str, factor: float, if_zero: Optional[float] = None) -> "Suggest":
        """``key`` times ``factor``; ``if_zero`` (derived by the rule from other weights) when it is 0 or unset."""
        current = self.data.env.get(key)
        if isinstance(current, (int, float)) and not isinstance(current, bool) and current != 0:
            return self.env(key, float(current) * factor)
        return self.env(key, if_zero) if if_zero is not None else self

    def scale_algo(self, key: str, factor: float) -> "Suggest":
        current = self.data.algo(key)
        if isinstance(current, (int, float)) and not isinstance(current, bool) and current != 0:
            return self.algo(key, float(current) * factor)
        return self


def behaviour_keys(species: str) -> dict[str, str]:
    """``{"bonus": ..., "approach": ..., "proximity": ...}``: the species' own stage-3 weight keys
    (:attr:`dinosim.species.Species.target_weights`), those its ``[env]`` schema accepts."""
    names = SPECIES[species].target_weights if species in SPECIES else ()
    valid = section_keys("env", species) if species in SPECIES else {}
    return {role: key for role, key in zip(("bonus", "approach", "proximity"), names) if key in valid}


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return nice(value) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_json_number(v) for v in value]
    return value
