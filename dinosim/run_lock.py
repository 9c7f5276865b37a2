"""One process per run folder: an OS lock on ``<run_dir>/.lock`` held for the whole run (standard library only).

Contract: :func:`lock_run_dir` takes an exclusive, non-blocking ``fcntl.flock`` on the lock file and keeps the
descriptor open until :meth:`RunLock.release` (or the process ends: the kernel drops the lock of a dead process, so
a kill -9, a crash or a reboot never leaves a lock behind and no PID is ever trusted). A second `train`/`resume` of
the same folder gets a :class:`~dinosim.errors.DinosimError` (one line, exit 2) naming the holder's PID, which the
holder writes into the lock file for that message only.

The descriptor is not inherited by exec'd children (Python's default); forked env workers share it and die with
their parent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from dinosim.errors import DinosimError

LOCK_FILE = ".lock"


class RunLock:
    """A held lock on one run folder; release it (or let the process end) when the run stops."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir, self._fd = Path(run_dir), fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_dir(run_dir: Path) -> RunLock:
    """Lock ``run_dir`` (which must exist) for this process; DinosimError when another process holds it."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # the umask applies
    except OSError as exc:
        raise DinosimError(f"{path}: cannot create the run's lock file ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f"process {holder}" if holder else "another process"
        raise DinosimError(f"{run_dir}: {who} is already training this run; wait for it to stop (or stop it) "
                           "before `train`/`resume` here") from None
    except OSError as exc:  # a file system without flock support
        os.close(fd)
        raise DinosimError(f"{path}: cannot lock the run folder ({exc.strerror})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return RunLock(Path(run_dir), fd)


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
