"""Load a W&B sweep YAML into the :class:`SweepSpec` the offline engine runs.

The YAML is the one you would give ``wandb sweep``: ``method``, ``metric``, ``parameters``, ``program``, ``command``,
``run_cap``, ``early_terminate``. ``--skip-if EXPR`` tokens in ``command`` declare constraints (the schema allows no
extra top-level keys; the training program enforces them under ``wandb agent`` and the engine reads them from the
command). Parameter names use the override spelling (``ppo.learning_rate``, ``stage2.env.alive_bonus``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from dinosim.errors import ConfigError
from dinosim.sweeps.constraints import Constraint, parse_constraint
from dinosim.sweeps.distributions import ParamSpec, grid_size, parse_param
from dinosim.sweeps.macros import DEFAULT_SWEEP_COMMAND, option_values

SKIP_IF_OPTION = "--skip-if"


@dataclass(frozen=True)
class Hyperband:
    """W&B ``early_terminate: {type: hyperband, min_iter | max_iter+s, eta}``; iterations = metric reports."""

    min_iter: int
    max_iter: Optional[int]
    eta: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Hyperband":
        if cfg.get("type") != "hyperband":
            raise ConfigError(f"early_terminate: only type hyperband is supported, got {cfg.get('type')!r}")
        eta = float(cfg.get("eta", 3))
        if eta <= 1:
            raise ConfigError("early_terminate: eta must be > 1")
        if "min_iter" in cfg:
            return cls(min_iter=int(cfg["min_iter"]), max_iter=cfg.get("max_iter"), eta=eta)
        if "max_iter" in cfg and "s" in cfg:
            max_iter = int(cfg["max_iter"])
            return cls(min_iter=max(1, int(math.floor(max_iter / eta ** float(cfg["s"])))), max_iter=max_iter, eta=eta)
        raise ConfigError("early_terminate: hyperband needs min_iter, or max_iter and s")


@dataclass
class SweepSpec:
    """A parsed sweep: what to sample, what to run, what to optimise."""

    path: Path
    raw: dict[str, Any]
    name: str
    method: str
    metric: str
    goal: str  # "maximize" or "minimize"
    target: Optional[float]
    run_cap: Optional[int]
    program: Optional[str]
    command: list[Any]
    parameters: dict[str, ParamSpec]
    hyperband: Optional[Hyperband]
    constraints: list[Constraint] = field(default_factory=list)

    @property
    def direction(self) -> str:
        return "maximize" if self.goal == "maximize" else "minimize"

    @property
    def grid_size(self) -> Optional[int]:
        return grid_size(self.parameters) if self.method == "grid" else None

    def better(self, a: float, b: float) -> bool:
        """True when metric value ``a`` is better than ``b``."""
        return a > b if self.goal == "maximize" else a < b

    def reaches_target(self, value: float) -> bool:
        if self.target is None:
            return False
        return value >= self.target if self.goal == "maximize" else value <= self.target


def spec_from_dict(raw: dict[str, Any], path: Path) -> SweepSpec:
    """Build a SweepSpec from a parsed YAML mapping; ConfigError on anything the engine cannot run."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep YAML must be a mapping")
    method = raw.get("method")
    if method not in ("grid", "random", "bayes"):
        raise ConfigError(f"{path}: method must be grid, random or bayes, got {method!r}")
    metric = raw.get("metric")
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        raise ConfigError(f"{path}: metric.name is required")
    goal = metric.get("goal", "minimize")  # W&B's default goal
    if goal not in ("maximize", "minimize"):
        raise ConfigError(f"{path}: metric.goal must be maximize or minimize")
    params_raw = raw.get("parameters")
    if not isinstance(params_raw, dict) or not params_raw:
        raise ConfigError(f"{path}: parameters must be a non-empty mapping")
    params = {str(n): parse_param(str(n), c) for n, c in params_raw.items()}
    command = list(raw.get("command") or DEFAULT_SWEEP_COMMAND)
    if any(str(t) == "${program}" for t in command) and not raw.get("program"):
        raise ConfigError(f"{path}: the command uses ${{program}} but no program is set")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap <= 0):
        raise ConfigError(f"{path}: run_cap must be a positive integer")
    et = raw.get("early_terminate")
    spec = SweepSpec(
        path=path,
        raw=raw,
        name=str(raw.get("name") or path.stem),
        method=method,
        metric=metric["name"],
        goal=goal,
        target=float(metric["target"]) if metric.get("target") is not None else None,
        run_cap=run_cap,
        program=raw.get("program"),
        command=command,
        parameters=params,
        hyperband=Hyperband.from_config(et) if et else None,
        constraints=[parse_constraint(e) for e in option_values(command, SKIP_IF_OPTION)],
    )
    if method == "grid":
        _ = spec.grid_size  # raises ConfigError for a parameter a grid cannot enumerate
    return spec


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep YAML (also against W&B's schema when ``jsonschema`` is installed)."""
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such sweep file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    try:
        from dinosim.sweeps.wandb_schema import schema_violations
    except ImportError:  # pragma: no cover - jsonschema is a declared dependency
        schema_violations = None  # type: ignore[assignment]
    if schema_violations is not None:
        try:
            problems = schema_violations(raw)
        except ImportError:
            problems = []
        if problems:
            raise ConfigError(f"{p}: not a valid W&B sweep config: {'; '.join(problems)}")
    return spec_from_dict(raw, p)
