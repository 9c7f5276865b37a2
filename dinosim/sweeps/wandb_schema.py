"""Validate a sweep config with W&B's own JSON schema, as ``wandb sweep`` / the W&B server would.

``wandb_sweep_schema.json`` beside this module is ``sweeps/config/schema.json`` from W&B's open-source sweeps engine
(PyPI package ``sweeps`` 0.3.0, MIT licence, Copyright (c) 2021 Weights and Biases), vendored unchanged because the
package pins ``numpy<2``. :func:`schema_violations` mirrors ``sweeps.config.schema_violations_from_proposed_config``:
Draft-7 validation with the ``float``/``integer`` format checkers, then the checks the schema cannot express
(min < max, categorical probabilities, deprecated v1 log distributions, metric vs metrics).
Needs ``jsonschema`` (imported inside the function).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("wandb_sweep_schema.json")
_DEPRECATED = {
    "log_uniform": "log_uniform_values",
    "inv_log_uniform": "inv_log_uniform_values",
    "q_log_uniform": "q_log_uniform_values",
}


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    checker = jsonschema.FormatChecker()
    checker.checks("float")(lambda v: isinstance(v, float))
    checker.checks("integer")(lambda v: isinstance(v, int))
    return jsonschema.Draft7Validator(schema=schema, format_checker=checker)


def schema_violations(config: Any) -> list[str]:
    """Messages for every way ``config`` (a parsed sweep YAML) breaks W&B's sweep schema; empty when valid."""
    if not isinstance(config, dict):
        return ["sweep config must be a mapping"]
    messages = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in _validator().iter_errors(config)]
    if "metric" in config and "metrics" in config:
        messages.append("`metric` and `metrics` cannot both be set")
    for name, p in (config.get("parameters") or {}).items():
        if not isinstance(p, dict):
            messages.append(f"invalid configuration for hyperparameter {name!r}")
            continue
        lo, hi = p.get("min"), p.get("max")
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo >= hi:
            messages.append(f"{name}: min {lo} is not less than max {hi}")
        if "values" in p and "probabilities" in p:
            probs = p["probabilities"]
            if len(p["values"]) != len(probs):
                messages.append(f"{name}: values and probabilities are not the same length")
            elif not math.isclose(sum(probs), 1.0, rel_tol=1e-9, abs_tol=1e-8):
                messages.append(f"{name}: probabilities do not sum to 1")
        if p.get("distribution") in _DEPRECATED:
            messages.append(f"{name}: {p['distribution']} is deprecated, use {_DEPRECATED[p['distribution']]}")
    return messages
