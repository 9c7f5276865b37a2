"""Progress of a run as plain data: ``summary.json`` and ``run.json`` (standard library only).

``summary.json``::

    {"status": "running" | "finished" | "failed" | "interrupted", "message": str | null,
     "command": "train" | "curriculum", "species": ..., "algorithm": ..., "global_step": int,
     "stages": {"1": StageState, ...}}

``StageState`` fields are documented on the dataclass. ``run.json`` holds everything `resume` needs to rebuild
the run: ``{"format": 1, "command", "config": RunConfig.to_dict(), "timesteps", "name", "init_from",
"strict_gates", "argv", "wandb": {...}}``.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from dinosim.runfolder import RUN_FILE, SUMMARY_FILE, atomic_write_json, read_json

RUN_FORMAT = 1
STATUSES = ("running", "finished", "failed", "interrupted")


@dataclass
class StageState:
    """One stage's progress. Steps are global environment steps unless named ``stage_*``."""

    stage: int
    status: str = "pending"  # pending | running | finished
    budget: int = 0  # steps the stage may train
    start_step: Optional[int] = None  # global step at which the stage began
    timesteps_used: int = 0  # steps trained in this stage so far
    gate_passed: bool = False
    gate_passed_at: Optional[int] = None  # global step of the evaluation that completed the gate
    gate_streak: int = 0  # passing evaluations in a row so far
    evaluations: int = 0
    last_eval_stage_step: int = 0  # stage step of the last evaluation (the next is eval_freq later)
    eval_seed_next: int = 0  # evaluations so far used gate-stream seeds 0 .. eval_seed_next - 1 of this stage
    last_checkpoint_stage_step: int = 0
    last_eval: Optional[dict[str, Any]] = None
    best_eval: Optional[dict[str, Any]] = None  # metrics of the best evaluation (by its lower bound); best/ holds it
    best_step: Optional[int] = None
    wall_time: float = 0.0  # seconds trained in this stage, summed over resumed segments
    warm_start: Optional[str] = None  # model the stage was warm-started from
    ramped: dict[str, list[float]] = field(default_factory=dict)  # [env] key -> [previous value, stage value]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StageState":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class RunSummary:
    command: str
    species: str
    algorithm: str
    stages: dict[int, StageState]
    status: str = "running"
    message: Optional[str] = None
    global_step: int = 0
    updated: float = field(default_factory=time.time)
    pid: Optional[int] = None  # process that last wrote the summary (resume refuses a live one on this host)
    host: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = {str(k): asdict(v) for k, v in self.stages.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSummary":
        stages = {int(k): StageState.from_dict(v) for k, v in data["stages"].items()}
        return cls(command=data["command"], species=data["species"], algorithm=data["algorithm"], stages=stages,
                   status=data.get("status", "running"), message=data.get("message"),
                   global_step=int(data.get("global_step", 0)), updated=float(data.get("updated", 0.0)),
                   pid=data.get("pid"), host=data.get("host"))

    def save(self, run_dir: Path) -> None:
        self.updated = time.time()
        self.pid, self.host = os.getpid(), socket.gethostname()
        atomic_write_json(Path(run_dir) / SUMMARY_FILE, self.to_dict())

    @classmethod
    def load(cls, run_dir: Path) -> "RunSummary":
        return cls.from_dict(read_json(Path(run_dir) / SUMMARY_FILE))


def write_run_file(run_dir: Path, data: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / RUN_FILE, {"format": RUN_FORMAT, **data})


def read_run_file(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / RUN_FILE)
