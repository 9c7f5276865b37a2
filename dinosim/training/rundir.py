"""Run folders and crash-safe file I/O (standard library only, so bad-input checks stay cheap).

Contract: every file under a run folder is written by :func:`atomic_write_bytes` (a temporary file in the same
folder, flushed and fsynced, then ``os.replace``), so a kill at any moment leaves either the old or the new complete
file, never a torn one. JSON-lines files (``metrics.jsonl``, ``$DINOSIM_TRIAL_METRICS``) are only appended to with
one ``os.write`` of one whole line on an ``O_APPEND`` descriptor.

Layout of a run folder (see :func:`new_run_dir`)::

    <run_dir>/run.json            the request: command, resolved config, CLI options (what `resume` rebuilds from)
    <run_dir>/summary.json        overall status + per-stage progress (see dinosim.training.state)
    <run_dir>/metrics.jsonl       one JSON line per evaluation
    <run_dir>/stage<N>/config.toml, model.zip, vecnormalize.pkl, evaluations.npz, best/, checkpoints/, tb/
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

RUNS_DIR_ENV = "DINOSIM_RUNS_DIR"
TRIAL_METRICS_ENV = "DINOSIM_TRIAL_METRICS"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.zip"
VECNORM_FILE = "vecnormalize.pkl"
_TMP_PREFIX = ".tmp-"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the complete new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def parse_json_lines(lines: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """The dict records among JSON lines; blank, torn (still being written) or non-dict lines are skipped."""
    records = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line with a single write on an O_APPEND descriptor (no torn or interleaved lines)."""
    line = (json.dumps(record, default=_json_default, allow_nan=True) + "\n").encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):  # regular files do not short-write in practice; make it loud if they do
            raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
    finally:
        os.close(fd)


def save_model_atomic(model: Any, path: Path) -> None:
    """``model.save`` into memory, then an atomic write: plain ``<Algo>.load(path)`` works on the result."""
    buffer = io.BytesIO()
    model.save(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_vecnormalize_atomic(vec_normalize: Any, path: Path) -> None:
    """Same bytes as ``VecNormalize.save`` (a pickle of the wrapper without its venv), written atomically."""
    import pickle

    atomic_write_bytes(path, pickle.dumps(vec_normalize))


def remove_stale_temp_files(folder: Path) -> None:
    """Delete temporary files a killed writer left behind (never complete files)."""
    for tmp in Path(folder).rglob(_TMP_PREFIX + "*"):
        try:
            tmp.unlink()
        except OSError:
            pass


def runs_root() -> Path:
    """``$DINOSIM_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


RUN_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
"""A run name (``--name``): one path component of letters, digits, '.', '_' and '-', starting with a letter or
digit (so never ``.`` or ``..``), at most 100 characters."""


def check_run_name(name: str) -> None:
    """Raise DinosimError unless ``name`` matches :data:`RUN_NAME_PATTERN`."""
    from dinosim.errors import DinosimError

    if not re.fullmatch(RUN_NAME_PATTERN, name):
        raise DinosimError(f"--name {name!r}: use up to 100 letters, digits, '.', '_' and '-', starting with a "
                           "letter or digit (it becomes part of one folder name)")


def planned_run_dir(species: str, name: Optional[str], explicit: Optional[Path] = None,
                    now: Optional[_dt.datetime] = None) -> Path:
    """The folder :func:`new_run_dir` would create at ``now``, before any ``-2`` collision suffix."""
    if explicit is not None:
        return Path(explicit)
    if name is not None:
        check_run_name(name)
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return runs_root() / species / (f"{stamp}-{name}" if name else stamp)


def new_run_dir(species: str, name: Optional[str], explicit: Optional[Path] = None,
                now: Optional[_dt.datetime] = None) -> Path:
    """The folder of a new run: ``explicit`` when given, else ``<root>/<species>/<YYYYmmdd-HHMMSS>[-NAME]``.

    The folder is created. An explicit folder that already holds a run is refused (use `resume`); an automatic name
    that collides gets a ``-2``, ``-3``... suffix.
    """
    from dinosim.errors import DinosimError

    base = planned_run_dir(species, name, explicit, now)
    if explicit is not None:
        if (base / RUN_FILE).exists():
            raise DinosimError(f"{base} already holds a run; use `dinosim resume {base}` or another --run-dir")
    folder, n = base, 1
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=explicit is not None)
            return folder
        except FileExistsError:
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
        except OSError as exc:
            raise DinosimError(f"cannot create the run folder {folder}: {exc.strerror or exc}") from None


def stage_dir(run_dir: Path, stage: int) -> Path:
    return Path(run_dir) / f"stage{stage}"


def checkpoint_paths(stage_folder: Path, step: int) -> tuple[Path, Path, Path]:
    """(model, vecnormalize, meta) of the checkpoint at global ``step``; the meta file is written last."""
    folder = Path(stage_folder) / "checkpoints"
    stem = f"step_{step:012d}"
    return folder / f"{stem}_model.zip", folder / f"{stem}_vecnormalize.pkl", folder / f"{stem}.json"


def complete_checkpoints(stage_folder: Path) -> list[tuple[int, Path, Path, Path]]:
    """Checkpoints whose three files all exist, oldest first: ``(step, model, vecnormalize, meta)``."""
    folder = Path(stage_folder) / "checkpoints"
    out = []
    if folder.is_dir():
        for meta in folder.glob("step_*.json"):
            match = re.fullmatch(r"step_(\d+)\.json", meta.name)
            if not match:
                continue
            step = int(match.group(1))
            model, vecnorm, meta_path = checkpoint_paths(stage_folder, step)
            if model.exists() and vecnorm.exists():
                out.append((step, model, vecnorm, meta_path))
    return sorted(out)


def prune_checkpoints(stage_folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; delete older ones (meta first, so none looks complete)."""
    for _, model, vecnorm, meta in complete_checkpoints(stage_folder)[:-keep] if keep > 0 else []:
        for path in (meta, model, vecnorm):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def iter_run_files(run_dir: Path) -> Iterable[Path]:
    return (p for p in Path(run_dir).rglob("*") if p.is_file())


def process_alive(pid: Optional[int]) -> bool:
    """Whether process ``pid`` exists and is not a zombie (``None`` -> False)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is not training
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
