"""The committed stage-3 rewards make the behaviour worth more than anything else an animal can do.

The T-Rex warm-started from its walking policy used to walk past the prey (forward reward) and later stand beside
it (proximity reward): the per-step pay, discounted over an episode, exceeded the bite bonus. The committed
configs must keep the bonus at least ``MARGIN`` times above that value (:func:`dinosim.envs.rewards.standby_value`).
"""

from __future__ import annotations

import pytest

from dinosim.config.resolve import resolve_run
from dinosim.envs.rewards import standby_value
from dinosim.species import SPECIES

MARGIN = 2.5


@pytest.mark.parametrize("species", sorted(SPECIES))
def test_bonus_dominates_the_discounted_per_step_pay(species: str) -> None:
    config = resolve_run(species, "ppo", [3], [])
    env = config.env_kwargs(3)
    bonus_key, _, proximity_key = SPECIES[species].target_weights
    gamma = float(config.algo_kwargs(3)["gamma"])
    standby = standby_value(env, proximity_key, gamma)
    assert env[bonus_key] >= MARGIN * standby, (species, env[bonus_key], standby)


@pytest.mark.parametrize("species", sorted(SPECIES))
def test_stage3_gate_is_an_honest_ninety_percent(species: str) -> None:
    from dinosim.config.settings import wilson_lower_bound

    cur = resolve_run(species, "ppo", [3], []).curriculum(3)
    assert cur.min_success_rate == pytest.approx(0.9) and cur.gate_confidence >= 0.95
    # a policy with a true 90 % success rate passes the gate evaluation in at most ~5 % of tries
    n = cur.gate_episodes
    needed = next(k for k in range(n + 1) if wilson_lower_bound(k, n, cur.gate_confidence) >= 0.9)
    assert needed / n > 0.9


def test_standby_value_counts_the_per_step_pay_over_the_discounted_episode() -> None:
    env = {"alive_bonus": 1.0, "posture_weight": 0.5, "forward_vel_weight": 0.5, "forward_vel_max": 2.0,
           "p": 0.5, "max_episode_steps": 10}
    assert standby_value(env, "p", 1.0) == pytest.approx(30.0)
    assert standby_value(env, "p", 0.5) == pytest.approx(3.0 * (1 - 0.5**10) / 0.5)
    assert standby_value({**env, "alive_bonus": -1.0}, "p", 1.0) == pytest.approx(20.0)
