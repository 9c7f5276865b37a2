"""The run folder: names of its files, crash-safe writes and readers (standard library only, below every layer).

Every layer that touches a run folder (training writes it, tracking and sweeps read it, the CLI checks it) takes
the names and helpers from here, so each file name and each read/write rule is defined once. Importing this module
is cheap: bad-input checks can use it before torch, SB3 or mujoco are imported.

Contract: every file under a run folder is written by :func:`atomic_write_bytes` (a temporary file in the same
folder, flushed and fsynced, then ``os.replace``), so a kill at any moment leaves either the old or the new complete
file, never a torn one. JSON-lines files (``metrics.jsonl``, ``$DINOSIM_TRIAL_METRICS``) are only appended to with
one ``os.write`` of one whole line on an ``O_APPEND`` descriptor; readers skip a torn or blank line.

Layout of a run folder (see :func:`new_run_dir`)::

    <run_dir>/run.json            the request: command, resolved config, CLI options (what `resume` rebuilds from)
    <run_dir>/summary.json        overall status + per-stage progress (see dinosim.training.state)
    <run_dir>/metrics.jsonl       one JSON line per evaluation
    <run_dir>/wandb.json          the W&B run id, so `resume` continues the same W&B run
    <run_dir>/stage<N>/config.toml, model.zip, vecnormalize.pkl, final.json, evaluations.npz, tb/
    <run_dir>/stage<N>/start_policy.pt    with curriculum.anchor_coef: the policy weights the stage started from
    <run_dir>/stage<N>/best/model.zip, vecnormalize.pkl, best.json     the best evaluation so far
    <run_dir>/stage<N>/checkpoints/step_<12 digits>_model.zip, ..._vecnormalize.pkl, step_<...>.json
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

from dinosim.errors import DinosimError

RUNS_DIR_ENV = "DINOSIM_RUNS_DIR"
TRIAL_METRICS_ENV = "DINOSIM_TRIAL_METRICS"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
EVAL_KIND_KEY = "eval_kind"  # metrics.jsonl: which evaluation a record is
SCREEN_KIND, GATE_KIND = "screen", "gate"  # the screening every eval_freq steps; the gate evaluation it triggers
EVAL_SEEDS_KEY = "eval_seeds"  # metrics.jsonl: [first, end) of the episode seeds drawn for the evaluation
# An evaluation that stopped early (curriculum.eval_early_stop: it could no longer pass) played only the first
# eval/episodes of its seeds; its record has EVAL_STOPPED_PREFIX + <criterion> = 1 for each criterion it could no
# longer meet (0 for the others; every record has one per criterion of dinosim.config.settings.STOPPABLE).
EVAL_STOPPED_PREFIX = "eval/stopped/"
# How long an evaluation took: every metrics.jsonl record carries EVAL_TIME_PREFIX + each of EVAL_TIME_FIELDS (for
# the screening or the gate evaluation it records), and each stage of summary.json the totals per kind under
# STAGE_EVAL_TIME_KEY ({"screen"|"gate": {"evaluations": n, <field>: sum}}) and STAGE_EVAL_SHARE_KEY (training's
# wait / the stage's wall time). Bookkeeping, not eval metrics: a sweep cannot optimise them.
EVAL_WALL, EVAL_CPU, EVAL_STEPS = "wall_s", "cpu_s", "env_steps"  # of the process that played the evaluation
EVAL_WAIT = "training_wait_s"  # seconds the training process was blocked by the evaluation (inline: all of it)
EVAL_TIME_FIELDS = (EVAL_WALL, EVAL_CPU, EVAL_STEPS, EVAL_WAIT)
EVAL_TIME_PREFIX = "eval_time/"
EVAL_COUNT = "evaluations"  # in a stage's totals: how many evaluations of the kind were recorded
STAGE_EVAL_TIME_KEY, STAGE_EVAL_SHARE_KEY = "eval_time", "eval_share"
WANDB_FILE = "wandb.json"
STAGE_CONFIG_FILE = "config.toml"
MODEL_FILE = "model.zip"
VECNORM_FILE = "vecnormalize.pkl"
EVALUATIONS_FILE = "evaluations.npz"
BEST_DIR = "best"
BEST_META_FILE = "best.json"
FINAL_META_FILE = "final.json"  # checksums of the stage's final model.zip and vecnormalize.pkl
START_POLICY_FILE = "start_policy.pt"  # the policy a warm-started stage began with (its anchor_coef pulls to it)
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tb"
POLICY_CHOICES = ("best", "final")
_TMP_PREFIX = ".tmp-"
_STAGE_DIR = re.compile(r"stage(\d+)")
_CHECKPOINT_META = re.compile(r"step_(\d+)\.json")


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
    """The parsed JSON file (raises ``OSError`` / ``json.JSONDecodeError`` like :func:`json.loads`)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def stopped_on(record: dict[str, Any]) -> list[str]:
    """The criteria an evaluation's metrics.jsonl record says it stopped early on ([]: it played every episode)."""
    return sorted(k[len(EVAL_STOPPED_PREFIX):] for k, v in record.items() if k.startswith(EVAL_STOPPED_PREFIX) and v)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Dict records of a JSON-lines file, [] when it does not exist; a torn last line (still being written) is
    skipped (see :func:`parse_json_lines`)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    return parse_json_lines(data.splitlines())


def parse_json_lines(lines: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """The dict records among JSON lines; blank, torn (still being written) or non-dict lines are skipped."""
    records = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:  # JSONDecodeError, or bytes that are not UTF-8 (a torn multi-byte character)
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
    """``<run_dir>/stage<N>``."""
    return Path(run_dir) / f"stage{stage}"


def stage_number(folder: Path) -> Optional[int]:
    """N for a folder named ``stage<N>``, else None."""
    match = _STAGE_DIR.fullmatch(Path(folder).name)
    return int(match.group(1)) if match else None


def stage_dirs(run_dir: Path) -> dict[int, Path]:
    """``{N: run_dir/stage<N>}`` for every ``stage<N>/`` folder of a run, by stage number ({} for no folder)."""
    run_dir = Path(run_dir)
    found = {}
    for child in run_dir.iterdir() if run_dir.is_dir() else ():
        number = stage_number(child)
        if number is not None and child.is_dir():
            found[number] = child
    return dict(sorted(found.items()))


def policy_files(stage_folder: Path, prefer: str = "best") -> tuple[Optional[Path], Optional[Path]]:
    """(model, vecnormalize) of a stage: the pair in ``best/`` when it holds a model, else the stage's final pair
    (the other order with ``prefer="final"``); ``(None, None)`` when neither holds a model.

    The vecnormalize file is always the one saved next to the model (None when that folder has none), never one
    from the other folder: observation statistics belong to the policy that was trained with them.
    """
    if prefer not in POLICY_CHOICES:
        raise DinosimError(f"prefer={prefer!r}: use 'best' or 'final'")
    for which in (POLICY_CHOICES if prefer == "best" else POLICY_CHOICES[::-1]):
        model, vecnorm = select_policy(stage_folder, which)
        if model is not None:
            return model, vecnorm
    return None, None


def select_policy(stage_folder: Path, which: str) -> tuple[Optional[Path], Optional[Path]]:
    """(model, vecnormalize) of a stage folder chosen by ``which``: ``"best"`` or ``"final"`` (that pair only), a
    checkpoint's global step (digits; both files must exist), or ``"auto"``: :func:`policy_files`, else the newest
    complete checkpoint. ``(None, None)`` when the choice holds no model."""
    stage_folder = Path(stage_folder)
    if which in POLICY_CHOICES:
        folder = stage_folder / BEST_DIR if which == "best" else stage_folder
        if not (folder / MODEL_FILE).exists():
            return None, None
        return folder / MODEL_FILE, (folder / VECNORM_FILE) if (folder / VECNORM_FILE).exists() else None
    if which.isdigit():
        model, vecnorm, _ = checkpoint_paths(stage_folder, int(which))
        return (model, vecnorm) if model.exists() and vecnorm.exists() else (None, None)
    model, vecnorm = policy_files(stage_folder)
    checkpoints = complete_checkpoints(stage_folder) if model is None else []
    return (checkpoints[-1][1], checkpoints[-1][2]) if checkpoints else (model, vecnorm)


def pair_meta_file(model: Path) -> Path:
    """The meta file holding the checksums of the policy pair whose model is ``model``: ``best/best.json``, a
    checkpoint's ``step_<N>.json``, or the stage's ``final.json`` (written after the pair; it may not exist yet,
    or at all for runs from before checksums)."""
    model = Path(model)
    if model.parent.name == BEST_DIR:
        return model.parent / BEST_META_FILE
    suffix = f"_{MODEL_FILE}"
    if model.parent.name == CHECKPOINTS_DIR and model.name.endswith(suffix):
        return model.with_name(model.name[: -len(suffix)] + ".json")
    return model.parent / FINAL_META_FILE


def checkpoint_paths(stage_folder: Path, step: int) -> tuple[Path, Path, Path]:
    """(model, vecnormalize, meta) of the checkpoint at global ``step``; the meta file is written last."""
    folder = Path(stage_folder) / CHECKPOINTS_DIR
    stem = f"step_{step:012d}"
    return folder / f"{stem}_{MODEL_FILE}", folder / f"{stem}_{VECNORM_FILE}", folder / f"{stem}.json"


def complete_checkpoints(stage_folder: Path) -> list[tuple[int, Path, Path, Path]]:
    """Checkpoints whose three files all exist, oldest first: ``(step, model, vecnormalize, meta)``."""
    folder = Path(stage_folder) / CHECKPOINTS_DIR
    out = []
    if folder.is_dir():
        for meta in folder.glob("step_*.json"):
            match = _CHECKPOINT_META.fullmatch(meta.name)
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
