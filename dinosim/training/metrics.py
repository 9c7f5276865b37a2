"""Names of the metrics an evaluation records (standard library only).

Each evaluation appends one record to ``metrics.jsonl`` (and to ``$DINOSIM_TRIAL_METRICS`` for a sweep trial) and
logs the same keys to TensorBoard / W&B: the scalars of :data:`EVAL_SCALARS` and one ``eval/reward/<term>`` per
reward term. These are the metrics a sweep can optimise (the offline engine reads nothing else);
``dinosim sweep validate`` refuses any other ``metric.name``. :class:`dinosim.training.evaluation.EvalResult`
and the evaluation callback produce them; a test keeps every ``"eval/..."`` literal of the training code in this
list. How long each evaluation took (``eval_time/*`` in the same records; names in :mod:`dinosim.runfolder`, which
the summaries read too) is bookkeeping, not a metric: it is not in this list, so a sweep cannot optimise it.
Nor is ``eval/stopped/<criterion>`` (:data:`dinosim.runfolder.EVAL_STOPPED_PREFIX`: 1 for the criterion an
evaluation stopped early on; logged with the scalars, under ``gate/`` for gate evaluations).
"""

from __future__ import annotations

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


def eval_metric_names(terms: tuple[str, ...]) -> tuple[str, ...]:
    """Every metric an evaluation records, for the reward ``terms`` (pass ``dinosim.envs.rewards.TERMS``)."""
    return EVAL_SCALARS + tuple(EVAL_COMPONENT_PREFIX + t for t in terms)
