"""``dinosim diagnose``: name what went wrong in a run, with evidence and the overrides to try.

Layers: :mod:`.data` reads a run folder (run-log readers, TensorBoard only on demand), :mod:`.measure` turns it
into the shared measurements, :mod:`.rules_motion` / :mod:`.rules_task` are pure rules ``StageData -> Symptom | None``,
:mod:`.model` holds the symptom type and the schema-checked override builder, :mod:`.engine` runs the rules, ranks
and formats (text, JSON). The rules, thresholds and JSON schema are documented in docs/diagnose.md.
"""

from dinosim.tracking.diagnose.engine import (
    RULE_IDS,
    SCHEMA_VERSION,
    Diagnosis,
    diagnose,
    diagnose_stage,
    format_text,
)
from dinosim.tracking.diagnose.model import Symptom

__all__ = ["RULE_IDS", "SCHEMA_VERSION", "Diagnosis", "Symptom", "diagnose", "diagnose_stage", "format_text"]
