"""Training progress: a rich progress bar on a TTY (steps, fps, stage), plain lines otherwise.

One :class:`ProgressReporter` lives for a whole run; each stage adds a task. :class:`ProgressCallback` feeds it
from SB3. Plain mode prints ``stage N  step a/b (p%)  fps  elapsed`` at most every ``plain_interval`` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback


class ProgressReporter:
    def __init__(self, enabled: bool = True, plain_interval: float = 30.0, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.rich = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.plain_interval = plain_interval
        self._progress: Any = None
        self._task: Any = None
        self._last_print = 0.0
        self._stage = 0
        self._budget = 0
        self._t0 = time.time()
        self._steps0 = 0

    def __enter__(self) -> "ProgressReporter":
        if self.rich:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]stage {task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[fps]:>6.0f} fps"), TimeElapsedColumn(), TimeRemainingColumn(),
                redirect_stdout=True, redirect_stderr=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def start_stage(self, stage: int, done: int, budget: int) -> None:
        self._stage, self._budget, self._t0, self._steps0 = stage, budget, time.time(), done
        if self._progress is not None:
            self._task = self._progress.add_task("train", total=budget, completed=done, stage=stage, fps=0.0)
        elif self.enabled:
            self._line(done, force=True)

    def update(self, done: int) -> None:
        elapsed = max(time.time() - self._t0, 1e-9)
        fps = (done - self._steps0) / elapsed
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=min(done, self._budget), fps=fps)
        elif self.enabled:
            self._line(done)

    def _line(self, done: int, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_print < self.plain_interval:
            return
        self._last_print = now
        elapsed = now - self._t0
        fps = (done - self._steps0) / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * done / self._budget if self._budget else 100.0
        print(f"stage {self._stage}  step {done}/{self._budget} ({pct:.0f}%)  {fps:.0f} fps  "
              f"elapsed {elapsed:.0f}s", file=self.stream, flush=True)

    def finish_stage(self, done: int) -> None:
        if self._progress is None and self.enabled:
            self._line(done, force=True)


class ProgressCallback(BaseCallback):
    """Feeds a :class:`ProgressReporter` with the stage-local step count (throttled to ~10 updates a second)."""

    def __init__(self, reporter: ProgressReporter, stage_start: int) -> None:
        super().__init__()
        self.reporter = reporter
        self.stage_start = stage_start
        self._last = 0.0

    def _on_step(self) -> bool:
        now = time.time()
        if now - self._last >= 0.1:
            self._last = now
            self.reporter.update(self.num_timesteps - self.stage_start)
        return True

    def _on_training_end(self) -> None:
        self.reporter.update(self.num_timesteps - self.stage_start)
        self.reporter.finish_stage(self.num_timesteps - self.stage_start)

