"""The stage's evaluation and gate: :class:`EvalGateCallback`, inline or in a background process.

Every ``eval_freq`` stage steps the callback fixes an :class:`~dinosim.training.eval_plan.EvalPlan` for the
current snapshot (a screening, and a gate evaluation if the screening completes the streak) and plays it: inline
(training waits), or, with ``background_eval``, in the evaluation process of
:mod:`dinosim.training.eval_worker` while training continues. Outcomes are applied in order by one method, so both
modes write the same records: ``metrics.jsonl``, ``evaluations.npz``, TensorBoard/W&B scalars and ``best/`` all
carry the snapshot's step, and ``best/`` holds the evaluated snapshot (not the weights training has moved on to).

Background rules: one evaluation in flight (a due evaluation first waits for the previous one); training waits
for a gate evaluation from the step it learns that one began (the screening passed), since a stage that passes
ends on the evaluated snapshot and steps trained past it are not kept; the stage stops at the first applied
outcome whose gate passed (training ran ahead during the screening); a checkpoint waits for the
evaluation in flight, so a checkpoint's state holds every evaluation scheduled before it; a stage that ends by
budget waits for it too. An interruption abandons the evaluation in flight: the checkpoint's state does not
count it, so after `resume` the evaluation falls due at once, on the resumed weights. A dead evaluation process is
reported in one line and the stage continues inline (the unanswered snapshot is played in the training process).

Time: every record carries how long its evaluation took in the process that played it (``eval_time/wall_s``,
``eval_time/cpu_s``, ``eval_time/env_steps``) and ``eval_time/training_wait_s``, the seconds training was blocked by
it: inline the whole play; in the background taking and sending the snapshot plus every wait for the answer (a due
evaluation, a checkpoint or the stage's end waiting for the one in flight). Blocked time up to the end of the
screening counts for the screening, the rest for its gate evaluation. Not counted: writing the records and
``best/`` after an outcome, the per-step poll for an answer, and an abandoned evaluation. The stage's totals are
:attr:`~dinosim.training.state.StageState.eval_time`.
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from dinosim.errors import DinosimError
from dinosim.run_integrity import check_policy_pair, model_bytes, save_best_pair, vecnormalize_bytes
from dinosim.runfolder import (
    EVAL_CPU,
    EVAL_KIND_KEY,
    EVAL_SEEDS_KEY,
    EVAL_STEPS,
    EVAL_TIME_PREFIX,
    EVAL_WAIT,
    EVAL_WALL,
    EVALUATIONS_FILE,
    GATE_KIND,
    METRICS_FILE,
    SCREEN_KIND,
    TRIAL_METRICS_ENV,
    append_json_line,
    atomic_write_bytes,
    pair_meta_file,
    read_json,
    select_policy,
)
from dinosim.training.callbacks import StageContext
from dinosim.training.eval_plan import EvalOutcome, EvalPlan, EvalTiming, gate_passed, play_plan, screen_passed
from dinosim.training.eval_worker import BackgroundEvaluator, EnvSpec, EvalWorkerDied, SnapshotJob, play_snapshot
from dinosim.training.evaluation import EvalResult, model_policy, obs_normalizer

Snapshot = Callable[[], tuple[bytes, bytes]]  # (model zip, pickled VecNormalize) of the evaluated snapshot


def write_evaluations(ctx: StageContext) -> None:
    """``evaluations.npz`` like SB3's EvalCallback (timesteps, results, ep_lengths) plus ``successes`` (NaN: n/a).
    One row per evaluation; a row of an evaluation that stopped early is padded to the longest row with NaN
    (results, successes) and 0 (ep_lengths: no episode lasts 0 steps), which :func:`load_evaluations` strips."""
    buffer = io.BytesIO()
    h = ctx.history
    width = max((len(row) for row in h["ep_lengths"]), default=0)

    def padded(rows: list, fill: float, dtype: type) -> np.ndarray:
        return np.asarray([list(row) + [fill] * (width - len(row)) for row in rows], dtype=dtype)

    np.savez(buffer, timesteps=np.asarray(h["timesteps"], dtype=np.int64),
             results=padded(h["results"], math.nan, np.float64), ep_lengths=padded(h["ep_lengths"], 0, np.int64),
             successes=padded(h["successes"], math.nan, np.float64))
    atomic_write_bytes(ctx.stage_dir / EVALUATIONS_FILE, buffer.getvalue())


def load_evaluations(stage_dir: Path, up_to_step: Optional[int]) -> dict[str, list]:
    """The eval history in ``evaluations.npz``, without evaluations after global step ``up_to_step`` (and without
    the padding of rows of evaluations that stopped early)."""
    path = Path(stage_dir) / EVALUATIONS_FILE
    history: dict[str, list] = {"timesteps": [], "results": [], "ep_lengths": [], "successes": []}
    if not path.exists():
        return history
    try:
        with np.load(path) as data:
            for i, step in enumerate(data["timesteps"]):
                if up_to_step is None or step <= up_to_step:
                    played = data["ep_lengths"][i] > 0
                    history["timesteps"].append(int(step))
                    for key in ("results", "ep_lengths", "successes"):
                        history[key].append(data[key][i][played].tolist())
    except Exception as exc:  # noqa: BLE001 - a damaged file: the history is a record, training does not need it
        print(f"warning: {path}: unreadable ({type(exc).__name__}); it starts again from this point "
              "(metrics.jsonl keeps every evaluation)", file=sys.stderr, flush=True)
        return {key: [] for key in history}
    return history


class EvalGateCallback(BaseCallback):
    """Every ``eval_freq`` stage steps: a screening evaluation, and a gate evaluation once screenings pass.

    The rule is :class:`~dinosim.config.settings.CurriculumSettings` (``screen_passes``, ``gate_passes``,
    ``rank``). Both evaluations play a snapshot (the policy as ``eval_deterministic`` says, frozen copy of the
    training observation statistics) on episode seeds of the run's gate stream, which training never uses; each
    writes a ``metrics.jsonl`` record (``eval_kind`` ``"screen"`` or ``"gate"``, ``eval_seeds`` = [first, end)),
    ``eval/*`` (screening) or ``gate/*`` (gate) scalars, the eval sinks, and ``best/`` when it is a passing gate
    evaluation, or when its lower bound ranks above the best so far and it played every episode (an evaluation
    that stopped early, see :mod:`dinosim.training.eval_stop`, failed and is recorded with the episodes it played,
    never as ``best/``).
    The stage stops (returns False) once a gate evaluation has passed; :meth:`result` is then the snapshot that
    passed, the stage's result in both modes (in the background, training ran ahead of it). ``evaluator``: play
    plans in that background process (``env_spec`` builds envs for the inline fallback); None: inline.
    """

    def __init__(self, ctx: StageContext, evaluator: Optional[BackgroundEvaluator] = None,
                 env_spec: Optional[EnvSpec] = None) -> None:
        super().__init__()
        self.ctx, self.evaluator, self.env_spec = ctx, evaluator, env_spec
        self._in_flight: Optional[tuple[SnapshotJob, Snapshot]] = None
        self._blocked: list[tuple[float, float]] = []  # time.monotonic() spans training waited for the next outcome
        self._passed: Optional[tuple[int, Snapshot]] = None  # (step, snapshot) whose gate evaluation passed
        ctx.settle_evaluations = self.settle

    def _on_step(self) -> bool:
        ctx, state = self.ctx, self.ctx.state
        if self._in_flight is not None:
            self._collect(block=False)
        if self._in_flight is not None and self.evaluator is not None and self.evaluator.gate_started:
            self._collect(block=True)  # steps trained past a snapshot that passes would be thrown away
        if state.gate_passed:
            return False
        stage_steps = ctx.stage_steps(self.num_timesteps)
        last = max(state.last_eval_stage_step, self._in_flight[0].plan.mark if self._in_flight else 0)
        if stage_steps - last < ctx.curriculum.eval_freq:
            return True
        self.settle()
        if state.gate_passed:  # the evaluation that was in flight passed the gate
            return False
        self._start(self._plan(stage_steps - stage_steps % ctx.curriculum.eval_freq))
        return not state.gate_passed

    def _on_training_end(self) -> None:
        self.settle()

    def settle(self) -> None:
        """Wait for the evaluation in flight (if any) and apply its outcome."""
        if self._in_flight is not None:
            self._collect(block=True)

    def result(self) -> Optional[tuple[int, bytes, bytes]]:
        """(global step, model zip, VecNormalize pickle) of the snapshot whose gate evaluation passed, or None (no
        gate passed: the stage's result is the model it trained). A gate that passed before a resume (killed
        between a checkpoint and the stage's final save) is found in ``best/`` when that holds its snapshot,
        intact."""
        if self._passed is not None:
            step, snapshot = self._passed
            model_zip, vecnorm = snapshot()
            return step, model_zip, vecnorm
        state = self.ctx.state
        if not state.gate_passed:
            return None
        model, vecnorm_path = select_policy(self.ctx.stage_dir, "best")
        if model is None or vecnorm_path is None:
            return None
        try:
            check_policy_pair(model, vecnorm_path)
            step = read_json(pair_meta_file(model)).get("global_step")
            pair = model.read_bytes(), vecnorm_path.read_bytes()
        except (DinosimError, OSError, ValueError, AttributeError):
            return None
        return (step, *pair) if step == state.gate_passed_at else None

    def close(self) -> None:
        """Stop the evaluation process; an evaluation in flight is abandoned (reported in one line)."""
        if self._in_flight is not None:
            print(f"stage {self.ctx.stage}: the evaluation of step {self._in_flight[0].plan.step} was still running "
                  "and is dropped (after `resume` the next evaluation falls due at once)", file=sys.stderr, flush=True)
            self._in_flight = None
        if self.evaluator is not None:
            self.evaluator.close()
            self.evaluator = None

    def _plan(self, mark: int) -> EvalPlan:
        state, cur = self.ctx.state, self.ctx.curriculum
        return EvalPlan(step=int(self.num_timesteps), mark=mark, run_seed=self.ctx.run_seed,
                        first_seed=state.eval_seed_next,
                        gate_if_pass=state.gate_streak + 1 >= cur.required_consecutive, curriculum=cur)

    @contextmanager
    def _blocking(self) -> Iterator[None]:
        """Count the time inside as training's wait for the next outcome applied."""
        begin = time.monotonic()
        try:
            yield
        finally:
            self._blocked.append((begin, time.monotonic()))

    def _start(self, plan: EvalPlan) -> None:
        """Play ``plan`` on the current weights: in the background process, or inline (applied at once)."""
        self._blocked = []
        if self.evaluator is None:
            with self._blocking():
                policy = model_policy(self.model, self.ctx.curriculum.eval_deterministic)
                outcome = play_plan(plan, policy, self.ctx.eval_envs, obs_normalizer(self.ctx.train_env))
            self._apply(outcome, lambda: (model_bytes(self.model), vecnormalize_bytes(self.ctx.train_env)))
            return
        with self._blocking():
            pair = (model_bytes(self.model), vecnormalize_bytes(self.ctx.train_env))
            job = SnapshotJob(plan, pair[0], pair[1])
            self._in_flight = (job, lambda: pair)
            try:
                self.evaluator.submit(job)
                return
            except EvalWorkerDied as exc:
                died = exc
        self._fall_back(died)

    def _collect(self, block: bool) -> None:
        assert self._in_flight is not None and self.evaluator is not None
        try:
            if block:
                with self._blocking():
                    outcome = self.evaluator.wait()
            else:
                outcome = self.evaluator.poll()
        except EvalWorkerDied as exc:
            self._fall_back(exc)
            return
        if outcome is not None:
            snapshot = self._in_flight[1]
            self._in_flight = None
            self._apply(outcome, snapshot)

    def _fall_back(self, exc: EvalWorkerDied) -> None:
        """Report the dead process in one line, play its unanswered job here, and evaluate inline from now on."""
        job, snapshot = self._in_flight if self._in_flight else (None, None)
        where = f" (evaluation of step {job.plan.step} replayed inline)" if job else ""
        print(f"warning: stage {self.ctx.stage}: {exc}; evaluating inline from now on{where}",
              file=sys.stderr, flush=True)
        self.evaluator, self._in_flight = None, None
        with self._blocking():
            if not self.ctx.eval_envs and self.env_spec is not None:
                self.ctx.eval_envs.extend(self.env_spec.build())
            outcome = play_snapshot(job, self.ctx.eval_envs) if job is not None and snapshot is not None else None
        if outcome is not None and snapshot is not None:
            self._apply(outcome, snapshot)

    def _waits(self, outcome: EvalOutcome) -> tuple[float, float]:
        """(screening, gate evaluation) seconds of the time training was blocked for ``outcome``: up to the
        screening's end for the screening, the rest for the gate evaluation; the spans are then cleared."""
        cut = outcome.screen_time.ended if outcome.gate is not None else math.inf
        total = sum(end - begin for begin, end in self._blocked)
        screen = sum(max(0.0, min(end, cut) - begin) for begin, end in self._blocked)
        self._blocked = []
        return screen, total - screen

    def _apply(self, outcome: EvalOutcome, snapshot: Snapshot) -> None:
        """Apply one outcome in schedule order: state, streak, gate, records (at the snapshot's step), ``best/``."""
        ctx, state, cur, plan = self.ctx, self.ctx.state, self.ctx.curriculum, outcome.plan
        screen_wait, gate_wait = self._waits(outcome)
        state.last_eval_stage_step = max(state.last_eval_stage_step, plan.mark)
        state.eval_seed_next = outcome.next_seed
        state.evaluations += 1
        state.gate_streak = state.gate_streak + 1 if screen_passed(outcome.screen, cur) else 0
        scalars = self._record(outcome.screen, plan.screen_seeds, SCREEN_KIND, plan.step, snapshot,
                               _timing(outcome.screen_time, screen_wait))
        h = ctx.history
        h["timesteps"].append(plan.step)
        h["results"].append(outcome.screen.returns)
        h["ep_lengths"].append(outcome.screen.lengths)
        h["successes"].append([math.nan if s is None else float(s) for s in outcome.screen.successes])
        write_evaluations(ctx)
        if outcome.gate is not None and outcome.gate_time is not None:
            passed = gate_passed(outcome.gate, cur)
            scalars.update(self._record(outcome.gate, plan.gate_seeds, GATE_KIND, plan.step, snapshot,
                                        _timing(outcome.gate_time, gate_wait), passed=passed))
            if passed:
                state.gate_passed, state.gate_passed_at = True, plan.step
                self._passed = (plan.step, snapshot)
            else:
                state.gate_streak = 0
        scalars["curriculum/gate_streak"] = state.gate_streak
        ctx.persist(self.num_timesteps)
        self._log(scalars, plan.step)

    def _log(self, scalars: dict[str, Any], step: int) -> None:
        """Inline: record and dump at ``step`` (the current step). Background: write only these scalars at the
        snapshot's ``step`` to every output format, leaving training's pending records for their own dump."""
        if self.evaluator is None and step == self.num_timesteps:
            for key, value in scalars.items():
                self.logger.record(key, value)
            self.logger.dump(step)
            return
        for fmt in self.logger.output_formats:
            fmt.write(scalars, {key: None for key in scalars}, step)

    def _record(self, result: EvalResult, seeds: range, kind: str, step: int, snapshot: Snapshot,
                timing: dict[str, float], passed: bool = False) -> dict[str, Any]:
        """metrics.jsonl record (with ``timing``, also added to the stage's totals), eval sinks, ``best/``; returns
        the evaluation's TensorBoard scalars. ``passed``: a gate evaluation that passed, whose snapshot (the stage's
        result) becomes ``best/`` whatever ranked above it: the return bound of a short screening can, whose own
        gate evaluation failed on another criterion."""
        ctx, state, cur = self.ctx, self.ctx.state, self.ctx.curriculum
        stats = result.stats()
        bounds = stats.lower_bounds(cur.gate_confidence)
        metrics = result.metrics()
        metrics["eval/episodes"] = stats.episodes
        metrics["eval/return_lb"] = bounds["return"]
        metrics["eval/success_lb"] = bounds.get("success")
        prefix = "eval/" if kind == SCREEN_KIND else "gate/"
        scalars = {prefix + key[len("eval/"):]: value for key, value in metrics.items()
                   if value is not None and key != "eval/std_reward"}
        if kind == SCREEN_KIND:
            state.last_eval = {"global_step": step, **metrics}
        rank = cur.rank(stats)
        # a stopped evaluation's bounds are those of the episodes it played: never best/ on a partial statistic
        if passed or (not result.stopped and _ranks_above(rank, state.best_eval)):
            model_zip, vecnorm = snapshot()
            save_best_pair(ctx.stage_dir, model_zip, vecnorm, {"global_step": step, EVAL_KIND_KEY: kind, **metrics})
            state.best_eval, state.best_step = {**metrics, EVAL_KIND_KEY: kind, "rank": list(rank)}, step
        elif result.stopped and _ranks_above(rank, state.best_partial_eval):
            state.best_partial_eval = {**metrics, EVAL_KIND_KEY: kind, "rank": list(rank), "global_step": step}
        # eval component means are "eval/reward/<term>": "reward/<term>" is the training-rollout series
        record = {"global_step": step, "stage": ctx.stage, **metrics, EVAL_KIND_KEY: kind,
                  EVAL_SEEDS_KEY: [seeds.start, seeds.stop],
                  **{EVAL_TIME_PREFIX + name: value for name, value in timing.items()}}
        state.add_eval_time(kind, timing)
        append_json_line(ctx.run_dir / METRICS_FILE, record)
        trial_path = os.environ.get(TRIAL_METRICS_ENV)
        if trial_path:
            append_json_line(Path(trial_path), record)
        for sink in ctx.eval_sinks:
            sink(record)
        return scalars


def _ranks_above(rank: tuple[float, float], other: Optional[dict[str, Any]]) -> bool:
    """``rank`` is above that of the recorded evaluation ``other`` (always, when there is none)."""
    return other is None or rank > tuple(other.get("rank", (-math.inf, -math.inf)))


def _timing(played: EvalTiming, wait: float) -> dict[str, float]:
    """The timing fields of one record (dinosim.runfolder.EVAL_TIME_FIELDS)."""
    return {EVAL_WALL: played.wall_s, EVAL_CPU: played.cpu_s, EVAL_STEPS: played.env_steps, EVAL_WAIT: wait}
