"""`FastPPO` and `LeanActorCritic` reproduce SB3's PPO exactly: same policy outputs and random draws, same rollout
buffers, same trained parameters and statistics for the same seed; unsupported setups fall back to SB3's path."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from dinosim.training import fast_ppo, split_update
from dinosim.training.builders import algorithm_class, make_vec_env, wrap_normalize
from dinosim.training.evaluation import model_policy
from dinosim.training.fast_ppo import FastPPO
from dinosim.training.lean_policy import LeanActorCritic

# short episodes (truncation bootstrap on every 12th step) and falls (pushes, weak servos): both ends of an episode
ENV = {"task": "balance", "max_episode_steps": 12, "push_force": 0.3, "push_interval": 0.2}


class BufferSnapshots(BaseCallback):
    """A copy of the rollout buffer's arrays at every rollout end (after GAE), and the locals the callbacks saw."""

    def __init__(self) -> None:
        super().__init__()
        self.rollouts: list[dict[str, np.ndarray]] = []
        self.step_locals: list[dict[str, Any]] = []
        self.train_logs: list[dict[str, Any]] = []  # the previous update's train/* records, not yet dumped

    def _on_rollout_start(self) -> None:
        records = self.model.logger.name_to_value
        self.train_logs.append({k: float(v) for k, v in records.items() if k.startswith("train/")})

    def _on_step(self) -> bool:
        loc = self.locals
        self.step_locals.append({k: np.array(loc[k], copy=True) for k in ("rewards", "dones", "clipped_actions")}
                                | {"infos": [dict(i) for i in loc["infos"]], "n_steps": loc["n_steps"]})
        return True

    def _on_rollout_end(self) -> None:
        buf = self.model.rollout_buffer
        self.rollouts.append({name: getattr(buf, name).copy() for name in (
            "observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns")})


def _train(cls: type, timesteps: int = 3 * 2 * 48, setup: Callable[[Any], None] = lambda model: None,
           **kwargs: Any) -> tuple[Any, BufferSnapshots]:
    venv = wrap_normalize(make_vec_env("velociraptor", ENV, 2, 7, "dummy"), "ppo", 0.99)
    model = cls("MlpPolicy", venv, n_steps=48, batch_size=32, n_epochs=2, seed=3, device="cpu",
                policy_kwargs={"net_arch": [32, 32], "log_std_init": -0.5}, **kwargs)
    setup(model)
    snapshots = BufferSnapshots()
    model.learn(timesteps, callback=snapshots)
    venv.close()
    return model, snapshots


def test_lean_forward_is_bit_identical_to_the_policy() -> None:
    venv = wrap_normalize(make_vec_env("velociraptor", ENV, 4, 0, "dummy"), "ppo", 0.99)
    model = PPO("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64], "log_std_init": -0.5})
    lean = LeanActorCritic.of(model.policy)
    assert lean is not None
    obs = np.random.default_rng(0).normal(size=(4, venv.observation_space.shape[0])).astype(np.float32)
    th.manual_seed(11)
    with th.no_grad():
        actions, values, log_probs = model.policy(th.as_tensor(obs))
    th.manual_seed(11)
    lean_actions, lean_values, lean_log_probs = lean.act(obs)
    assert np.array_equal(lean_actions, actions.numpy())
    assert th.equal(lean_values, values) and th.equal(lean_log_probs, log_probs)
    with th.no_grad():
        assert th.equal(lean.values(obs[:1]), model.policy.predict_values(th.as_tensor(obs[:1])))
    with th.no_grad():  # mean actions beyond [-1, 1]: predict clips them (and reads the updated weights)
        model.policy.action_net.weight.mul_(1000.0)
    assert np.array_equal(lean.predict(obs), model.predict(obs, deterministic=True)[0])
    assert np.abs(lean.predict(obs)).max() == 1.0
    assert model_policy(model).__self__ is not None  # evaluations use the lean predict
    venv.close()


def test_fast_ppo_collects_and_trains_exactly_like_sb3_ppo() -> None:
    slow, slow_seen = _train(PPO)
    fast, fast_seen = _train(FastPPO)
    assert len(fast_seen.rollouts) == len(slow_seen.rollouts) == 3
    for ours, theirs in zip(fast_seen.rollouts, slow_seen.rollouts):
        for name in theirs:
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    truncated = sum(info.get("TimeLimit.truncated", False) for s in slow_seen.step_locals for info in s["infos"])
    assert truncated > 0  # the timeout bootstrap was exercised
    assert any(s["dones"].any() for s in slow_seen.step_locals)
    for ours, theirs in zip(fast_seen.step_locals, slow_seen.step_locals):
        assert ours["n_steps"] == theirs["n_steps"]
        for name in ("rewards", "dones", "clipped_actions"):
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
        assert [sorted(i) for i in ours["infos"]] == [sorted(i) for i in theirs["infos"]]
    for (name, ours), theirs in zip(fast.policy.state_dict().items(), slow.policy.state_dict().values()):
        assert th.equal(ours, theirs), name
    assert [e["r"] for e in fast.ep_info_buffer] == [e["r"] for e in slow.ep_info_buffer]
    assert fast.num_timesteps == slow.num_timesteps
    for name in ("obs_rms", "ret_rms"):
        ours, theirs = getattr(fast.get_env(), name), getattr(slow.get_env(), name)
        np.testing.assert_array_equal(ours.mean, theirs.mean)
        np.testing.assert_array_equal(ours.var, theirs.var)
        assert ours.count == theirs.count
    np.testing.assert_array_equal(fast.get_env().returns, slow.get_env().returns)


def _freeze_actor(model: Any) -> None:
    """What a critic warm-up does (dinosim.training.callbacks): the actor's parameters stop training."""
    policy = model.policy
    for param in (*policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters(), policy.log_std):
        param.requires_grad_(False)


@pytest.mark.parametrize("setup", [lambda model: None, _freeze_actor], ids=["all", "critic-warm-up"])
def test_the_update_split_over_two_threads_trains_exactly_like_sb3_ppo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                      setup: Callable[[Any], None]) -> None:
    splits: list[int] = []
    split_train = split_update.split_train
    monkeypatch.setattr(split_update, "split_train", lambda model, pool: (splits.append(1), split_train(model, pool)))
    monkeypatch.setattr(fast_ppo, "SPARE_CPUS_TO_SPLIT", -1.0)  # split whatever the machine's load

    def two_threads(model: Any) -> None:
        setup(model)
        model.update_threads = 2

    slow, slow_seen = _train(PPO, setup=setup)
    fast, fast_seen = _train(FastPPO, setup=two_threads)
    assert len(splits) == 3 and split_update.supported(fast)
    for (name, ours), theirs in zip(fast.policy.state_dict().items(), slow.policy.state_dict().values()):
        assert th.equal(ours, theirs), name
    ours, theirs = fast.policy.optimizer.state_dict(), slow.policy.optimizer.state_dict()
    settings = [{k: v for k, v in group.items() if k != "foreach"} for group in ours["param_groups"]]  # FastPPO's
    assert settings == [{k: v for k, v in g.items() if k != "foreach"} for g in theirs["param_groups"]]  # switch
    assert ours["state"].keys() == theirs["state"].keys()
    for index, state in theirs["state"].items():  # Adam's moments and step counts, parameter by parameter
        assert all(th.equal(ours["state"][index][key], value) for key, value in state.items()), index
    assert all(logs.pop("train/update_threads", None) == 2 for logs in fast_seen.train_logs[1:])
    assert fast_seen.train_logs == slow_seen.train_logs and len(fast_seen.train_logs[-1]) >= 9
    assert fast._n_updates == slow._n_updates
    fast.save(tmp_path / "m.zip")  # the thread pool and the idle meter are not saved
    assert PPO.load(tmp_path / "m.zip").policy.state_dict().keys() == fast.policy.state_dict().keys()


def test_the_update_stays_on_one_thread_without_a_spare_core() -> None:
    model = FastPPO("MlpPolicy", wrap_normalize(make_vec_env("velociraptor", ENV, 2, 7, "dummy"), "ppo", 0.99),
                    n_steps=16, batch_size=16, seed=0, device="cpu")
    model.update_threads = 2
    model._spare_cpus = 0.2
    assert not model._splits_update()
    model._spare_cpus = 1.0
    assert model._splits_update()
    model.update_threads = 1
    assert not model._splits_update()
    model.update_threads, model.target_kl = 2, 0.01  # SB3's early stop is not reproduced by the split update
    assert not model._splits_update()
    model.get_env().close()


def test_idle_meter_counts_this_process_busy_cpu_as_not_idle() -> None:
    meter = split_update.IdleMeter()
    meter.start()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # one CPU busy here
        pass
    assert 0.0 <= meter.idle_cpus() <= len(os.sched_getaffinity(0)) - 0.5
    assert split_update.IdleMeter().idle_cpus() == 0.0  # not started: no spare core assumed


def test_unsupported_policies_fall_back_to_sb3() -> None:
    venv = wrap_normalize(make_vec_env("velociraptor", ENV, 2, 0, "dummy"), "ppo", 0.99)
    sde = FastPPO("MlpPolicy", venv, use_sde=True, n_steps=16, batch_size=16, seed=0, device="cpu")
    elu = FastPPO("MlpPolicy", venv, n_steps=16, batch_size=16, seed=0, device="cpu",
                  policy_kwargs={"activation_fn": th.nn.ELU})
    assert LeanActorCritic.of(sde.policy) is None and LeanActorCritic.of(elu.policy) is None
    sde.learn(32)  # SB3's own collect_rollouts
    assert sde.num_timesteps == 32
    venv.close()


@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_dinosim_builds_fast_ppo_and_keeps_sac(algorithm: str) -> None:
    cls = algorithm_class(algorithm)
    assert (cls is FastPPO) == (algorithm == "ppo")
    assert issubclass(cls, PPO) == (algorithm == "ppo")
