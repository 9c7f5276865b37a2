"""Names of the metrics an evaluation records (standard library only).

Each evaluation appends one record to ``metrics.jsonl`` (and to ``$DINOSIM_TRIAL_METRICS`` for a sweep trial) and
logs the same keys to TensorBoard / W&B: the scalars of :data:`EVAL_SCALARS` and one ``eval/reward/<term>`` per
reward term. These are the metrics a sweep can optimise (the offline engine reads nothing else);
``dinosim sweep validate`` refuses any other ``metric.name``. :class:`dinosim.training.evaluation.EvalResult`
produces them (a test keeps the two in step).
"""

from __future__ import annotations

EVAL_MEAN_REWARD = "eval/mean_reward"
EVAL_STD_REWARD = "eval/std_reward"
EVAL_MEAN_LENGTH = "eval/mean_ep_length"
EVAL_SUCCESS_RATE = "eval/success_rate"
EVAL_SCALARS: tuple[str, ...] = (EVAL_MEAN_REWARD, EVAL_STD_REWARD, EVAL_MEAN_LENGTH, EVAL_SUCCESS_RATE)
EVAL_COMPONENT_PREFIX = "eval/reward/"  # + a reward term of dinosim.envs.rewards.TERMS


def eval_metric_names(terms: tuple[str, ...]) -> tuple[str, ...]:
    """Every metric an evaluation records, for the reward ``terms`` (pass ``dinosim.envs.rewards.TERMS``)."""
    return EVAL_SCALARS + tuple(EVAL_COMPONENT_PREFIX + t for t in terms)
