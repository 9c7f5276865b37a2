"""An SB3 logger output format that forwards records to W&B at the global step.

``model.logger.output_formats.append(tracker.kv_writer())``: every ``logger.dump(step)`` becomes one W&B history row
at ``global_step = tracker.step_offset + step`` with ``curriculum/stage``; strings, videos, figures, images and
keys excluded for ``"wandb"`` are skipped (they are logged by :meth:`WandbTracker.log_video` instead).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.logger import KVWriter

if TYPE_CHECKING:
    from dinosim.tracking.wandb_run import WandbTracker


class WandbKVWriter(KVWriter):
    """Forward numeric SB3 logger values (``train/*``, ``rollout/*``, ``reward/*``, ``time/*`` ...) to W&B."""

    def __init__(self, tracker: "WandbTracker") -> None:
        self.tracker = tracker

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        row: dict[str, float] = {}
        for key, value in key_values.items():
            excluded = key_excluded.get(key) or ()
            if excluded and "wandb" in excluded:
                continue
            if isinstance(value, bool):
                row[key] = int(value)
            elif isinstance(value, numbers.Number):
                row[key] = float(value) if not isinstance(value, numbers.Integral) else int(value)
            elif hasattr(value, "item") and getattr(value, "size", 2) == 1:  # numpy / torch scalar
                row[key] = float(value.item())
        if row:
            self.tracker.log(row, self.tracker.step_offset + int(step))

    def close(self) -> None:
        """The tracker owns the run; it is finished by ``WandbTracker.finish``."""
