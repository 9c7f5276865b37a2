"""Weights & Biases tracking of one ``train``/``curriculum`` invocation; never prompts, never hangs.

Use::

    tracker = WandbTracker.start(request.wandb, run_config, run_dir, job_type=request.command)
    logger.output_formats.append(tracker.kv_writer())   # SB3 records -> wandb at the global step
    tracker.set_stage(stage, step_offset)                 # when a stage starts (global step = offset + SB3 step)
    tracker.log_eval({"global_step": ..., "stage": 1, "eval/mean_reward": ...})   # each metrics.jsonl record
    tracker.log_gate(stage, passed=True, global_step=...)  # when a stage's gate passes (or its budget ends)
    tracker.finish(exit_code)

* Enabled by ``--wandb`` or automatically under ``wandb agent`` (:func:`wandb_enabled_from_env`).
* Mode: ``WANDB_MODE`` when set; else offline when no API key is configured or the server does not accept a TCP
  connection within :data:`PROBE_TIMEOUT` s; else online with ``init_timeout``, falling back to offline if init
  fails. Offline files go under ``<run_dir>/wandb`` and the ``wandb sync <path>`` command is printed.
* One W&B run per invocation; its id is stored in ``<run_dir>/wandb.json`` so ``resume`` continues it
  (``resume="allow"`` with the stored id).
* Config = :func:`dinosim.config.flatten.flatten_config` + ``git_commit``. Every history row carries
  ``global_step`` (the x-axis of every metric, via ``define_metric``) and ``curriculum/stage``.
* Summary: ``final/<eval key>``, ``best/<eval key>`` (max over the evaluations that played every episode: not
  the partial means of one that stopped early), ``gate/stageN/passed``/``gate/stageN/global_step`` and
  the diagnosis of each finished stage (``diagnose/stageN/...`` and a table, see :meth:`WandbTracker.log_diagnosis`);
  the plain ``eval/...`` summary keeps W&B's default (last value), which is what a sweep's metric reads.
"""

from __future__ import annotations

import math
import netrc
import numbers
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional
from urllib.parse import urlparse

from dinosim.config.flatten import flatten_config, git_commit
from dinosim.runfolder import WANDB_FILE, atomic_write_json, read_json, stopped_on

if TYPE_CHECKING:
    from dinosim.config.resolve import RunConfig
    from dinosim.training.request import WandbOptions

PROBE_TIMEOUT = 3.0  # seconds to wait for a TCP connection to the W&B server before going offline
INIT_TIMEOUT = float(os.environ.get("DINOSIM_WANDB_INIT_TIMEOUT", "30"))  # wandb.init's own timeout, online mode
DEFAULT_BASE_URL = "https://api.wandb.ai"
STEP_KEY = "global_step"
STAGE_KEY = "curriculum/stage"
DIAGNOSIS_COLUMNS = ("stage", "id", "category", "confidence", "summary", "evidence", "overrides")


def wandb_enabled_from_env(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True under ``wandb agent``: ``WANDB_SWEEP_ID`` set, or ``WANDB_RUN_ID`` with ``WANDB_SWEEP_PARAM_PATH``."""
    env = os.environ if environ is None else environ
    return bool(env.get("WANDB_SWEEP_ID")) or bool(env.get("WANDB_RUN_ID") and env.get("WANDB_SWEEP_PARAM_PATH"))


def _base_url(environ: Mapping[str, str]) -> str:
    return environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def has_api_key(environ: Optional[Mapping[str, str]] = None) -> bool:
    """An API key in ``WANDB_API_KEY`` or in the netrc entry of the server host (what ``wandb login`` writes)."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(_base_url(env)).hostname or ""
    path = env.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def server_reachable(environ: Optional[Mapping[str, str]] = None, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the W&B server accepts a TCP connection within ``timeout`` seconds (no data is sent)."""
    env = os.environ if environ is None else environ
    url = urlparse(_base_url(env))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def choose_mode(environ: Optional[Mapping[str, str]] = None) -> str:
    """``online``, ``offline`` or ``disabled``: WANDB_MODE if set, else offline without key or server."""
    env = os.environ if environ is None else environ
    forced = (env.get("WANDB_MODE") or "").strip().lower()
    if forced in ("offline", "dryrun"):
        return "offline"
    if forced in ("disabled", "online"):
        return forced
    if not has_api_key(env) or not server_reachable(env):
        return "offline"
    return "online"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value)  # numpy scalars
    except (TypeError, ValueError):
        return str(value)


class WandbTracker:
    """One W&B run of a dinosim invocation (see the module docstring)."""

    def __init__(self, run: Any, run_dir: Path, mode: str) -> None:
        self.run = run
        self.run_dir = run_dir
        self.mode = mode
        self.stage: Optional[int] = None
        self.step_offset = 0
        self._best: dict[str, float] = {}

    # -- lifecycle --------------------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        options: "WandbOptions",
        run_config: "RunConfig",
        run_dir: Path,
        *,
        job_type: str = "train",
        name: Optional[str] = None,
        extra_config: Optional[Mapping[str, Any]] = None,
    ) -> "WandbTracker":
        """Start (or resume, when ``run_dir`` holds a stored id) the run; offline when W&B is unreachable."""
        config = flatten_config(run_config)
        config["git_commit"] = git_commit()
        config.update(extra_config or {})
        tags = list(options.tags)
        return cls._init(run_dir, project=options.project, group=options.group, tags=tags, job_type=job_type,
                         name=name or run_dir.name, config=config)

    @classmethod
    def _init(cls, run_dir: Path, *, project: str, group: Optional[str], tags: list[str], job_type: str,
              name: Optional[str], config: Mapping[str, Any]) -> "WandbTracker":
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        run_dir.mkdir(parents=True, exist_ok=True)
        stored = read_wandb_file(run_dir)
        under_agent = wandb_enabled_from_env()
        mode = choose_mode()
        kwargs: dict[str, Any] = dict(
            project=project, group=group, tags=tags or None, job_type=job_type, name=name, dir=str(run_dir),
            config=_jsonable(dict(config)), allow_val_change=True,
        )
        if stored and not under_agent:
            kwargs.update(id=stored["id"], resume="allow")

        def settings(m: str) -> Any:
            return wandb.Settings(mode=m, init_timeout=INIT_TIMEOUT, silent=True, console="off",
                                  x_disable_stats=True, relogin=False)

        try:
            run = wandb.init(settings=settings(mode), **kwargs)
        except Exception as exc:  # noqa: BLE001 - network/auth problems of any kind: keep training, log offline
            if mode != "online":
                raise
            print(f"wandb: online init failed ({type(exc).__name__}: {exc}); logging offline", file=sys.stderr)
            mode = "offline"
            run = wandb.init(settings=settings(mode), **kwargs)
        tracker = cls(run, run_dir, mode)
        tracker._define_metrics()
        sync_dirs = [d for d in (stored or {}).get("sync_dirs", []) if stored and stored.get("id") == run.id]
        if mode == "offline" and tracker.sync_dir and tracker.sync_dir not in sync_dirs:
            sync_dirs.append(tracker.sync_dir)
        write_wandb_file(run_dir, {"id": run.id, "project": project, "mode": mode, "sync_dirs": sync_dirs})
        if mode == "offline" and sync_dirs:
            print(f"wandb: logging offline; upload later with: wandb sync {' '.join(sync_dirs)}", file=sys.stderr)
        return tracker

    def _define_metrics(self) -> None:
        self.run.define_metric(STEP_KEY)
        self.run.define_metric("*", step_metric=STEP_KEY)

    @property
    def sync_dir(self) -> Optional[str]:
        try:
            return str(self.run.settings.sync_dir)
        except AttributeError:
            return None

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)

    # -- logging ------------------------------------------------------------------------------------------------
    def set_stage(self, stage: int, step_offset: int = 0) -> None:
        """Called when a stage starts: SB3 steps of this stage are logged at ``step_offset + step``."""
        self.stage, self.step_offset = stage, step_offset

    def log(self, metrics: Mapping[str, Any], global_step: int) -> None:
        """One history row at ``global_step`` (numbers only; the current stage is added)."""
        row: dict[str, Any] = {}
        for k, v in metrics.items():
            if isinstance(v, bool):
                row[k] = int(v)
            elif isinstance(v, numbers.Integral):
                row[k] = int(v)
            elif isinstance(v, numbers.Real):
                row[k] = float(v)
        if not row:
            return
        row[STEP_KEY] = int(global_step)
        if self.stage is not None:
            row.setdefault(STAGE_KEY, self.stage)
        self.run.log(row)

    def log_eval(self, record: Mapping[str, Any]) -> None:
        """A metrics.jsonl record (``global_step``, ``stage``, ``eval/*`` ...): history + final/best summary."""
        step = int(record.get("global_step", record.get(STEP_KEY, 0)))
        stage = record.get("stage")
        metrics = {k: v for k, v in record.items() if k not in ("global_step", "stage")}
        if stage is not None:
            metrics[STAGE_KEY] = stage
        self.log(metrics, step)
        complete = not stopped_on(record)
        for k, v in metrics.items():
            if not k.startswith("eval/") or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if math.isnan(float(v)):
                continue
            self.run.summary[f"final/{k}"] = v
            if complete and (k not in self._best or v > self._best[k]):
                self._best[k] = float(v)
                self.run.summary[f"best/{k}"] = v
                self.run.summary[f"best/{k}_step"] = step

    def log_gate(self, stage: int, passed: bool, global_step: int, **details: Any) -> None:
        """Per-stage gate result in the summary (``gate/stageN/passed`` ...) and a history point."""
        self.run.summary[f"gate/stage{stage}/passed"] = bool(passed)
        self.run.summary[f"gate/stage{stage}/global_step"] = int(global_step)
        for k, v in details.items():
            self.run.summary[f"gate/stage{stage}/{k}"] = _jsonable(v)
        self.log({f"gate/stage{stage}_passed": int(bool(passed))}, global_step)

    def log_diagnosis(self, run_dir: Path, stage: int, global_step: Optional[int] = None) -> list[str]:
        """Diagnose ``stage`` of ``run_dir`` (:mod:`dinosim.tracking.diagnose`) and log it: summary keys
        ``diagnose/stageN/symptoms`` (ids, ranked), ``diagnose/stageN/count``, ``diagnose/stageN/top`` and
        ``diagnose/stageN/<id>`` (confidence), and a ``diagnose/stageN`` table (one row a symptom). Returns the ids."""
        import wandb

        from dinosim.tracking.diagnose import diagnose

        symptoms = diagnose([run_dir], stage=stage).symptoms()
        ids = [s.id for s in symptoms]
        prefix = f"diagnose/stage{stage}"
        self.run.summary[f"{prefix}/symptoms"] = ids
        self.run.summary[f"{prefix}/count"] = len(ids)
        self.run.summary[f"{prefix}/top"] = ids[0] if ids else ""
        for s in symptoms:
            self.run.summary[f"{prefix}/{s.id}"] = s.confidence
        table = wandb.Table(columns=list(DIAGNOSIS_COLUMNS))
        for s in symptoms:
            row = s.to_json()
            table.add_data(*(row[c] if c not in ("evidence", "overrides") else "\n".join(row[c])
                             for c in DIAGNOSIS_COLUMNS))
        row: dict[str, Any] = {prefix: table}
        if global_step is not None:
            row[STEP_KEY] = int(global_step)
        self.run.log(row)
        return ids

    def log_video(self, path: str | os.PathLike, stage: int, global_step: Optional[int] = None) -> None:
        """Attach a rendered episode (.mp4/.gif) as ``video/stageN`` (at ``global_step`` when given)."""
        import wandb

        fmt = Path(path).suffix.lstrip(".").lower() or "mp4"
        row = {f"video/stage{stage}": wandb.Video(str(path), format=fmt)}
        if global_step is not None:
            row[STEP_KEY] = int(global_step)
        self.run.log(row)

    def kv_writer(self) -> "Any":
        """An SB3 ``KVWriter`` forwarding logger records here (append it to ``model.logger.output_formats``)."""
        from dinosim.tracking.wandb_writer import WandbKVWriter

        return WandbKVWriter(self)


_ACTIVE: Optional[WandbTracker] = None


def set_active(tracker: Optional[WandbTracker]) -> None:
    """Register the invocation's tracker so :func:`log_video` can find it."""
    global _ACTIVE
    _ACTIVE = tracker


def log_video(path: str | os.PathLike, stage: int, run_dir: Optional[Path] = None,
              global_step: Optional[int] = None) -> bool:
    """Log a video file to the active run, or later to the run stored in ``run_dir`` (resumed by id, offline when
    W&B is unreachable). Returns False when there is no run to log to."""
    if _ACTIVE is not None:
        _ACTIVE.log_video(path, stage, global_step)
        return True
    if run_dir is None or read_wandb_file(Path(run_dir)) is None:
        return False
    stored = read_wandb_file(Path(run_dir)) or {}
    tracker = WandbTracker._init(Path(run_dir), project=stored.get("project", "dinosim"), group=None, tags=[],
                                 job_type="evaluate", name=None, config={})
    try:
        tracker.log_video(path, stage, global_step)
    finally:
        tracker.finish()
    return True


def mark_skipped_under_agent(flat_config: Mapping[str, Any], reason: str, project: str = "dinosim") -> None:
    """Under ``wandb agent``: a short run tagged ``skipped`` with ``skipped``/``skip_reason`` in its summary."""
    import tempfile

    tracker = WandbTracker._init(Path(tempfile.mkdtemp(prefix="dinosim-skip-")), project=project, group=None,
                                 tags=["skipped"], job_type="skipped", name=None, config=flat_config)
    tracker.run.summary["skipped"] = True
    tracker.run.summary["skip_reason"] = reason
    tracker.finish(exit_code=0)


def read_wandb_file(run_dir: Path) -> Optional[dict[str, Any]]:
    """``<run_dir>/wandb.json`` (the W&B run to continue), None when missing, unreadable or without an id."""
    try:
        data = read_json(run_dir / WANDB_FILE)
    except (OSError, ValueError):  # missing, or damaged: a new W&B run is started
        return None
    return data if isinstance(data, dict) and data.get("id") else None


def write_wandb_file(run_dir: Path, data: Mapping[str, Any]) -> None:
    """Store the W&B run id etc. in ``<run_dir>/wandb.json`` (atomically, like every run file)."""
    atomic_write_json(run_dir / WANDB_FILE, dict(data))
