"""docs/envs.md carries the model table computed from the models, not a hand-typed one."""

from __future__ import annotations

import inspect
from pathlib import Path

from dinosim.envs.base import DinoEnv
from dinosim.envs.describe import markdown_table, summarize

DOC = Path(__file__).resolve().parent.parent / "docs" / "envs.md"


def test_models_table_is_current():
    text = DOC.read_text()
    start = text.index("<!-- models-table:start -->") + len("<!-- models-table:start -->")
    end = text.index("<!-- models-table:end -->")
    assert text[start:end].strip() == markdown_table(), "regenerate with: python -m dinosim.envs.describe"


def test_summaries_are_plausible():
    raptor, trex, brachio = (summarize(s) for s in ("velociraptor", "trex", "brachiosaurus"))
    assert 13.0 <= raptor.mass_kg <= 20.0 and 1.5 <= raptor.length_m <= 2.1
    assert trex.mass_kg > 100 * raptor.mass_kg and trex.head_height_m > trex.standing_height_m
    assert brachio.head_height_m > 2.0 * brachio.standing_height_m  # the neck carries the head far above the back
    assert raptor.obs_size == 12 + 2 * raptor.actuators + 2 + 3
    assert brachio.obs_size == 12 + 2 * brachio.actuators + 4 + 3


def test_every_base_kwarg_is_documented_in_its_signature():
    source = inspect.getsource(DinoEnv.__init__)
    for name in inspect.signature(DinoEnv.__init__).parameters:
        if name == "self":
            continue
        line = next(text for text in source.splitlines() if text.strip().startswith(f"{name}:"))
        assert "#" in line, f"{name} has no trailing description comment"
