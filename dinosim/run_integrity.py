"""Checksummed policy files: checkpoints written as one unit, ``best/`` swapped as one pair (standard library only).

Contracts:

* A checkpoint is ``step_<N>_model.zip``, ``step_<N>_vecnormalize.pkl`` and ``step_<N>.json``, written in that order;
  the meta file, written last, holds ``"sha256": {file name: hex digest}`` of the two others, so it commits the
  unit: a checkpoint counts only when its meta file parses and both digests match (:func:`checkpoint_damage`).
  A save that fails half-way removes what it wrote (:func:`write_checkpoint`).
* ``best/`` (``model.zip``, ``vecnormalize.pkl``, ``best.json`` with the digests) is first written complete into a
  temporary folder next to it, then exchanged with the old ``best/`` in one ``renameat2(RENAME_EXCHANGE)`` call
  (Linux); elsewhere two renames, where a kill in between leaves no ``best/`` (readers then use the final model),
  never a mixed pair (:func:`save_best_pair`).
* A stage's final ``model.zip`` and ``vecnormalize.pkl`` are followed by ``final.json`` with their digests; a
  stale ``final.json`` is removed first, so it never vouches for other files (:func:`save_final_pair`).
* :func:`check_policy_pair` verifies any model/normalisation pair (best, final or a checkpoint) against the digests
  of its meta file (:func:`dinosim.runfolder.pair_meta_file`) before it is unpickled; a damaged or missing file is
  named in a one-line :class:`~dinosim.errors.DinosimError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from dinosim.errors import DinosimError
from dinosim.runfolder import (
    BEST_DIR,
    BEST_META_FILE,
    FINAL_META_FILE,
    MODEL_FILE,
    POLICY_CHOICES,
    VECNORM_FILE,
    atomic_write_bytes,
    atomic_write_json,
    checkpoint_paths,
    complete_checkpoints,
    file_mode,
    pair_meta_file,
    select_policy,
)

DIGESTS_KEY = "sha256"
_TMP_BEST_PREFIX = ".tmp-best."  # the run folder's temp-file prefix: cleaned up after a kill

Checkpoint = tuple[int, Path, Path, Path]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digests_damage(folder: Path, digests: Any) -> Optional[str]:
    """None when every ``{file name: sha256}`` of ``digests`` matches the file in ``folder``, else why not."""
    if not isinstance(digests, dict) or not digests:
        return f"{folder}: the checksums are not a table of file digests"
    for name, expected in digests.items():
        path = Path(folder) / str(name)
        try:
            actual = sha256_file(path)
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
        if actual != expected:
            return f"{path}: damaged (its sha256 differs from the one recorded when it was written)"
    return None


def _read_meta(path: Path) -> tuple[Optional[dict], Optional[str]]:
    """(the JSON object in ``path``, None) or (None, why it cannot be used)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    except ValueError:
        return None, f"{path}: not valid JSON (truncated or damaged)"
    if not isinstance(data, dict):
        return None, f"{path}: expected a JSON object, found {type(data).__name__}"
    return data, None


def _zip_damage(path: Path) -> Optional[str]:
    """For files written before checksums existed: the model must at least be a readable zip archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        return f"{path}: not a readable model archive ({exc})"
    return f"{path}: damaged member {bad}" if bad else None


def model_bytes(model: Any) -> bytes:
    """What ``model.save(path)`` writes (an SB3 zip archive), in memory."""
    import io

    buffer = io.BytesIO()
    model.save(buffer)
    return buffer.getvalue()


def vecnormalize_bytes(vec_normalize: Any) -> bytes:
    """What ``VecNormalize.save(path)`` writes (a pickle of the wrapper without its venv), in memory."""
    import pickle

    return pickle.dumps(vec_normalize)


# -- checkpoints ------------------------------------------------------------------------------------------------------
def write_checkpoint(stage_folder: Path, step: int, model_bytes: bytes, vecnorm_bytes: bytes,
                     meta: Mapping[str, Any]) -> None:
    """Write the checkpoint at ``step`` as one unit (model, normalisation, then the meta file with their digests).

    An intact checkpoint at the same step is kept as it is (no step trained since, e.g. Ctrl-C right after a
    resume): rewriting it could only lose it. A failure removes the files of this step, so no half checkpoint is
    left for pruning to miss.
    """
    model, vecnorm, meta_path = checkpoint_paths(stage_folder, step)
    if meta_path.exists() and checkpoint_damage((step, model, vecnorm, meta_path)) is None:
        return
    try:
        meta_path.unlink(missing_ok=True)  # a stale meta must not commit the new files before they are complete
        atomic_write_bytes(model, model_bytes)
        atomic_write_bytes(vecnorm, vecnorm_bytes)
        atomic_write_json(meta_path, {**meta, DIGESTS_KEY: {model.name: sha256_bytes(model_bytes),
                                                            vecnorm.name: sha256_bytes(vecnorm_bytes)}})
    except BaseException:
        for path in (meta_path, model, vecnorm):
            try:
                path.unlink()
            except OSError:
                pass
        raise


def checkpoint_damage(checkpoint: Checkpoint, check_state: Optional[Callable[[Any], Any]] = None) -> Optional[str]:
    """None for an intact checkpoint, else a one-line reason naming the damaged file. ``check_state`` (raising
    TypeError/ValueError) vets the stage state stored in the meta file."""
    _, model, vecnorm, meta_path = checkpoint
    meta, problem = _read_meta(meta_path)
    if meta is None:
        return problem
    if not isinstance(meta.get("state"), dict):
        return f"{meta_path}: no stage state in it"
    if check_state is not None:
        try:
            check_state(meta["state"])
        except (TypeError, ValueError) as exc:
            return f"{meta_path}: damaged stage state ({exc})"
    if DIGESTS_KEY in meta:
        digests = meta[DIGESTS_KEY]
        if not isinstance(digests, dict) or set(digests) != {model.name, vecnorm.name}:
            return f"{meta_path}: its checksums do not name {model.name} and {vecnorm.name}"
        return digests_damage(model.parent, digests)
    return _zip_damage(model)  # written before checksums existed


def newest_intact_checkpoint(stage_folder: Path, check_state: Optional[Callable[[Any], Any]] = None
                             ) -> tuple[Optional[Checkpoint], list[tuple[int, str]]]:
    """(the newest intact checkpoint or None, [(step, reason) of every newer damaged one], newest first)."""
    damaged: list[tuple[int, str]] = []
    for checkpoint in reversed(complete_checkpoints(stage_folder)):
        reason = checkpoint_damage(checkpoint, check_state)
        if reason is None:
            return checkpoint, damaged
        damaged.append((checkpoint[0], reason))
    return None, damaged


def remove_checkpoint(checkpoint: Checkpoint) -> None:
    """Delete a checkpoint, meta file first (so it never looks complete without its files)."""
    _, model, vecnorm, meta = checkpoint
    for path in (meta, model, vecnorm):
        try:
            path.unlink()
        except OSError:
            pass


# -- best/ ------------------------------------------------------------------------------------------------------------
def save_best_pair(stage_folder: Path, model_bytes: bytes, vecnorm_bytes: bytes, meta: Mapping[str, Any]) -> Path:
    """Replace ``<stage_folder>/best/`` by the given pair and ``best.json`` (``meta`` + digests) as one unit."""
    stage_folder = Path(stage_folder)
    stage_folder.mkdir(parents=True, exist_ok=True)
    best = stage_folder / BEST_DIR
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_BEST_PREFIX, dir=stage_folder))
    try:
        os.chmod(tmp, file_mode(directory=True))  # mkdtemp makes 0700
        atomic_write_bytes(tmp / MODEL_FILE, model_bytes)
        atomic_write_bytes(tmp / VECNORM_FILE, vecnorm_bytes)
        atomic_write_json(tmp / BEST_META_FILE, {**meta, DIGESTS_KEY: {MODEL_FILE: sha256_bytes(model_bytes),
                                                                     VECNORM_FILE: sha256_bytes(vecnorm_bytes)}})
        if not (best.is_dir() and _exchange(tmp, best)):  # after an exchange, tmp holds the old pair
            old = tmp.with_name(tmp.name + ".old")  # a kill before the next rename: no best/, never a mixed pair
            if best.exists():
                os.rename(best, old)
            os.rename(tmp, best)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(stage_folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return best


def save_final_pair(stage_folder: Path, model_bytes: bytes, vecnorm_bytes: bytes, meta: Mapping[str, Any]) -> None:
    """Write the stage's final ``model.zip`` and ``vecnormalize.pkl``, then ``final.json`` (``meta`` + digests)."""
    stage_folder = Path(stage_folder)
    meta_path = stage_folder / FINAL_META_FILE
    meta_path.unlink(missing_ok=True)  # a stale meta must not vouch for the new files
    atomic_write_bytes(stage_folder / MODEL_FILE, model_bytes)
    atomic_write_bytes(stage_folder / VECNORM_FILE, vecnorm_bytes)
    atomic_write_json(meta_path, {**meta, DIGESTS_KEY: {MODEL_FILE: sha256_bytes(model_bytes),
                                                        VECNORM_FILE: sha256_bytes(vecnorm_bytes)}})


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two folders with Linux ``renameat2(RENAME_EXCHANGE)``; False where that is unavailable."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_policy_pair(model: Path, vecnorm: Optional[Path]) -> None:
    """DinosimError naming the damaged or missing file unless the pair is safe to load: a pair whose meta file
    (``best.json``, ``final.json``, a checkpoint's ``step_<N>.json``) records digests must match them; a
    checkpoint must have its meta file; any other model (runs from before checksums) must at least be a readable
    zip archive, its normalisation file not empty."""
    model = Path(model)
    for path in (model, vecnorm):
        if path is not None and not Path(path).is_file():
            raise DinosimError(f"{path}: missing (or not a file)")
    meta_path = pair_meta_file(model)
    if meta_path.exists():
        meta, problem = _read_meta(meta_path)
        if meta is None:
            raise DinosimError(problem)
        if DIGESTS_KEY in meta:
            digests = meta[DIGESTS_KEY]
            if not isinstance(digests, dict) or model.name not in digests:
                raise DinosimError(f"{meta_path}: its checksums do not name {model.name}")
            problem = digests_damage(model.parent, digests)
            if problem:
                raise DinosimError(problem)
            return
    elif meta_path.name != FINAL_META_FILE and meta_path.name != BEST_META_FILE:
        raise DinosimError(f"{model}: an incomplete checkpoint (no {meta_path.name}, which is written last)")
    problem = _zip_damage(model)
    if problem:
        raise DinosimError(problem)
    if vecnorm is not None and Path(vecnorm).stat().st_size == 0:
        raise DinosimError(f"{vecnorm}: empty file")


@contextlib.contextmanager
def loading(path: Path, what: str = "file") -> Iterator[None]:
    """Turn any failure while unpickling/unzipping ``path`` into one DinosimError line naming it."""
    try:
        yield
    except DinosimError:
        raise
    except Exception as exc:  # noqa: BLE001 - pickle/zip/torch raise many types for a damaged file
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DinosimError(f"{path}: cannot load this {what} ({type(exc).__name__}: {detail[:200]})") from None


def intact_policy(stage_folder: Path) -> tuple[Optional[Path], Optional[Path], list[tuple[str, str]]]:
    """``--model auto`` past damaged files: the first intact pair of ``best``, ``final``, then the checkpoints
    newest first, as ``(model, vecnormalize, skipped)`` where ``skipped`` lists ``(choice, reason)`` for each
    damaged pair passed over (``choice`` as ``--model`` names it: ``best``, ``final`` or a checkpoint's step).
    ``(None, None, skipped)`` when no pair is intact."""
    skipped: list[tuple[str, str]] = []
    for which in POLICY_CHOICES:
        model, vecnorm = select_policy(stage_folder, which)
        if model is None:
            continue
        try:
            check_policy_pair(model, vecnorm)
        except DinosimError as exc:
            skipped.append((which, str(exc)))
            continue
        return model, vecnorm, skipped
    checkpoint, damaged = newest_intact_checkpoint(stage_folder)
    skipped += [(str(step), reason) for step, reason in damaged]
    return (checkpoint[1], checkpoint[2], skipped) if checkpoint is not None else (None, None, skipped)
