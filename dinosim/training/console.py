"""What a run prints on the terminal besides the progress bar: one line per evaluation.

The default output (``NORMAL``) is the progress bar plus :func:`eval_line` after each evaluation; ``VERBOSE`` adds
SB3's tables (``RunHooks.log_stdout``); ``QUIET`` prints neither (errors and the final summary line only).
Standard library only.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, TextIO


def eval_line(record: dict[str, Any], streak: int, required: int) -> str:
    """``stage 1  step 20,000  eval return 512.3 ± 40.1  length 480  success 0.67  gate streak 1/3`` from a
    metrics.jsonl record (``success`` only when the stage has a success criterion)."""
    parts = [f"stage {record['stage']}", f"step {int(record['global_step']):,}",
             f"eval return {record['eval/mean_reward']:.1f} ± {record.get('eval/std_reward') or 0.0:.1f}",
             f"length {record['eval/mean_ep_length']:.0f}"]
    if record.get("eval/success_rate") is not None:
        parts.append(f"success {record['eval/success_rate']:.2f}")
    parts.append(f"gate streak {streak}/{required}" + ("  gate passed" if streak >= required else ""))
    return "  ".join(parts)


def eval_printer(streak_of: Callable[[int], tuple[int, int]],
                 stream: Optional[TextIO] = None) -> Callable[[dict[str, Any]], None]:
    """An eval sink (see ``RunHooks.eval_sinks``) printing :func:`eval_line`; ``streak_of(stage)`` returns the
    stage's (current gate streak, evaluations required in a row), read when the record arrives."""

    def sink(record: dict[str, Any]) -> None:
        streak, required = streak_of(int(record["stage"]))
        print(eval_line(record, streak, required), file=stream or sys.stdout, flush=True)

    return sink
