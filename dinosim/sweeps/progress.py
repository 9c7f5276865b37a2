"""Sweep progress: trials done, running, pruned, skipped, failed and the best value so far.

On a TTY a rich live table is refreshed; otherwise one plain line is printed per finished trial (log-friendly).
Counts include the trials of earlier invocations of the same study.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, Any, Optional

from dinosim.sweeps.storage import OVER_CAP, PARAMS_ATTR


class Progress:
    """Plain-line progress (the base class); thread-safe."""

    def __init__(self, spec: Any, stream: Optional[IO[str]] = None) -> None:
        self.spec = spec
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()
        self.counts = {"done": 0, "running": 0, "pruned": 0, "skipped": 0, "failed": 0}
        self.best: Optional[float] = None
        self.best_trial: Optional[int] = None
        self.last: dict[int, tuple[int, float]] = {}

    @staticmethod
    def create(spec: Any, stream: Optional[IO[str]] = None) -> "Progress":
        s = stream or sys.stdout
        if s.isatty():
            return RichProgress(spec, s)
        return Progress(spec, s)

    def start(self, study: Any) -> None:
        from optuna.trial import TrialState

        with self.lock:
            for t in study.get_trials(deepcopy=False):
                if t.state != TrialState.RUNNING and t.state != TrialState.WAITING:
                    self._count(t)
        self.emit(f"sweep {self.spec.name}: {self.spec.method}, metric {self.spec.metric} ({self.spec.goal}); "
                  + self.summary())

    def started(self, number: int) -> None:
        with self.lock:
            self.counts["running"] += 1
        self.refresh()

    def reported(self, number: int, step: int, value: float) -> None:
        with self.lock:
            self.last[number] = (step, value)
        self.refresh()

    def _count(self, t: Any) -> str:
        from optuna.trial import TrialState

        if t.user_attrs.get(OVER_CAP):
            return "not run: run_cap was reached by trials started earlier"
        if t.user_attrs.get("interrupted"):
            return "interrupted (runs again when the sweep is resumed)"
        if t.user_attrs.get("skipped"):
            self.counts["skipped"] += 1
            return f"skipped ({t.user_attrs['skipped']})"
        if t.state == TrialState.COMPLETE:
            self.counts["done"] += 1
            if t.value is not None and (self.best is None or self.spec.better(t.value, self.best)):
                self.best, self.best_trial = t.value, t.number
            return f"complete {self.spec.metric}={t.value:.6g}"
        if t.state == TrialState.PRUNED:
            self.counts["pruned"] += 1
            return f"pruned after {len(t.intermediate_values)} reports"
        self.counts["failed"] += 1
        return f"failed ({str(t.user_attrs.get('fail_reason', 'error')).splitlines()[0][:120]})"

    def finished(self, t: Any, spec: Any) -> None:
        with self.lock:
            if t.user_attrs.get("trial_dir"):
                self.counts["running"] = max(0, self.counts["running"] - 1)
            what = self._count(t)
            self.last.pop(t.number, None)
        params = ", ".join(f"{k}={v}" for k, v in (t.user_attrs.get(PARAMS_ATTR) or {}).items())
        self.emit(f"trial {t.number}: {what} [{params}] | {self.summary()}")

    def summary(self) -> str:
        c = self.counts
        best = "-" if self.best is None else f"{self.best:.6g} (trial {self.best_trial})"
        return (f"done {c['done']}, running {c['running']}, pruned {c['pruned']}, skipped {c['skipped']}, "
                f"failed {c['failed']}, best {best}")

    def emit(self, line: str) -> None:
        with self.lock:
            print(line, file=self.stream, flush=True)

    def refresh(self) -> None:
        """Plain mode prints only when trials finish."""

    def stop(self) -> None:
        self.emit(f"sweep {self.spec.name}: {self.summary()}")


class RichProgress(Progress):
    """A rich live table of the counts and the running trials' latest reports."""

    def __init__(self, spec: Any, stream: IO[str]) -> None:
        super().__init__(spec, stream)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream)
        self.live = Live(console=self.console, refresh_per_second=2, transient=False)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"sweep {self.spec.name} ({self.spec.method}, {self.spec.goal} {self.spec.metric})")
        for col in ("done", "running", "pruned", "skipped", "failed", "best"):
            table.add_column(col, justify="right")
        c = self.counts
        best = "-" if self.best is None else f"{self.best:.6g} (#{self.best_trial})"
        table.add_row(*(str(c[k]) for k in ("done", "running", "pruned", "skipped", "failed")), best)
        for number, (step, value) in sorted(self.last.items()):
            table.add_row("", f"#{number}", f"report {step}", "", "", f"{value:.6g}")
        return table

    def start(self, study: Any) -> None:
        super().start(study)
        self.live.start()
        self.refresh()

    def emit(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)

    def refresh(self) -> None:
        with self.lock:
            table = self._table()
        self.live.update(table)

    def finished(self, t: Any, spec: Any) -> None:
        super().finished(t, spec)
        self.refresh()

    def stop(self) -> None:
        self.refresh()
        self.live.stop()
        super().stop()
