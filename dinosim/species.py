"""The species dinosim knows and where each one's code and configs live.

Configs are read from ``$DINOSIM_CONFIG_DIR`` when set, else from the committed ones (:data:`BUILTIN_CONFIGS_DIR`);
``--config-dir`` of `train`/`curriculum` wins over both.

This module is import-light (standard library only): the CLI and the config validator read it on every call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Species:
    """One animal: its Gymnasium id, env class location and per-stage config files."""

    name: str
    env_id: str
    env_module: str  # dotted module path under the dinosim package, e.g. "dinosim.envs.velociraptor"
    env_class: str
    behaviour: str  # the stage-3 skill: "strike", "bite" or "food_reach"
    target_weights: tuple[str, str, str]  # [env] kwargs acting as the stage-3 bonus, approach and proximity weights

    @property
    def stage_files(self) -> tuple[str, str, str]:
        return ("stage1_balance.toml", "stage2_locomotion.toml", f"stage3_{self.behaviour}.toml")


SPECIES: dict[str, Species] = {
    "velociraptor": Species(
        "velociraptor", "dinosim/Velociraptor-v0", "dinosim.envs.velociraptor", "VelociraptorEnv", "strike",
        ("strike_bonus", "strike_approach_weight", "strike_proximity_weight"),
    ),
    "trex": Species("trex", "dinosim/TRex-v0", "dinosim.envs.trex", "TRexEnv", "bite",
                    ("bite_bonus", "bite_approach_weight", "bite_proximity_weight")),
    "brachiosaurus": Species(
        "brachiosaurus", "dinosim/Brachiosaurus-v0", "dinosim.envs.brachiosaurus", "BrachiosaurusEnv", "food_reach",
        ("food_reach_bonus", "food_approach_weight", "food_proximity_weight"),
    ),
}

STAGES: tuple[int, ...] = (1, 2, 3)

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR_ENV = "DINOSIM_CONFIG_DIR"  # a folder laid out like configs/ (<species>/stage*.toml) to use instead


def _builtin_configs_dir() -> Path:
    """The committed configs: ``dinosim/configs/`` in an installed wheel (the build maps the repository's top-level
    ``configs/`` there, see setup.py), else the checkout's ``configs/`` (source tree, editable install)."""
    packaged = PACKAGE_DIR / "configs"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "configs"


BUILTIN_CONFIGS_DIR = _builtin_configs_dir()
CONFIGS_DIR = Path(os.environ[CONFIG_DIR_ENV]) if os.environ.get(CONFIG_DIR_ENV) else BUILTIN_CONFIGS_DIR


def module_source_path(dotted: str) -> Path:
    """Path of a dinosim module's source file, found without importing it."""
    parts = dotted.split(".")
    if parts[0] != "dinosim":
        raise ValueError(f"not a dinosim module: {dotted}")
    return PACKAGE_DIR.joinpath(*parts[1:]).with_suffix(".py")
