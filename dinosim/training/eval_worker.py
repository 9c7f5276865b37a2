"""Background evaluation: a separate process plays evaluation plans on policy snapshots while training continues.

The training process sends one :class:`SnapshotJob` at a time (the :class:`~dinosim.training.evaluation.EvalPlan`
and the snapshot as bytes: the SB3 model zip and the pickled VecNormalize, exactly what ``best/`` stores) and gets
an :class:`~dinosim.training.evaluation.EvalOutcome` back. The process is started with the ``spawn`` method (no
forked torch or MuJoCo state), builds the stage's eval envs once and reuses them for every job. At most one job is
in flight: the caller waits for it before sending the next. A process that dies (crash, OOM kill, ``kill -9``)
surfaces as :class:`EvalWorkerDied`; :func:`play_snapshot` plays the same job in the training process instead.
"""

from __future__ import annotations

import io
import multiprocessing
import pickle
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from dinosim.training.evaluation import EvalOutcome, EvalPlan, model_policy, obs_normalizer, play_plan

_START_METHOD = "spawn"


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
        return [self.factory(self.species, dict(self.env_kwargs), None) for _ in range(max(1, self.count))]

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
    algorithm: str
    model_zip: bytes
    vecnorm: bytes
    deterministic: bool = True


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


def play_snapshot(job: SnapshotJob, envs: Sequence[Any]) -> EvalOutcome:
    """Load the job's snapshot (on the CPU) and play its plan on ``envs``; used by the process and the fallback.
    The caller's global random states are left as they were."""
    from dinosim.training.builders import algorithm_class

    with _global_rngs_kept():
        model = algorithm_class(job.algorithm).load(io.BytesIO(job.model_zip), device="cpu")
    normalize = obs_normalizer(pickle.loads(job.vecnorm) if job.vecnorm else None)
    return play_plan(job.plan, model_policy(model, job.deterministic), envs, normalize)


def _serve(conn: Any, spec: EnvSpec) -> None:
    """The evaluation process: build the envs once, then answer every job with its outcome until ``None``/EOF."""
    import signal

    from dinosim.training.builders import configure_torch_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: training handles it
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
            conn.send(play_snapshot(job, envs))
    finally:
        for env in envs:
            env.close()


class BackgroundEvaluator:
    """The training side of the evaluation process: submit one job, poll or wait for its outcome, close.

    Contract: :meth:`submit` requires no job in flight (call :meth:`wait` first); :meth:`poll` and :meth:`wait`
    return the outcome of the job in flight (None from ``poll`` while it runs or when nothing is in flight) and
    raise :class:`EvalWorkerDied` when the process is gone; after that the evaluator is closed and
    :attr:`pending` still holds the unanswered job so the caller can play it itself.
    """

    def __init__(self, spec: EnvSpec) -> None:
        ctx = multiprocessing.get_context(_START_METHOD)
        self._conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_serve, args=(child, spec), name="dinosim-eval", daemon=True)
        self.process.start()
        child.close()
        self.pending: Optional[SnapshotJob] = None
        self.submitted_at = 0.0

    @property
    def busy(self) -> bool:
        return self.pending is not None

    def submit(self, job: SnapshotJob) -> None:
        if self.pending is not None:
            raise RuntimeError("an evaluation is already in flight")
        self.pending, self.submitted_at = job, time.perf_counter()
        try:
            self._conn.send(job)
        except (BrokenPipeError, ConnectionError, OSError):
            self._died()

    def poll(self) -> Optional[EvalOutcome]:
        if self.pending is None:
            return None
        try:
            ready = self._conn.poll()
        except (OSError, EOFError):
            self._died()
        return self._receive() if ready else None

    def wait(self) -> Optional[EvalOutcome]:
        return self._receive() if self.pending is not None else None

    def _receive(self) -> EvalOutcome:
        try:
            outcome = self._conn.recv()
        except (EOFError, ConnectionError, OSError):
            self._died()
        self.pending = None
        return outcome

    def _died(self) -> None:
        self.process.join(timeout=5)
        self.close()
        raise EvalWorkerDied(self.process.exitcode)

    def close(self) -> None:
        """Stop the process (an evaluation in flight is abandoned); safe to call twice."""
        if self.process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, ConnectionError, OSError):
                pass
            self.process.join(timeout=2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)
        self._conn.close()
