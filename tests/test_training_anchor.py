"""`curriculum.anchor_coef`: PPO's loss gains coef(t) * KL(start policy || policy) on a warm-started stage. The KL
is the closed form, 0 at the start; its gradient is added to every minibatch's; the anchored policy stays closer to
its start; the coefficient decays; the start policy survives a resume. Real (tiny) training with the real env."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from dinosim.runfolder import START_POLICY_FILE
from dinosim.training.anchor import PolicyAnchor, anchor_coef_at, frozen_copy, policy_kl
from dinosim.training.builders import make_vec_env, wrap_normalize
from dinosim.training.fast_ppo import FastPPO

ENV = {"task": "balance", "max_episode_steps": 40, "push_force": 0.3, "push_interval": 0.2}
N_STEPS, N_ENVS = 64, 2


def _model(batch_size: int = N_STEPS * N_ENVS, n_epochs: int = 1, **kwargs: Any) -> FastPPO:
    venv = wrap_normalize(make_vec_env("velociraptor", ENV, N_ENVS, 5, "dummy"), "ppo", 0.99)
    return FastPPO("MlpPolicy", venv, n_steps=N_STEPS, batch_size=batch_size, n_epochs=n_epochs, seed=2,
                   device="cpu", learning_rate=1e-3, policy_kwargs={"net_arch": [32, 32], "log_std_init": -0.5},
                   **kwargs)


def _obs(model: FastPPO, n: int = 256) -> th.Tensor:
    return th.as_tensor(np.random.default_rng(1).normal(size=(n, model.observation_space.shape[0])),
                        dtype=th.float32)


def test_the_coefficient_decays_linearly_over_anchor_timesteps_or_stays() -> None:
    assert [anchor_coef_at(0.4, 1000, s) for s in (0, 250, 500, 1000, 5000)] == pytest.approx([0.4, 0.3, 0.2, 0, 0])
    assert [anchor_coef_at(0.4, 0, s) for s in (0, 10**6, 10**9)] == [0.4, 0.4, 0.4]
    anchor = PolicyAnchor(policy=None, coef=1.0, timesteps=100, start_step=5000)  # global steps, from the stage start
    assert [anchor.coef_at(s) for s in (5000, 5050, 5100, 9000)] == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_the_kl_is_the_closed_form_for_diagonal_gaussians_and_0_for_the_start_policy() -> None:
    model = _model()
    start, obs = frozen_copy(model.policy), _obs(model)
    assert policy_kl(start, model.policy, obs).item() == 0.0
    assert start.optimizer is None and not any(p.requires_grad for p in start.parameters())
    with th.no_grad():
        model.policy.action_net.weight.add_(0.05 * th.randn_like(model.policy.action_net.weight))
        model.policy.log_std.add_(th.linspace(-0.3, 0.3, model.policy.log_std.numel()))
    kl = policy_kl(start, model.policy, obs)
    with th.no_grad():
        mu0, mu = start.get_distribution(obs).distribution.mean, model.policy.get_distribution(obs).distribution.mean
        s0, s = start.log_std.exp(), model.policy.log_std.exp()
        expected = (th.log(s / s0) + (s0 ** 2 + (mu0 - mu) ** 2) / (2 * s ** 2) - 0.5).sum(-1).mean()
    assert kl.item() > 0.01 and kl.item() == pytest.approx(expected.item(), rel=1e-5)
    kl.backward()  # differentiable in the policy, not in the frozen start
    assert model.policy.action_net.weight.grad is not None and start.action_net.weight.grad is None
    model.get_env().close()


def test_the_kl_gradient_is_added_to_the_minibatch_gradient() -> None:
    """One update on one minibatch, with the anchor's coef 0.7 and 0: the gradients the optimiser steps on differ
    by 0.7 * grad KL on the rollout's (normalised) observations, before clipping (max_grad_norm out of the way)."""
    model = _model(max_grad_norm=1e9)
    model.learn(N_STEPS * N_ENVS)  # one rollout in the buffer (and one plain update)
    anchor = PolicyAnchor(frozen_copy(model.policy), 0.7, 0, 0)
    with th.no_grad():  # a start the policy has moved from, so the KL has a gradient
        anchor.policy.action_net.bias.add_(0.2)
    model.set_logger(Logger(None, []))
    policy_state, optim_state = copy.deepcopy(model.policy.state_dict()), copy.deepcopy(
        model.policy.optimizer.state_dict())
    params = list(model.policy.parameters())
    grads: list[list[th.Tensor]] = []
    model.policy.optimizer.register_step_pre_hook(
        lambda *_: grads.append([p.grad.clone() if p.grad is not None else th.zeros_like(p) for p in params]))
    for coef in (0.7, 0.0):
        model.policy.load_state_dict(policy_state)
        model.policy.optimizer.load_state_dict(optim_state)
        anchor.coef = coef
        model.anchor = anchor
        np.random.seed(0)  # the same minibatch order
        model.train()
    model.policy.load_state_dict(policy_state)
    obs = th.as_tensor(model.rollout_buffer.observations.reshape(-1, *model.observation_space.shape))
    model.policy.zero_grad()
    (0.7 * policy_kl(anchor.policy, model.policy, obs)).backward()
    expected = [p.grad if p.grad is not None else th.zeros_like(p) for p in params]
    assert any(e.abs().max() > 1e-4 for e in expected)
    for anchored, plain, kl_grad in zip(grads[0], grads[1], expected):
        th.testing.assert_close(anchored - plain, kl_grad, atol=2e-6, rtol=1e-4)
    model.get_env().close()


class LoggedAnchor(BaseCallback):
    """The ``train/anchor_*`` values of each update (read at the next rollout start, before the logger dumps)."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[tuple[float, float]] = []

    def _on_rollout_start(self) -> None:
        values = self.model.logger.name_to_value
        if "train/anchor_kl" in values:
            self.updates.append((values["train/anchor_kl"], values["train/anchor_coef"]))

    def _on_step(self) -> bool:
        return True


def _anchored_training(coef: float | None, updates: int = 6, **kwargs: Any) -> tuple[FastPPO, th.Tensor, LoggedAnchor]:
    """A model trained ``updates`` updates with an anchor of ``coef`` at its initial policy (None: no anchor); the
    KL of its final policy from the start on fixed states; the logged anchor values."""
    model = _model(**kwargs)
    start = frozen_copy(model.policy)
    model.anchor = None if coef is None else PolicyAnchor(start, coef, 0, 0)
    logged = LoggedAnchor()
    model.learn((updates + 1) * N_STEPS * N_ENVS, callback=logged)
    with th.no_grad():
        kl = policy_kl(start, model.policy, _obs(model))
    model.get_env().close()
    return model, kl, logged


def test_the_logged_kl_is_0_at_the_start_and_positive_after_updates() -> None:
    _, _, logged = _anchored_training(0.0)  # one minibatch per update: its KL is taken before that update's step
    assert logged.updates[0] == (0.0, 0.0)
    assert all(kl > 0 for kl, _ in logged.updates[1:]) and len(logged.updates) == 6


def test_the_anchor_keeps_the_policy_closer_to_its_start() -> None:
    """Same seed, 6 updates of 4 epochs x 4 minibatches: coef 0 only measures (SB3's training bit for bit);
    coef 1 ends at less than half the KL from the start (measured: 0.045 against 0.131)."""
    plain, plain_kl, _ = _anchored_training(None, n_epochs=4, batch_size=32)
    measured, measured_kl, measured_log = _anchored_training(0.0, n_epochs=4, batch_size=32)
    anchored, anchored_kl, anchored_log = _anchored_training(1.0, n_epochs=4, batch_size=32)
    for (name, ours), theirs in zip(measured.policy.state_dict().items(), plain.policy.state_dict().values()):
        assert th.equal(ours, theirs), name
    assert measured_kl.item() == plain_kl.item()
    assert {c for _, c in measured_log.updates} == {0.0} and {c for _, c in anchored_log.updates} == {1.0}
    assert 0 < anchored_kl.item() < 0.5 * plain_kl.item(), (anchored_kl.item(), plain_kl.item())
    assert anchored_log.updates[-1][0] < measured_log.updates[-1][0]


def test_a_saved_anchored_model_is_an_ordinary_ppo_zip(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    model = _model()
    model.anchor = PolicyAnchor(frozen_copy(model.policy), 1.0, 0, 0)
    model.save(tmp_path / "m.zip")
    loaded = FastPPO.load(tmp_path / "m.zip", device="cpu")
    assert loaded.anchor is None and "anchor" not in loaded.__dict__
    PPO.load(tmp_path / "m.zip", device="cpu")
    model.get_env().close()


@pytest.mark.slow
def test_a_resumed_stage_keeps_the_anchor_it_started_with(tmp_path: Path, tiny) -> None:
    """Stage 2 warm-started from stage 1 with anchor_coef 0.5 decaying over 384 steps, interrupted (Ctrl-C) after
    its checkpoint at stage step 256, then resumed: the anchor is the policy stage 2 started with, both times."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dinosim.training.curriculum import RunHooks
    from dinosim.training.runner import resume

    budget, seen = 512, {}

    class Probe(BaseCallback):
        def __init__(self, key: str, stop_at: int | None = None) -> None:
            super().__init__()
            self.key, self.stop_at = key, stop_at

        def _on_training_start(self) -> None:
            if self.num_timesteps >= budget:  # stage 2
                anchor = self.model.anchor
                seen[self.key] = {"policy": {k: v.clone() for k, v in self.model.policy.state_dict().items()},
                                  "anchor": {k: v.clone() for k, v in anchor.policy.state_dict().items()},
                                  "start_step": anchor.start_step, "coef": anchor.coef}
            else:
                seen["stage1_anchor"] = self.model.anchor

        def _on_rollout_start(self) -> None:
            if self.stop_at is not None and self.num_timesteps == self.stop_at:  # after the checkpoint callback
                raise KeyboardInterrupt

        def _on_step(self) -> bool:
            return True

    run_dir = tmp_path / "run"
    overrides = ["2.curriculum.anchor_coef=0.5", "2.curriculum.anchor_timesteps=384"]
    code, summary = tiny.run(run_dir, [1, 2], overrides, budget,
                             hooks=RunHooks(log_stdout=False, extra_callbacks=[Probe("first", budget + 256)]))
    assert code == 130 and summary["stages"]["2"]["status"] == "running"
    assert seen["stage1_anchor"] is None and not (run_dir / "stage1" / START_POLICY_FILE).exists()
    first = seen["first"]
    assert first["start_step"] == budget and first["coef"] == 0.5
    stored = th.load(run_dir / "stage2" / START_POLICY_FILE, weights_only=True)
    for name, value in first["policy"].items():  # the stage's start, as the stage began
        assert th.equal(first["anchor"][name], value) and th.equal(stored[name], value), name

    code = resume(run_dir, progress=False, hooks=RunHooks(log_stdout=False, extra_callbacks=[Probe("resumed")]))
    assert code == 0
    resumed = seen["resumed"]
    assert resumed["start_step"] == budget
    assert all(th.equal(resumed["anchor"][k], v) for k, v in first["policy"].items())  # the same anchor
    assert any(not th.equal(resumed["policy"][k], v) for k, v in first["policy"].items())  # not the resumed weights
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"

    events = EventAccumulator(str(run_dir / "stage2" / "tb"))
    events.Reload()
    coefs = [p.value for p in events.Scalars("train/anchor_coef")]
    kls = [p.value for p in events.Scalars("train/anchor_kl")]
    allowed = [anchor_coef_at(0.5, 384, s) for s in range(128, budget + 1, 128)]
    assert all(any(c == pytest.approx(a) for a in allowed) for c in coefs), coefs
    assert coefs == sorted(coefs, reverse=True) and coefs[-1] == 0.0
    assert all(k >= 0 for k in kls) and max(kls) > 0
    events = EventAccumulator(str(run_dir / "stage1" / "tb"))
    events.Reload()
    assert "train/anchor_kl" not in events.Tags()["scalars"]
