"""The seeded, vectorised evaluation engine and the gate statistic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dinosim.config.settings import CurriculumSettings, EvalStats, mean_lower_bound, wilson_lower_bound
from dinosim.training.evaluation import gate_seeds, heldout_seeds, run_seeded_episodes


def _policy(obs: np.ndarray) -> np.ndarray:
    """A fixed nonlinear policy of the observation, row by row (a batched matrix product may round differently
    for different batch sizes; this test is about the engine, not about BLAS)."""
    weights = np.random.default_rng(7).normal(0.0, 0.3, size=(obs.shape[1], 18))
    return np.stack([np.tanh(row @ weights) for row in obs])


def _envs(n: int, **kwargs):
    from dinosim.envs import make_env

    return [make_env("velociraptor", {"task": "strike", "max_episode_steps": 40, "strike_bonus": 10.0,
                                      "push_force": 0.1, **kwargs}) for _ in range(n)]


def test_results_are_the_same_for_any_number_of_envs_and_follow_the_seeds() -> None:
    seeds = list(range(100, 107))
    one = run_seeded_episodes(_policy, _envs(1), seeds)
    three = run_seeded_episodes(_policy, _envs(3), seeds)
    assert one.returns == three.returns and one.lengths == three.lengths and one.components == three.components
    assert one.successes == three.successes and len(one.returns) == 7
    assert len(set(one.returns)) > 1  # the seeds give different episodes
    again = run_seeded_episodes(_policy, _envs(2), seeds[3:5])
    assert again.returns == one.returns[3:5]  # an episode depends on its seed only


def test_the_normaliser_is_applied_to_every_observation() -> None:
    seen = []

    def policy(obs: np.ndarray) -> np.ndarray:
        seen.append(obs.copy())
        return np.zeros((obs.shape[0], 18))

    run_seeded_episodes(policy, _envs(2), [1, 2], normalize=lambda obs: obs * 0.0 + 5.0)
    assert seen and all(np.all(o == 5.0) for o in seen)


def test_seed_streams_are_disjoint_from_training_and_from_each_other() -> None:
    gate, test = gate_seeds(3, 0, 10_000), heldout_seeds(3, 10_000)
    assert min(gate) > 10**8 and min(test) > max(gate)
    assert not set(gate_seeds(4, 0, 1000)) & set(gate_seeds(3, 0, 1000))
    assert list(gate_seeds(3, 5, 2)) == [gate.start + 5, gate.start + 6]


def test_wilson_bound_matches_known_values_and_is_conservative() -> None:
    assert wilson_lower_bound(20, 20, 0.95) == pytest.approx(0.8808, abs=1e-4)
    assert wilson_lower_bound(187, 200, 0.95) >= 0.9 > wilson_lower_bound(186, 200, 0.95)
    assert wilson_lower_bound(0, 10, 0.95) == 0.0
    # coverage: a policy with true success 0.88 passes a 0.9 gate of 200 episodes rarely
    rng = np.random.default_rng(0)
    passes = sum(wilson_lower_bound(int(k), 200, 0.95) >= 0.9 for k in rng.binomial(200, 0.88, size=4000))
    assert passes / 4000 < 0.05


def test_gate_uses_lower_bounds_while_screening_uses_point_estimates() -> None:
    cur = CurriculumSettings(min_avg_reward=100.0, min_avg_episode_length=10.0, min_success_rate=0.9)
    noisy = EvalStats(episodes=20, mean_return=120.0, std_return=60.0, mean_length=50.0, std_length=5.0,
                      successes=19)
    assert cur.screen_passes(noisy) and not cur.gate_passes(noisy)
    solid = EvalStats(episodes=200, mean_return=120.0, std_return=30.0, mean_length=50.0, std_length=5.0,
                      successes=195)
    assert cur.gate_passes(solid)
    assert cur.rank(solid) > cur.rank(noisy)  # best/ prefers the evaluation with the higher lower bound
    assert mean_lower_bound(10.0, 2.0, 4, 0.95) == pytest.approx(10.0 - 1.6449 * 1.0, abs=1e-3)
    assert mean_lower_bound(math.nan, 1.0, 4, 0.95) == -math.inf
