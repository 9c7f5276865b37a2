"""SIGTERM and SIGHUP treated like Ctrl-C (standard library only).

Schedulers and service managers stop a process with SIGTERM (``kill``, ``docker stop``, Slurm, systemd) and a closed
terminal sends SIGHUP. :func:`stop_signals_interrupt` makes both raise :class:`Terminated` -- a
``KeyboardInterrupt`` -- in the main thread, so every path that saves a checkpoint on Ctrl-C does the same for
them. Exit codes follow the shell convention 128 + signal number: 130 Ctrl-C (SIGINT), 129 SIGHUP, 143 SIGTERM
(:func:`exit_code_for`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator, Optional

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 128 + signal.SIGINT
"""Exit codes of dinosim's commands: done, stopped (NaN/inf, ``--strict-gates``), Ctrl-C (see :func:`exit_code_for`)."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_ALL = (signal.SIGINT, *STOP_SIGNALS)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; handled wherever Ctrl-C is. ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code_for(exc: Optional[BaseException]) -> int:
    """128 + the signal that stopped the process: 143 SIGTERM, 129 SIGHUP, else 130 (Ctrl-C)."""
    while exc is not None:
        if isinstance(exc, Terminated):
            return 128 + exc.signum
        exc = exc.__cause__ or exc.__context__
    return 128 + signal.SIGINT


def signal_name(exc: Optional[BaseException]) -> str:
    """"SIGTERM"/"SIGHUP" for a :class:`Terminated` in ``exc``'s chain, else "Ctrl-C"."""
    code = exit_code_for(exc)
    return "Ctrl-C" if code == 128 + signal.SIGINT else signal.Signals(code - 128).name


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def stop_signals_interrupt(handler: Callable[[int, Any], None] = _raise_terminated) -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP call ``handler`` (default: raise :class:`Terminated`); the previous
    handlers come back afterwards. Does nothing outside the main thread (Python delivers signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block (a checkpoint being written), SIGINT, SIGTERM and SIGHUP are ignored so a second signal
    cannot tear the save; the previous handlers come back afterwards (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in _ALL}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
