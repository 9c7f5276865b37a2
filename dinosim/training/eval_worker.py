"""Background evaluation: a separate process plays evaluation plans on policy snapshots while training continues.

The training process sends one :class:`SnapshotJob` at a time (the :class:`~dinosim.training.eval_plan.EvalPlan`
and the snapshot as bytes: the SB3 model zip and the pickled VecNormalize, exactly what ``best/`` stores) and gets
an :class:`~dinosim.training.eval_plan.EvalOutcome` back. The process is started with the ``spawn`` method (no
forked torch or MuJoCo state), builds the stage's eval envs once and reuses them for every job. At most one job is
in flight: the caller waits for it before sending the next. A process that dies (crash, OOM kill, ``kill -9``)
surfaces as :class:`EvalWorkerDied`; :func:`play_snapshot` plays the same job in the training process instead.

The process never outlives the training process: a watchdog thread, started before the heavy imports, ends it
within ``PARENT_POLL`` seconds of the training process's death (``kill -9`` included), also in the middle of an
evaluation. A job is sent by a thread, so :meth:`BackgroundEvaluator.submit` never blocks while the process is
still starting (a snapshot of a [256, 256] policy is larger than the pipe's buffer).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from dinosim.training.eval_plan import EvalOutcome, EvalPlan, play_plan
from dinosim.training.evaluation import model_policy, obs_normalizer

_START_METHOD = "spawn"
GATE_STARTED = "gate started"  # sent before a job's outcome when its screening passed and its gate evaluation begins
PARENT_POLL = 0.5  # seconds between the evaluation process's checks that the training process still runs


class EvalWorkerDied(RuntimeError):
    """The evaluation process ended without answering (``exitcode`` as multiprocessing reports it)."""

    def __init__(self, exitcode: Optional[int]) -> None:
        super().__init__(f"the background evaluation process died (exit code {exitcode})")
        self.exitcode = exitcode


@dataclass(frozen=True)
class EnvSpec:
    """How the evaluation process builds its envs: ``count`` times ``factory(species, dict(env_kwargs), None)``."""

    factory: Callable[[str, dict, Optional[int]], Any]
    species: str
    env_kwargs: dict
    count: int

    def build(self) -> list:
        return [self.build_one() for _ in range(max(1, self.count))]

    def build_one(self) -> Any:
        return self.factory(self.species, dict(self.env_kwargs), None)

    def picklable(self) -> bool:
        """Whether the spec can be sent to a spawned process (a lambda or local factory cannot)."""
        try:
            pickle.dumps(self)
        except Exception:  # noqa: BLE001 - pickling errors have no common base class
            return False
        return True


@dataclass(frozen=True)
class SnapshotJob:
    """An evaluation plan and the snapshot it evaluates (``model_zip``: SB3 zip; ``vecnorm``: pickled VecNormalize,
    ``b""`` without one)."""

    plan: EvalPlan
    model_zip: bytes
    vecnorm: bytes


class _NoOptimizer:
    """Stands in for the optimizers SB3 policies build: evaluation never trains, and the first torch optimizer
    built in a process imports ``torch._dynamo`` (measured: ~2.4 of the ~5.5 CPU seconds a new evaluation process
    spent before its first answer)."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        del params, kwargs


def load_policy(model_zip: bytes) -> Any:
    """The policy of an SB3 model zip (any algorithm), on the CPU, in evaluation mode, without optimizers: what
    ``Algorithm.load(...).policy`` gives for inference (``model.predict`` is ``model.policy.predict``)."""
    from stable_baselines3.common.save_util import load_from_zip_file

    data, params, _ = load_from_zip_file(io.BytesIO(model_zip), device="cpu")
    kwargs = {**(data.get("policy_kwargs") or {}), "optimizer_class": _NoOptimizer}
    kwargs.pop("device", None)
    if data.get("use_sde") and "use_sde" not in kwargs:  # on-policy algorithms pass it outside policy_kwargs
        kwargs["use_sde"] = True
    policy = data["policy_class"](data["observation_space"], data["action_space"], lambda _: 0.0, **kwargs)
    policy.load_state_dict(params["policy"])
    policy.set_training_mode(False)
    return policy


@contextmanager
def _global_rngs_kept() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global random states on exit (SB3's ``load`` reseeds them with the
    saved model's seed, which would change the training that continues in this process)."""
    import random

    import numpy as np
    import torch

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def play_snapshot(job: SnapshotJob, envs: Sequence[Any], on_gate: Optional[Callable[[], None]] = None) -> EvalOutcome:
    """Load the job's snapshot (on the CPU) and play its plan on ``envs``; used by the process and the fallback.
    The caller's global random states are left as they were (building a policy draws its initial weights);
    ``on_gate``: see :func:`~dinosim.training.eval_plan.play_plan`."""
    with _global_rngs_kept():
        policy = load_policy(job.model_zip)
    normalize = obs_normalizer(pickle.loads(job.vecnorm) if job.vecnorm else None)
    deterministic = job.plan.curriculum.eval_deterministic
    return play_plan(job.plan, model_policy(policy, deterministic), envs, normalize, on_gate)


def _exit_with_parent(parent_pid: int, sentinel: Optional[int]) -> None:
    """Watchdog thread body: end this process at once when the training process is gone (its sentinel pipe closed,
    or this process re-parented). ``os._exit``: an evaluation in flight is abandoned, nobody waits for it."""
    from multiprocessing.connection import wait

    while os.getppid() == parent_pid:
        if sentinel is None:
            time.sleep(PARENT_POLL)
        elif wait([sentinel], timeout=PARENT_POLL):
            break
    os._exit(0)


def _watch_parent() -> None:
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None) if parent is not None else None
    threading.Thread(target=_exit_with_parent, args=(os.getppid(), sentinel), name="dinosim-eval-watchdog",
                     daemon=True).start()


def _serve(conn: Any, spec: EnvSpec) -> None:
    """The evaluation process: build the envs once, then answer every job with its outcome until ``None``/EOF."""
    import signal

    _watch_parent()  # before torch is imported: a start-up under load takes tens of seconds
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: training handles it

    from dinosim.training.builders import configure_torch_threads

    configure_torch_threads()
    envs = spec.build()
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:  # the training process is gone
                return
            if job is None:
                return
            try:
                conn.send(play_snapshot(job, envs, lambda: conn.send(GATE_STARTED)))
            except (BrokenPipeError, ConnectionError):  # the training process closed its end meanwhile
                return
    finally:
        for env in envs:
            env.close()


class BackgroundEvaluator:
    """The training side of the evaluation process: submit one job, poll or wait for its outcome, close.

    Contract: :meth:`submit` requires no job in flight (call :meth:`wait` first); :meth:`poll` and :meth:`wait`
    return the outcome of the job in flight (None from ``poll`` while it runs or when nothing is in flight) and
    raise :class:`EvalWorkerDied` when the process is gone; after that the evaluator is closed and
    :attr:`pending` still holds the unanswered job so the caller can play it itself. :attr:`gate_started` turns
    true (seen by ``poll``) once the job in flight has passed its screening and plays its gate evaluation.
    """

    def __init__(self, spec: EnvSpec) -> None:
        ctx = multiprocessing.get_context(_START_METHOD)
        self._conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_serve, args=(child, spec), name="dinosim-eval", daemon=True)
        self.process.start()
        child.close()
        self.pending: Optional[SnapshotJob] = None
        self.gate_started = False
        self.submitted_at = 0.0
        self._sender: Optional[threading.Thread] = None
        self._send_failed = False

    @property
    def busy(self) -> bool:
        return self.pending is not None

    def submit(self, job: SnapshotJob) -> None:
        """Hand ``job`` to a sending thread and return at once (the process may still be starting)."""
        if self.pending is not None:
            raise RuntimeError("an evaluation is already in flight")
        self.pending, self.submitted_at, self.gate_started = job, time.perf_counter(), False
        self._sender = threading.Thread(target=self._send, args=(job,), name="dinosim-eval-send", daemon=True)
        self._sender.start()

    def _send(self, job: SnapshotJob) -> None:
        try:
            self._conn.send(job)
        except (BrokenPipeError, ConnectionError, OSError):  # the process is gone: poll/wait report it
            self._send_failed = True

    def poll(self) -> Optional[EvalOutcome]:
        while self.pending is not None:
            try:
                ready = self._send_failed or self._conn.poll()
            except (OSError, EOFError):
                self._died()
            if not ready:
                return None
            outcome = self._receive()
            if outcome is not None:
                return outcome
        return None

    def wait(self) -> Optional[EvalOutcome]:
        while self.pending is not None:
            outcome = self._receive()
            if outcome is not None:
                return outcome
        return None

    def _receive(self) -> Optional[EvalOutcome]:
        """The next message: the outcome (the job is then done), or None after :data:`GATE_STARTED`."""
        try:
            if self._send_failed:
                raise EOFError
            message = self._conn.recv()
        except (EOFError, ConnectionError, OSError):
            self._died()
        if isinstance(message, str) and message == GATE_STARTED:
            self.gate_started = True
            return None
        self.pending = None
        return message

    def _died(self) -> None:
        self.process.join(timeout=5)
        self.close()
        raise EvalWorkerDied(self.process.exitcode)

    def close(self) -> None:
        """Stop the process (an evaluation in flight is abandoned); safe to call twice."""
        sending = self._sender is not None and self._sender.is_alive()
        if self.process.is_alive():
            if not sending:  # a half-sent job must not be followed by other bytes: the process is killed instead
                try:
                    self._conn.send(None)
                except (BrokenPipeError, ConnectionError, OSError):
                    pass
                self.process.join(timeout=2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)
        if self._sender is not None:
            self._sender.join(timeout=5)  # its send fails once the process is gone
        self._conn.close()
