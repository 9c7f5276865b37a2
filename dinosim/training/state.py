"""Progress of a run as plain data: ``summary.json`` and ``run.json`` (standard library only).

``summary.json``::

    {"status": "running" | "finished" | "failed" | "interrupted", "message": str | null,
     "command": "train" | "curriculum", "species": ..., "algorithm": ..., "global_step": int,
     "stages": {"1": StageState, ...}}

``StageState`` fields are documented on the dataclass; each stage also carries ``eval_share``
(:meth:`StageState.eval_share`, derived when written: the share of the stage's wall time training waited for
evaluations; null when not recorded). ``run.json`` holds everything `resume` needs to rebuild
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

from dinosim.errors import ConfigError, DinosimError
from dinosim.runfolder import (
    EVAL_COUNT,
    EVAL_TIME_FIELDS,
    EVAL_WAIT,
    GATE_KIND,
    RUN_FILE,
    SCREEN_KIND,
    STAGE_EVAL_SHARE_KEY,
    STAGE_EVAL_TIME_KEY,
    SUMMARY_FILE,
    atomic_write_json,
    read_json,
)

RUN_FORMAT = 1
STATUSES = ("running", "finished", "failed", "interrupted")
STAGE_STATUSES = ("pending", "running", "finished")


def _zero_totals() -> dict[str, float]:
    """One kind's evaluation-time totals before any evaluation: the count and every EVAL_TIME_FIELDS at 0."""
    return {EVAL_COUNT: 0, **dict.fromkeys(EVAL_TIME_FIELDS, 0)}


def no_eval_time() -> dict[str, dict[str, float]]:
    """Evaluation-time totals of a stage that has evaluated nothing yet (see :attr:`StageState.eval_time`)."""
    return {kind: _zero_totals() for kind in (SCREEN_KIND, GATE_KIND)}


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
    # metrics of the best evaluation that stopped early (by its lower bounds, over the episodes it played): never
    # best/, but what a stage without any complete evaluation fell short by (dinosim.training.metrics.gate_shortfall)
    best_partial_eval: Optional[dict[str, Any]] = None
    wall_time: float = 0.0  # seconds trained in this stage, summed over resumed segments
    # CPU seconds of the training process in this stage (all its threads; not SubprocVecEnv's worker processes nor
    # the background evaluation process), summed over resumed segments; None: a state from before it was recorded
    cpu_time: Optional[float] = 0.0
    warm_start: Optional[str] = None  # model the stage was warm-started from
    evaluated_in_background: Optional[bool] = None  # its evaluations ran in a background process (latest segment)
    ramped: dict[str, list[float]] = field(default_factory=dict)  # [env] key -> [previous value, stage value]
    # Totals of the evaluations' metrics.jsonl timings, per kind: {"screen"|"gate": {"evaluations": n, "wall_s",
    # "cpu_s", "env_steps", "training_wait_s"}} (dinosim.runfolder.EVAL_TIME_FIELDS). Like wall_time they cover the
    # segments this state has seen (a resume continues from the checkpoint's totals). None: a stage state written
    # before evaluations were timed; it stays None (partial totals would understate the cost).
    eval_time: Optional[dict[str, dict[str, float]]] = field(default_factory=no_eval_time)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StageState":
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        if STAGE_EVAL_TIME_KEY not in data:
            state.eval_time = None
        if "cpu_time" not in data:
            state.cpu_time = None
        return state

    def steps_to_gate(self) -> int:
        """Steps from the stage's start to the snapshot that passed its gate; without a pass, every step the stage
        used. Steps trained on while the passing evaluation ran in the background are not kept, so they do not
        count."""
        if self.gate_passed and self.gate_passed_at is not None and self.start_step is not None:
            return self.gate_passed_at - self.start_step
        return self.timesteps_used

    def global_steps_to_gate(self) -> int:
        """Global step (from the run's start) of the snapshot that passed the gate; without a pass, of the stage's
        last step."""
        if self.gate_passed and self.gate_passed_at is not None:
            return self.gate_passed_at
        return (self.start_step or 0) + self.timesteps_used

    def add_eval_time(self, kind: str, timing: dict[str, float]) -> None:
        """Count one evaluation of ``kind`` (``"screen"``/``"gate"``) with its ``timing`` (every field of
        EVAL_TIME_FIELDS) in :attr:`eval_time`; nothing for a state without totals."""
        if self.eval_time is None:
            return
        totals = self.eval_time.setdefault(kind, _zero_totals())
        totals[EVAL_COUNT] += 1
        for name in EVAL_TIME_FIELDS:
            totals[name] += timing[name]

    def eval_share(self) -> Optional[float]:
        """The share of the stage's wall time that training spent blocked by evaluations (None: not recorded, or
        no wall time yet)."""
        if self.eval_time is None or self.wall_time <= 0:
            return None
        return sum(totals.get(EVAL_WAIT, 0) for totals in self.eval_time.values()) / self.wall_time

    @classmethod
    def checked(cls, data: Any) -> "StageState":
        """:meth:`from_dict` of data read from a file, with every field of the right type (TypeError/ValueError
        otherwise), so damaged state is refused on reading instead of failing in the middle of training."""
        if not isinstance(data, dict):
            raise TypeError(f"a stage state must be a table, not {type(data).__name__}")
        state = cls.from_dict(data)
        ints = ("stage", "budget", "timesteps_used", "gate_streak", "evaluations", "last_eval_stage_step",
                "last_checkpoint_stage_step")
        optional_ints = ("start_step", "gate_passed_at", "best_step")
        tables = ("last_eval", "best_eval", "best_partial_eval", "ramped")
        if (state.status not in STAGE_STATUSES or not isinstance(state.gate_passed, bool)
                or any(type(getattr(state, n)) is not int or getattr(state, n) < 0 for n in ints)
                or any(getattr(state, n) is not None and type(getattr(state, n)) is not int for n in optional_ints)
                or any(not isinstance(getattr(state, n), (dict, type(None))) for n in tables)
                or not isinstance(state.wall_time, (int, float)) or not _eval_time_ok(state.eval_time)
                or not isinstance(state.cpu_time, (int, float, type(None)))
                or not isinstance(state.warm_start, (str, type(None)))
                or not isinstance(state.evaluated_in_background, (bool, type(None)))):
            raise ValueError(f"stage state with a wrong-typed or unknown value: {data}"[:200])
        return state


def _eval_time_ok(totals: Any) -> bool:
    if totals is None:
        return True
    return isinstance(totals, dict) and all(
        isinstance(kind, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                       for v in kind.values())
        for kind in totals.values())


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
    pid: Optional[int] = None  # process that last wrote the summary (information only: the run's lock decides)
    host: Optional[str] = None
    run_file_sha256: Optional[str] = None  # of run.json as written at the start: a changed byte is caught on reading

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = {str(k): {**asdict(v), STAGE_EVAL_SHARE_KEY: v.eval_share()}  # derived, for readers
                          for k, v in self.stages.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSummary":
        stages = {int(k): StageState.checked(v) for k, v in data["stages"].items()}
        return cls(command=data["command"], species=data["species"], algorithm=data["algorithm"], stages=stages,
                   status=data.get("status", "running"), message=data.get("message"),
                   global_step=int(data.get("global_step", 0)), updated=float(data.get("updated", 0.0)),
                   pid=data.get("pid"), host=data.get("host"), run_file_sha256=data.get("run_file_sha256"))

    def save(self, run_dir: Path) -> None:
        self.updated = time.time()
        self.pid, self.host = os.getpid(), socket.gethostname()
        atomic_write_json(Path(run_dir) / SUMMARY_FILE, self.to_dict())

    @classmethod
    def load(cls, run_dir: Path) -> "RunSummary":
        """The summary of a run folder; DinosimError (one line naming the file) when it is missing or damaged."""
        path = Path(run_dir) / SUMMARY_FILE
        data = read_json_object(path)
        try:
            summary = cls.from_dict(data)
            if summary.run_file_sha256 is not None and not isinstance(summary.run_file_sha256, str):
                raise TypeError("run_file_sha256 is not a string")
            if summary.status not in STATUSES or type(summary.global_step) is not int:
                raise ValueError(f"status {summary.status!r}, global step {summary.global_step!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DinosimError(f"{path}: not a dinosim run summary ({type(exc).__name__}: {exc})") from None
        return summary


def write_run_file(run_dir: Path, data: dict[str, Any]) -> str:
    """Write ``run.json`` (once, when the run starts); returns its sha256 for :attr:`RunSummary.run_file_sha256`."""
    from dinosim.run_integrity import sha256_file

    atomic_write_json(Path(run_dir) / RUN_FILE, {"format": RUN_FORMAT, **data})
    return sha256_file(Path(run_dir) / RUN_FILE)


def read_run_file(run_dir: Path, expected_sha256: Optional[str] = None) -> dict[str, Any]:
    """``run.json``, checked enough to rebuild the run from it (the command and a config whose sections and values
    the config schema accepts) and, given ``expected_sha256`` (from summary.json), byte for byte as written;
    DinosimError (one line naming the file) otherwise."""
    path = Path(run_dir) / RUN_FILE
    data = read_json_object(path)
    if expected_sha256 is not None:
        from dinosim.run_integrity import sha256_file

        if sha256_file(path) != expected_sha256:
            raise DinosimError(f"{path}: damaged (its sha256 differs from the one recorded in {SUMMARY_FILE} when "
                               "the run started)")
    try:
        if data.get("command") not in ("train", "curriculum"):
            raise ValueError(f"unknown command {data.get('command')!r}")
        check_stored_config(data["config"])
        for key in ("init_model", "init_vecnorm", "init_from", "name"):
            if not isinstance(data.get(key), (str, type(None))):
                raise TypeError(f"{key} is not a string")
        if not isinstance(data.get("wandb", {}), dict) or not isinstance(data.get("argv", []), list):
            raise TypeError("wandb/argv have the wrong type")
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as exc:
        raise DinosimError(f"{path}: not a dinosim run file ({type(exc).__name__}: {exc})") from None
    return data


def read_run_file_checked(run_dir: Path) -> dict[str, Any]:
    """:func:`read_run_file` against the digest in ``summary.json`` when that file is readable (commands that do not
    need the summary, like `evaluate`, still work when only it is damaged)."""
    try:
        expected = RunSummary.load(run_dir).run_file_sha256
    except DinosimError:
        expected = None
    return read_run_file(run_dir, expected)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; DinosimError naming the file when it is missing, empty, truncated or not an
    object."""
    path = Path(path)
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise DinosimError(f"{path}: missing") from None
    except OSError as exc:
        raise DinosimError(f"{path}: {exc.strerror or exc}") from None
    except ValueError:  # JSONDecodeError or UnicodeDecodeError
        raise DinosimError(f"{path}: not valid JSON (empty, truncated or damaged)") from None
    if not isinstance(data, dict):
        raise DinosimError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def check_stored_config(data: Any) -> None:
    """Raise ConfigError/KeyError/TypeError/ValueError unless ``data`` is a resolved config as ``run.json`` stores
    it: a [run] table with a known species, algorithm and vec env, and stage tables the schema accepts."""
    from dinosim.config.resolve import ALGORITHMS, VEC_ENVS, RunConfig
    from dinosim.config.schema import SECTIONS, section_keys
    from dinosim.config.validate import coerce, unknown_key
    from dinosim.species import SPECIES, STAGES

    config = RunConfig.from_dict(data)
    if config.species not in SPECIES or config.algorithm not in ALGORITHMS or config.vec_env not in VEC_ENVS:
        raise ValueError(f"unknown species/algorithm/vec_env {config.species!r}/{config.algorithm!r}/"
                         f"{config.vec_env!r}")
    if not config.stages or any(s not in STAGES for s in config.stages) or config.n_envs < 1:
        raise ValueError(f"stages {list(config.stages)} / n_envs {config.n_envs} out of range")
    for stage in config.stages:
        for section, table in data[f"stage{stage}"].items():
            if section not in SECTIONS or not isinstance(table, dict):
                raise ValueError(f"stage{stage}.{section} is not a config section")
            keys = section_keys(section, config.species)
            for key, value in table.items():
                if key not in keys:
                    raise unknown_key(f"stage{stage}.{section}", key, keys)
                if value is not None:
                    coerce(f"stage{stage}.{section}.{key}", keys[key], value)
