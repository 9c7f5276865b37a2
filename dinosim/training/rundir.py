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
        os.fchmod(fd, file_mode())  # mkstemp makes 0600; run files are shared like any file the user creates
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


def file_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file (0o666) or folder (0o777) under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (``os.umask`` is set-and-get)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
        except ValueError:  # JSONDecodeError, or bytes that are not UTF-8 (a damaged line)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line with a single write on an O_APPEND descriptor (no torn or interleaved lines)."""
    line = (json.dumps(record, default=_json_default, allow_nan=True) + "\n").encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask applies
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


def remove_stale_temp_files(run_dir: Path) -> None:
    """Delete temporary files and folders a killed writer of THIS run left behind (never complete files).

    Only the folders this run writes are looked at: the run folder itself, its ``stage<N>/`` folders and their
    ``best/`` and ``checkpoints/``; never other folders below it (``--run-dir .`` or ``--run-dir runs`` must not
    touch the in-flight files of other runs). The caller holds the run's lock, so no writer of this run is live.
    """
    import shutil

    run_dir = Path(run_dir)
    folders = [run_dir]
    for stage in sorted(run_dir.glob("stage*")):
        if re.fullmatch(r"stage\d+", stage.name) and stage.is_dir() and not stage.is_symlink():
            folders += [stage, stage / "best", stage / "checkpoints"]
    for folder in folders:
        for tmp in folder.glob(_TMP_PREFIX + "*") if folder.is_dir() else ():
            try:
                if tmp.is_dir() and not tmp.is_symlink():
                    shutil.rmtree(tmp)
                else:
                    tmp.unlink()
            except OSError:
                pass


def runs_root() -> Path:
    """``$DINOSIM_RUNS_DIR`` or ``./runs``; a DinosimError when it names something that is not a folder."""
    from dinosim.errors import DinosimError

    root = Path(os.environ.get(RUNS_DIR_ENV) or "runs")
    if root.exists() and not root.is_dir():
        raise DinosimError(f"{RUNS_DIR_ENV}={root}: not a folder; point it at a folder for run folders")
    return root


def new_run_dir(species: str, name: Optional[str], explicit: Optional[Path] = None,
                now: Optional[_dt.datetime] = None) -> Path:
    """The folder of a new run: ``explicit`` when given, else ``<root>/<species>/<YYYYmmdd-HHMMSS>[-NAME]``.

    The folder is created. An explicit folder that already holds a run is refused (use `resume`); an automatic name
    that collides gets a ``-2``, ``-3``... suffix.
    """
    from dinosim.errors import DinosimError

    if explicit is not None:
        folder = Path(explicit)
        if (folder / RUN_FILE).exists():
            raise DinosimError(f"{folder} already holds a run; use `dinosim resume {folder}` or another --run-dir")
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    if name is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise DinosimError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = runs_root() / species / (f"{stamp}-{name}" if name else stamp)
    folder, n = base, 1
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:
            n += 1
            folder = base.with_name(f"{base.name}-{n}")


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
    """Keep the newest ``keep`` complete checkpoints; delete older ones (meta first, so none looks complete) and
    every ``step_*`` file that belongs to no kept checkpoint (left by a save that failed half-way)."""
    complete = complete_checkpoints(stage_folder)
    kept = complete[-keep:] if keep > 0 else complete
    for _, model, vecnorm, meta in complete[:-keep] if keep > 0 else []:
        for path in (meta, model, vecnorm):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    keep_names = {p.name for entry in kept for p in entry[1:]}
    for path in (Path(stage_folder) / "checkpoints").glob("step_*"):  # one writer (the run's lock): none in flight
        if path.name in keep_names:
            continue
        try:
            path.unlink()
        except OSError:
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
