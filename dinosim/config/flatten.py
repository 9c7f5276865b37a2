"""Flatten a resolved :class:`~dinosim.config.resolve.RunConfig` into keys spelled like overrides.

``flatten_config`` is pure (no I/O) and is the one config view shared by W&B (run config), ``--skip-if`` constraints
and sweep export:

* ``stageN.section.key`` for every stage the run has (nested tables joined with dots:
  ``stage1.ppo.policy_kwargs.net_arch``);
* ``section.key`` (unscoped) = the value in the FIRST stage of the run. For ``train --stage N`` that is stage N; for a
  curriculum it is its first stage (an unscoped override sets every stage, so it reads back unchanged);
* ``species``, ``algorithm``, ``seed``, ``n_envs``, ``vec_env``, ``stages`` (list).

Lists stay lists (``[256, 256]``), so W&B shows the same value the sweep passed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from dinosim.config.resolve import RunConfig


def _flatten_table(prefix: str, table: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key, value in table.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            _flatten_table(name, value, out)
        elif value is not None:
            out[name] = list(value) if isinstance(value, tuple) else value


def flatten_config(run_config: "RunConfig") -> dict[str, Any]:
    """The run's config as ``{dotted key: value}`` (see the module docstring for the key set)."""
    flat: dict[str, Any] = {
        "species": run_config.species,
        "algorithm": run_config.algorithm,
        "seed": run_config.seed,
        "n_envs": run_config.n_envs,
        "stages": list(run_config.stages),
    }
    vec_env = getattr(run_config, "vec_env", None)
    if vec_env is not None:
        flat["vec_env"] = vec_env
    stages = list(run_config.stages)
    for stage in stages:
        for section, table in run_config.stage_configs[stage].items():
            if isinstance(table, Mapping):
                _flatten_table(f"stage{stage}.{section}", table, flat)
    if stages:
        first = stages[0]
        for section, table in run_config.stage_configs[first].items():
            if isinstance(table, Mapping):
                _flatten_table(section, table, flat)
    return flat


def git_commit(repo_dir: Optional[Path] = None) -> Optional[str]:
    """HEAD commit of the dinosim checkout (``+dirty`` when the tree has changes); None outside git."""
    cwd = repo_dir or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
