"""Start a trial so that it dies with the sweep engine: ``python -m dinosim.sweeps.orphan_guard PID -- ARGV...``.

Trial processes run in their own session (so a Ctrl-C of the terminal reaches the engine only, which then stops them
in order). If the engine itself is killed (kill -9, OOM killer, a crash), nothing would stop them: they would train
to their full budget, unseen, while the next ``sweep run`` queues their parameters again. On Linux this launcher asks
the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``), checks that the
parent is still engine ``PID`` (it may have died before the request), then replaces itself with ``ARGV``. A dinosim
trial handles that SIGTERM like Ctrl-C: checkpoint, exit 143. Elsewhere it only ``exec``s.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Optional, Sequence

PR_SET_PDEATHSIG = 1


def guarded_argv(argv: Sequence[str], interpreter: str = sys.executable, parent: Optional[int] = None) -> list[str]:
    """``argv`` wrapped by this launcher, for a child of process ``parent`` (default: this process)."""
    return [interpreter, "-m", "dinosim.sweeps.orphan_guard", str(parent or os.getpid()), "--", *argv]


def die_with_parent(parent: int) -> bool:
    """Ask for SIGTERM when the parent dies; False when the parent is already gone (or not ``parent``)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return os.getppid() == parent


def main(args: Sequence[str]) -> int:
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print("usage: python -m dinosim.sweeps.orphan_guard ENGINE_PID -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    if not die_with_parent(int(args[0])):
        return 128 + signal.SIGTERM  # the engine died before the trial started
    argv = list(args[2:])
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"error: cannot start {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
