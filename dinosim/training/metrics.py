"""Names of the metrics an evaluation records (standard library only).

Each evaluation appends one record to ``metrics.jsonl`` (and to ``$DINOSIM_TRIAL_METRICS`` for a sweep trial) and
logs the same keys to TensorBoard / W&B: the scalars of :data:`EVAL_SCALARS` and one ``eval/reward/<term>`` per
reward term. These are the metrics a sweep can optimise (the offline engine reads nothing else);
``dinosim sweep validate`` refuses any other ``metric.name``. :class:`dinosim.training.evaluation.EvalResult`
and the evaluation callback produce them; a test keeps every ``"eval/..."`` literal of the training code in this
list. How long each evaluation took (``eval_time/*`` in the same records; names in :mod:`dinosim.runfolder`, which
the summaries read too) is bookkeeping, not a metric: it is not in this list, so a sweep cannot optimise it.
When a stage ends, a sweep trial also receives :data:`STAGE_END_SCALARS` (in ``$DINOSIM_TRIAL_METRICS`` and W&B,
not in ``metrics.jsonl``, which holds evaluations only): how many steps the stage took to its gate, so a sweep can
minimise the time to a gate itself rather than a proxy read after a fixed number of steps, and how far a stage that
did not pass fell short of it.
Nor is ``eval/stopped/<criterion>`` (:data:`dinosim.runfolder.EVAL_STOPPED_PREFIX`: 1 for the criterion an
evaluation stopped early on; logged with the scalars, under ``gate/`` for gate evaluations).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dinosim.config.settings import CurriculumSettings
    from dinosim.training.state import StageState

EVAL_MEAN_REWARD = "eval/mean_reward"
EVAL_STD_REWARD = "eval/std_reward"
EVAL_MEAN_LENGTH = "eval/mean_ep_length"
EVAL_SUCCESS_RATE = "eval/success_rate"
EVAL_EPISODES = "eval/episodes"
EVAL_RETURN_LB = "eval/return_lb"  # one-sided lower confidence bound of the mean return (curriculum.gate_confidence)
EVAL_SUCCESS_LB = "eval/success_lb"  # Wilson lower bound of the success rate
EVAL_SCALARS: tuple[str, ...] = (EVAL_MEAN_REWARD, EVAL_STD_REWARD, EVAL_MEAN_LENGTH, EVAL_SUCCESS_RATE,
                                 EVAL_EPISODES, EVAL_RETURN_LB, EVAL_SUCCESS_LB)
EVAL_COMPONENT_PREFIX = "eval/reward/"  # + a reward term of dinosim.envs.rewards.TERMS

# At a stage's end (StageState.steps_to_gate / global_steps_to_gate): a stage whose gate did not pass reports every
# step it used, so with the same budget in every trial a failed stage never ranks above a passed one when minimised.
STAGE_STEPS_TO_GATE = "stage/steps_to_gate"  # from the stage's start to the snapshot that passed its gate
RUN_STEPS_TO_GATE = "run/steps_to_gate"  # global step of that snapshot: the whole chain up to this stage's gate
STAGE_GATE_PASSED = "stage/gate_passed"  # 1 or 0
# How far the stage's best evaluation (best/, ranked by its lower bounds) fell short of the gate: 0 when it passed,
# else CurriculumSettings.shortfall of that evaluation's point estimates; without a complete evaluation (with
# curriculum.eval_early_stop, every screening of a stage-3 policy far from its success gate stops early), those of
# the best evaluation that stopped early, over the episodes it played; 1 without any evaluation
STAGE_GATE_SHORTFALL = "stage/gate_shortfall"
# steps_to_gate for a passed stage; for one that did not pass, its steps x (1 + gate_shortfall): failed trials of a
# sweep then rank among themselves by how close they came, instead of tying at their budget, and still below
# every trial that passed within the same budget
STAGE_STEPS_TO_GATE_RANKED = "stage/steps_to_gate_ranked"
STAGE_END_SCALARS: tuple[str, ...] = (STAGE_STEPS_TO_GATE, RUN_STEPS_TO_GATE, STAGE_GATE_PASSED,
                                      STAGE_GATE_SHORTFALL, STAGE_STEPS_TO_GATE_RANKED)
# the metrics a sweep minimises (fewer steps, a smaller shortfall); every other metric is better higher
LOWER_IS_BETTER: tuple[str, ...] = (STAGE_STEPS_TO_GATE, RUN_STEPS_TO_GATE, STAGE_GATE_SHORTFALL,
                                    STAGE_STEPS_TO_GATE_RANKED)


def eval_metric_names(terms: tuple[str, ...]) -> tuple[str, ...]:
    """Every metric an evaluation records, for the reward ``terms`` (pass ``dinosim.envs.rewards.TERMS``)."""
    return EVAL_SCALARS + tuple(EVAL_COMPONENT_PREFIX + t for t in terms)


def sweep_metric_names(terms: tuple[str, ...]) -> tuple[str, ...]:
    """Every metric a sweep trial reports: each evaluation's (:func:`eval_metric_names`) and each stage end's."""
    return eval_metric_names(terms) + STAGE_END_SCALARS


def gate_shortfall(state: "StageState", curriculum: "CurriculumSettings") -> float:
    """:data:`STAGE_GATE_SHORTFALL` of a finished stage judged by ``curriculum``'s gate."""
    if state.gate_passed:
        return 0.0
    best = state.best_eval or state.best_partial_eval or {}
    point = {"return": best.get(EVAL_MEAN_REWARD), "length": best.get(EVAL_MEAN_LENGTH),
             "success": best.get(EVAL_SUCCESS_RATE)}
    return curriculum.shortfall({k: float(v) for k, v in point.items() if v is not None})


def stage_end_metrics(state: "StageState", curriculum: "CurriculumSettings") -> dict[str, float]:
    """The :data:`STAGE_END_SCALARS` of one finished stage, by name, its gate being ``curriculum``'s."""
    shortfall = gate_shortfall(state, curriculum)
    ranked = round(state.steps_to_gate() * (1.0 + shortfall))  # a passed stage's shortfall is 0
    return {STAGE_STEPS_TO_GATE: state.steps_to_gate(), RUN_STEPS_TO_GATE: state.global_steps_to_gate(),
            STAGE_GATE_PASSED: int(state.gate_passed), STAGE_GATE_SHORTFALL: round(shortfall, 6),
            STAGE_STEPS_TO_GATE_RANKED: ranked}
