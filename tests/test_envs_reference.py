"""Fixed-seed rollouts of every species and task give the recorded rewards, reward components and observations.

A guard for refactoring the env (``DinoEnv.step``, :mod:`dinosim.envs.rewards`): the reference values in
``tests/data/env_reference.json`` were recorded from the code before such a change; a change that means to alter
the dynamics or the reward re-records them with ``python tests/test_envs_reference.py`` and says so in its commit.
Values are compared to 1e-9 (relative), not bit for bit, so that another CPU's last-bit rounding does not fail it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dinosim.envs import make_env
from dinosim.envs.rewards import TERMS
from dinosim.species import SPECIES

REFERENCE = Path(__file__).parent / "data" / "env_reference.json"
STEPS = 240
# Every reward term active, pushes on, short episodes (so resets, falls and time limits all occur).
COMMON = {
    "forward_vel_weight": 1.0, "drift_penalty_weight": 0.1, "speed_penalty_weight": 0.5, "heading_weight": 0.3,
    "lateral_penalty_weight": 0.2, "gait_symmetry_weight": 0.5, "tail_stability_weight": 0.01,
    "push_force": 0.3, "push_interval": 0.4, "push_duration": 0.1, "heading": 0.4, "max_episode_steps": 60,
}
TARGET_WEIGHTS = (50.0, 1.0, 0.5)  # stage-3 bonus, approach and proximity weights (kwarg names: species.py)


def cases() -> list[tuple[str, str]]:
    return [(species, task) for species, spec in SPECIES.items()
            for task in ("balance", "locomotion", spec.behaviour)]


def rollout(species: str, task: str) -> dict[str, Any]:
    """Episodes of seeded uniform random actions: per episode length, end reason, return, component sums, and
    the last observation of the rollout."""
    spec = SPECIES[species]
    behaviour = dict(zip(spec.target_weights, TARGET_WEIGHTS)) if task == spec.behaviour else {}
    kwargs = {**COMMON, "task": task, **behaviour}
    env = make_env(species, kwargs)
    rng = np.random.default_rng(1234)
    obs, _ = env.reset(seed=7)
    episodes: list[dict[str, Any]] = []
    current = {"length": 0, "return": 0.0, "components": dict.fromkeys(TERMS, 0.0)}
    for _ in range(STEPS):
        action = rng.uniform(-1.0, 1.0, env.action_space.shape)
        obs, reward, terminated, truncated, info = env.step(action)
        current["length"] += 1
        current["return"] += float(reward)
        for term in TERMS:
            current["components"][term] += float(info[f"reward_{term}"])
        if terminated or truncated:
            episodes.append({**current, "reason": info["termination_reason"]})
            current = {"length": 0, "return": 0.0, "components": dict.fromkeys(TERMS, 0.0)}
            obs, _ = env.reset()
    env.close()
    return {"episodes": episodes, "last_obs": [float(x) for x in obs]}


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize(("species", "task"), cases())
def test_fixed_seed_rollout_matches_the_reference(reference: dict[str, Any], species: str, task: str) -> None:
    expected = reference[f"{species}/{task}"]
    got = rollout(species, task)
    assert [(e["length"], e["reason"]) for e in got["episodes"]] == [
        (e["length"], e["reason"]) for e in expected["episodes"]]
    for mine, theirs in zip(got["episodes"], expected["episodes"]):
        assert mine["return"] == pytest.approx(theirs["return"], rel=1e-9, abs=1e-9)
        assert mine["components"] == pytest.approx(theirs["components"], rel=1e-9, abs=1e-9)
    assert got["last_obs"] == pytest.approx(expected["last_obs"], rel=1e-9, abs=1e-9)


if __name__ == "__main__":  # re-record (only when a change means to alter the dynamics or the reward)
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps({f"{s}/{t}": rollout(s, t) for s, t in cases()}, indent=1) + "\n")
    print(f"wrote {REFERENCE}", file=sys.stderr)
