"""`benchmarks/eval_stop.py`: its replay of the early stop on recorded episodes is the engine's own schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dinosim.config.settings import CurriculumSettings
from dinosim.training.eval_stop import StopRule
from dinosim.training.evaluation import run_seeded_episodes

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def eval_stop(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import eval_stop

    return eval_stop


def _policy(obs: np.ndarray) -> np.ndarray:
    weights = np.random.default_rng(7).normal(0.0, 0.3, size=(obs.shape[1], 18))
    return np.stack([np.tanh(row @ weights) for row in obs])


def test_the_simulated_schedule_plays_what_the_engine_plays(eval_stop) -> None:
    from dinosim.envs import make_env

    envs = [make_env("velociraptor", {"task": "strike", "max_episode_steps": 40, "push_force": 0.1})
            for _ in range(3)]
    seeds = range(200, 214)
    full = run_seeded_episodes(_policy, envs, seeds)
    for cur in (CurriculumSettings(min_avg_reward=-1e9, min_avg_episode_length=float(t)) for t in (15, 30)):
        for k in (1, 3):
            rule = StopRule(cur, len(seeds), False, 40)
            real = run_seeded_episodes(_policy, envs[:k], seeds, stop=rule)
            kept, played = eval_stop.simulate(full.lengths, full.successes, k, rule.watch())
            assert (kept, played) == (len(real.returns), sum(real.lengths) + real.dropped_steps), (cur, k)


def test_the_expected_gate_stop_is_the_mean_position_of_the_deciding_failure(eval_stop) -> None:
    cur = CurriculumSettings(min_success_rate=0.9, gate_confidence=0.95)
    record = {"eval/episodes": 200, "eval/success_rate": 0.8, "eval/mean_ep_length": 50.0}
    saving = eval_stop.expected_gate_saving([record], cur)
    # 40 failures of 200, 13 allowed: the 14th failure comes at 14 * 201 / 41 on average over random orders
    assert saving.stopped == 1 and saving.episodes_with_stop == pytest.approx(14 * 201 / 41)
    rng = np.random.default_rng(1)
    positions = [int(np.flatnonzero(rng.permutation([0] * 40 + [1] * 160) == 0)[13]) + 1 for _ in range(4000)]
    assert np.mean(positions) == pytest.approx(14 * 201 / 41, rel=0.02)
    passing = {**record, "eval/success_rate": 0.95}
    assert eval_stop.expected_gate_saving([passing], cur).stopped == 0
