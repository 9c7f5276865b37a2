"""Warm starts into a stage with observation values the previous stage never saw vary (the stage-3 target):
the new inputs get the new stage's statistics and zero first-layer weights, so the warm-started networks start as
the previous stage's; nothing changes where no such value exists (stage 1 to 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dinosim.envs import make_env

pytestmark = pytest.mark.slow

TARGET = slice(-3, None)  # the target offset: the observation's last three values


def _model(algorithm: str, env_kwargs: dict):
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda: make_env("velociraptor", env_kwargs)])
    if algorithm == "ppo":
        return PPO("MlpPolicy", venv, policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    return SAC("MlpPolicy", venv, policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu", buffer_size=100)


def _stats_of(observations: np.ndarray):
    """A RunningMeanStd as a previous stage leaves it after these observations (VecNormalize's own class)."""
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    rms = RunningMeanStd(shape=observations.shape[1:])
    rms.update(observations)
    return rms


def _outputs(model, obs_rms, observations: np.ndarray, zero_target: bool = False) -> np.ndarray:
    """Deterministic actions and (PPO) values or (SAC) Q-values of the normalised observations."""
    import torch as th

    x = np.clip((observations - obs_rms.mean) / np.sqrt(obs_rms.var + 1e-8), -10, 10).astype(np.float32)
    if zero_target:
        x[:, TARGET] = 0.0
    with th.no_grad():
        obs = th.as_tensor(x)
        actions = model.policy._predict(obs, deterministic=True)
        if hasattr(model.policy, "predict_values"):
            values = model.policy.predict_values(obs)
        else:
            values = th.cat(model.critic(obs, actions), dim=1)
    return np.concatenate([actions.numpy(), values.numpy()], axis=1)


def _observations(task: str, episodes: int = 3, steps: int = 20) -> np.ndarray:
    env = make_env("velociraptor", {"task": task})
    out = []
    rng = np.random.default_rng(0)
    for seed in range(episodes):
        out.append(env.reset(seed=seed)[0])
        for _ in range(steps):
            obs, _, terminated, truncated, _ = env.step(rng.uniform(-0.3, 0.3, env.action_space.shape))
            out.append(obs)
            if terminated or truncated:
                break
    return np.array(out, dtype=np.float64)


@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_the_warm_started_networks_start_as_the_previous_stage_s_and_the_target_is_normalised(algorithm):
    """Before, the target (never varied in the walking stage) normalised to ±10 and entered untrained weights:
    the walker's actions in the strike env were not the walker's. Now they are exactly the walker's on the same
    body state (its target input was 0), and the target's statistics come from the strike env."""
    from dinosim.training.new_inputs import expand_inputs

    walking, strike = _observations("locomotion"), _observations("strike")
    assert np.all(walking[:, TARGET] == 0.0) and np.all(strike[:, TARGET] != 0.0)
    model = _model(algorithm, {"task": "strike"})
    carried = _stats_of(walking)
    before = _outputs(model, carried, strike, zero_target=True)  # what the walker meant: target input 0
    garbled = _outputs(model, carried, strike)
    assert not np.allclose(garbled, before, atol=1e-3)  # the bug: the carried stats turn the target into ±10

    new = expand_inputs(model.policy, carried, lambda: make_env("velociraptor", {"task": "strike"}), "zero")
    n = walking.shape[1]
    assert new == [n - 3, n - 2, n - 1]
    np.testing.assert_allclose(_outputs(model, carried, strike), before, atol=1e-5)
    normalised = (strike[:, TARGET] - carried.mean[TARGET]) / np.sqrt(carried.var[TARGET])
    assert np.abs(normalised).max() < 10.0  # order 1 from the strike env's own statistics, not clipped
    assert carried.mean[-3] > 0.5  # the prey spawns 0.8-2 m ahead


@pytest.mark.parametrize("mode", ["fresh", "carry"])
def test_the_other_ways_to_start_new_inputs(mode):
    """``fresh``: the strike env's statistics, the first layers' weights untouched; ``carry``: nothing changes."""
    import torch as th

    from dinosim.training.new_inputs import expand_inputs

    model = _model("ppo", {"task": "strike"})
    carried = _stats_of(_observations("locomotion"))
    mean = carried.mean.copy()
    weights = {k: v.clone() for k, v in model.policy.state_dict().items()}
    new = expand_inputs(model.policy, carried, lambda: make_env("velociraptor", {"task": "strike"}), mode)
    assert all(th.equal(v, model.policy.state_dict()[k]) for k, v in weights.items())
    if mode == "carry":
        assert new == [] and np.array_equal(carried.mean, mean)
    else:
        assert new[-3:] == [len(mean) - 3, len(mean) - 2, len(mean) - 1] and carried.mean[-3] > 0.5


def test_nothing_changes_without_new_inputs():
    """Stage 1 to 2: the target is zero in both stages, so neither statistics nor weights change."""
    import torch as th

    from dinosim.training.new_inputs import expand_inputs

    model = _model("ppo", {"task": "locomotion"})
    carried = _stats_of(_observations("balance"))
    mean, var = carried.mean.copy(), carried.var.copy()
    weights = {k: v.clone() for k, v in model.policy.state_dict().items()}
    locomotion = lambda: make_env("velociraptor", {"task": "locomotion"})  # noqa: E731
    assert expand_inputs(model.policy, carried, locomotion, "zero") == []
    assert np.array_equal(carried.mean, mean) and np.array_equal(carried.var, var)
    assert all(th.equal(v, model.policy.state_dict()[k]) for k, v in weights.items())


def test_a_curriculum_warm_start_into_stage_3_names_the_new_inputs(tmp_path: Path, tiny, capfd) -> None:
    """Through the real stage switch: stage 3's carried statistics of the target are the strike env's."""
    import pickle

    code, summary = tiny.run(tmp_path / "run", [2, 3], ["3.curriculum.new_inputs=zero"], 256)
    assert code == 0
    assert "warm start: observation values" in capfd.readouterr().err
    with open(tmp_path / "run" / "stage3" / "vecnormalize.pkl", "rb") as fh:
        rms = pickle.load(fh).obs_rms
    assert np.all(rms.var[TARGET] > 1e-4) and rms.mean[-3] > 0.3
