"""What a run prints on the terminal besides the progress bar: one line per evaluation (screening or gate check).

The default output (``NORMAL``) is the progress bar plus :func:`eval_line` after each evaluation; ``VERBOSE`` adds
SB3's tables (``RunHooks.log_stdout``); ``QUIET`` prints neither (errors and the final summary line only).
Standard library only.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, TextIO

from dinosim.runfolder import stopped_on


def eval_line(record: dict[str, Any], streak: int, required: int) -> str:
    """One metrics.jsonl record as a line. A screening (``eval_kind`` "screen", the default):
    ``stage 1  step 20,000  eval return 512.3 ± 40.1  length 480  success 0.67  gate streak 1/3``; a gate
    evaluation: ``stage 1  step 20,000  gate check (100 episodes): return 508.2 ± 45.0 (lower bound 500.8)  length
    478  success 0.66 (lower bound 0.58)``. ``success`` only in stages with a success criterion. An evaluation that
    stopped early ends with ``stopped after 4 episodes: success out of reach``."""
    gate = record.get("eval_kind") == "gate"
    success = record.get("eval/success_rate")
    parts = [f"stage {record['stage']}", f"step {int(record['global_step']):,}"]
    head = f"gate check ({record.get('eval/episodes', '?')} episodes): return" if gate else "eval return"
    ret = f"{head} {record['eval/mean_reward']:.1f} ± {record.get('eval/std_reward') or 0.0:.1f}"
    parts.append(ret + (f" (lower bound {record['eval/return_lb']:.1f})" if gate and "eval/return_lb" in record
                        else ""))
    parts.append(f"length {record['eval/mean_ep_length']:.0f}")
    if success is not None:
        low = record.get("eval/success_lb")
        parts.append(f"success {success:.2f}" + (f" (lower bound {low:.2f})" if gate and low is not None else ""))
    if not gate:
        parts.append(f"gate streak {streak}/{required}")
    stopped = stopped_on(record)
    if stopped:
        parts.append(f"stopped after {record.get('eval/episodes', '?')} episodes: {' and '.join(stopped)} out of reach")
    return "  ".join(parts)


def eval_printer(streak_of: Callable[[int], tuple[int, int]],
                 stream: Optional[TextIO] = None) -> Callable[[dict[str, Any]], None]:
    """An eval sink (see ``RunHooks.eval_sinks``) printing :func:`eval_line`; ``streak_of(stage)`` returns the
    stage's (current gate streak, evaluations required in a row), read when the record arrives."""

    def sink(record: dict[str, Any]) -> None:
        streak, required = streak_of(int(record["stage"]))
        print(eval_line(record, streak, required), file=stream or sys.stdout, flush=True)

    return sink
