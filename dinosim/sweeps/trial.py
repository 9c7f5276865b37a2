"""Run one sweep trial as a subprocess and follow its eval results as they happen.

Contract with the training program: it appends JSON lines to the file named by ``DINOSIM_TRIAL_METRICS``; lines
holding the sweep metric (e.g. ``{"global_step": 4096, "eval/mean_reward": 12.5, ...}``) are the trial's
intermediate results, reported to Optuna at step = 1, 2, 3, ... (W&B hyperband counts metric reports the same way);
the last one is the trial's value (W&B uses the run summary, i.e. the last logged value). A line with
``"skipped": true`` means a ``--skip-if`` constraint held and the program ended without training.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from dinosim.sweeps.orphan_guard import guarded_argv

# W&B agent variables: a trial of the offline engine must not believe it runs under `wandb agent`.
AGENT_ENV_VARS = ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH")


@dataclass
class ProcessOutcome:
    """How one trial process ended."""

    values: list[float] = field(default_factory=list)  # every reported value of the metric, in order
    returncode: Optional[int] = None
    pruned: bool = False  # the pruner stopped it
    skipped: Optional[str] = None  # reason, when the program reported a --skip-if skip
    non_finite: bool = False  # a NaN/inf metric value was reported (the process was stopped)
    interrupted: bool = False  # the engine was stopped (Ctrl-C) while it ran
    log_tail: str = ""

    @property
    def stopped_by_metrics(self) -> bool:
        """The engine stopped the process because of what it reported (pruned, or a non-finite value)."""
        return self.pruned or self.non_finite


class MetricsTail:
    """Incrementally read complete JSON lines appended to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        from dinosim.runfolder import parse_json_lines

        return parse_json_lines(lines)


class ProcessRegistry:
    """Live trial processes, so an interrupted engine can stop every one it started (by process group)."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, p: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(p)

    def discard(self, p: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(p)

    def terminate_all(self, timeout: float) -> None:
        self.stopping.set()
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            terminate(p, timeout)


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the trial's process group, SIGKILL it after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()


def trial_env(metrics_path: Path, runs_dir: Path) -> dict[str, str]:
    """Environment of a trial process: ours, minus W&B agent variables, plus the trial's metrics file/run root."""
    env = {k: v for k, v in os.environ.items() if k not in AGENT_ENV_VARS}
    env["DINOSIM_TRIAL_METRICS"] = str(metrics_path)
    env["DINOSIM_RUNS_DIR"] = str(runs_dir)
    env.setdefault("WANDB_MODE", "offline")
    env.setdefault("WANDB_SILENT", "true")
    if "OMP_NUM_THREADS" not in env:
        # One intra-op thread per trial: dinosim's small MLP policies train faster single-threaded (measured: a
        # 2048-step trial took 15 s with 1 thread, 52 s with 2 on a loaded 2-core machine) and parallel trials
        # then use the cores. Set OMP_NUM_THREADS yourself to override.
        env["OMP_NUM_THREADS"] = "1"
    return env


def run_process(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    metrics_path: Path,
    log_path: Path,
    metric: str,
    on_value: Optional[Callable[[int, float], bool]],
    registry: ProcessRegistry,
    poll_interval: float = 0.5,
    term_timeout: float = 10.0,
) -> ProcessOutcome:
    """Start ``argv``, follow ``metrics_path``; ``on_value(step, value)`` returning True prunes (stops) the process."""
    out = ProcessOutcome()
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    follower = _MetricFollower(MetricsTail(metrics_path), metric, on_value, out)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            guarded_argv(argv), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        registry.add(proc)
        try:
            _follow(proc, follower, poll_interval, term_timeout)
        finally:
            if proc.poll() is None:
                terminate(proc, term_timeout)
            registry.discard(proc)
    out.returncode = proc.returncode
    out.interrupted = registry.stopping.is_set() and not out.stopped_by_metrics
    _read_log(out, log_path)
    return out


class _MetricFollower:
    """Feeds the trial's new metric lines into its :class:`ProcessOutcome` and says when the process must stop
    (a non-finite value, or ``on_value`` asking to prune)."""

    def __init__(self, tail: MetricsTail, metric: str, on_value: Optional[Callable[[int, float], bool]],
                 out: ProcessOutcome) -> None:
        self.tail, self.metric, self.on_value, self.out = tail, metric, on_value, out

    def consume(self) -> bool:
        """Read new lines; True when the process must be stopped."""
        return any(self._take(rec) for rec in self.tail.read())

    def _take(self, rec: dict) -> bool:
        out = self.out
        if rec.get("skipped"):
            out.skipped = str(rec.get("reason") or "skipped by constraint")
            return False
        if rec.get(self.metric) is None:  # absent, or null (e.g. eval/success_rate of a stage without successes)
            return False
        try:
            value = float(rec[self.metric])
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            out.non_finite = True
            return True
        out.values.append(value)
        if self.on_value is not None and self.on_value(len(out.values), value):
            out.pruned = True
            return True
        return False


def _follow(proc: subprocess.Popen, follower: _MetricFollower, poll_interval: float, term_timeout: float) -> None:
    """Poll the metrics while the process runs; stop it when the follower says so; wait for its end."""
    while proc.poll() is None:
        if follower.consume():
            terminate(proc, term_timeout)
            break
        time.sleep(poll_interval)
    if not follower.out.stopped_by_metrics:
        follower.consume()  # lines written just before exit
    proc.wait()


def _read_log(out: ProcessOutcome, log_path: Path) -> None:
    """The log's last lines into ``out.log_tail``; a ``skipped: <reason>`` line of a silent clean exit into
    ``out.skipped``."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    out.log_tail = "\n".join(lines[-15:])
    if out.skipped is None and out.returncode == 0 and not out.values:
        # `dinosim train --skip-if` prints "skipped: <reason>" and exits 0 (the marker line is the primary signal)
        for line in lines:
            if line.startswith("skipped: "):
                out.skipped = line[len("skipped: "):].strip()
