"""The anchor of a warm-started PPO stage: a KL penalty towards the policy the stage started from.

A warm-started stage can wear away the skill it starts from before the new rewards teach anything built on it (the
raptor's walking stage forgets how to stand: docs/envs.md, "Does the curriculum help?"). With
``curriculum.anchor_coef`` > 0, :class:`~dinosim.training.fast_ppo.FastPPO` adds to PPO's loss, per minibatch::

    coef(t) * mean over the minibatch states s of KL(pi_start(.|s) || pi(.|s))

* ``pi_start``: a frozen copy of the policy at the stage start, after the warm start (the previous stage's or
  ``--init-from``'s weights; with ``policy_kwargs.log_std_init`` set, the stage's own ``log_std``);
* ``s``: the rollout's observations as the policy sees them (normalised by the training ``VecNormalize``);
* KL: the closed form for the policies' distributions (diagonal Gaussians: summed over the action dimensions);
* ``coef(t) = anchor_coef * max(0, 1 - t / anchor_timesteps)`` at stage step ``t`` when the update starts;
  ``anchor_timesteps = 0`` keeps ``anchor_coef`` for the whole stage. ``t`` counts from the stage's start, so a
  critic warm-up (``curriculum.critic_warmup_timesteps``: the actor frozen, nothing for the anchor to hold) uses up
  that much of the fade (a sweep of the T-Rex's bite with 100k of warm-up and a 200k fade, 2026-12-02).

Logged per update: ``train/anchor_kl`` (mean of the minibatches' KL before each gradient step) and
``train/anchor_coef``. The frozen weights are written atomically to the stage folder
(:data:`~dinosim.runfolder.START_POLICY_FILE`) when the stage starts, and read back when an interrupted stage
resumes: the anchor survives a resume. Only a warm-started stage has one (a stage from scratch has nothing to keep).
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch as th

from dinosim.config.settings import CurriculumSettings
from dinosim.errors import DinosimError
from dinosim.run_integrity import loading
from dinosim.runfolder import START_POLICY_FILE, atomic_write_bytes


def anchor_coef_at(coef: float, timesteps: int, stage_steps: int) -> float:
    """``coef`` falling linearly to 0 over ``timesteps`` stage steps (``timesteps`` 0: ``coef`` all stage)."""
    if timesteps <= 0:
        return float(coef)
    return float(coef) * max(0.0, 1.0 - stage_steps / timesteps)


def policy_kl(start: Any, policy: Any, obs: th.Tensor) -> th.Tensor:
    """Mean over the states ``obs`` of KL(start(.|s) || policy(.|s)), closed form; differentiable in ``policy``."""
    with th.no_grad():
        p = start.get_distribution(obs).distribution
    q = policy.get_distribution(obs).distribution
    kl = th.distributions.kl_divergence(p, q)
    return (kl.sum(dim=-1) if kl.dim() > 1 else kl).mean()


def frozen_copy(policy: Any) -> Any:
    """A copy of an SB3 policy that no optimiser updates (no gradients, evaluation mode, no optimiser)."""
    frozen = type(policy)(**policy._get_constructor_parameters())  # as SB3 rebuilds a saved policy (no deepcopy:
    frozen.load_state_dict(policy.state_dict())                       # the policy may hold a distribution's graph)
    frozen.to(policy.device)
    frozen.optimizer = None  # the anchor never trains
    frozen.requires_grad_(False)
    frozen.set_training_mode(False)
    return frozen


@dataclass
class PolicyAnchor:
    """A stage's frozen start policy and the schedule of its coefficient (see the module docstring)."""

    policy: Any
    coef: float
    timesteps: int
    start_step: int  # global step at which the stage began

    def coef_at(self, global_step: int) -> float:
        return anchor_coef_at(self.coef, self.timesteps, int(global_step) - self.start_step)

    @contextmanager
    def in_loss(self, model: Any, coef: float) -> Iterator[list[float]]:
        """While SB3's ``PPO.train`` runs inside: every gradient step also descends ``coef * KL`` on its minibatch;
        yields the list that receives each minibatch's KL.

        Two hooks on the instances, removed on exit. SB3 calls ``policy.evaluate_actions(minibatch observations,
        actions)``, builds the loss, then ``optimizer.zero_grad()``, ``loss.backward()``, gradient clipping and
        ``optimizer.step()``. The first hook notes the observations; the second zeroes the gradients, then
        back-propagates ``coef * KL`` on them, so ``loss.backward()`` adds its gradients to the KL's: the step and
        the clipping see the gradient of ``loss + coef * KL``. With ``coef`` 0 the KL is only measured.
        """
        policy = model.policy
        optimizer = policy.optimizer
        evaluate, zero_grad = policy.evaluate_actions, optimizer.zero_grad
        seen: dict[str, th.Tensor] = {}
        kls: list[float] = []

        def noting_evaluate_actions(obs: th.Tensor, actions: th.Tensor) -> Any:
            seen["obs"] = obs
            return evaluate(obs, actions)

        def zero_grad_then_kl(*args: Any, **kwargs: Any) -> None:
            zero_grad(*args, **kwargs)
            with th.set_grad_enabled(coef > 0):
                kl = policy_kl(self.policy, policy, seen.pop("obs"))
            kls.append(float(kl.detach()))
            if coef > 0 and kl.requires_grad:  # not while a critic warm-up holds the actor
                (coef * kl).backward()

        policy.evaluate_actions, optimizer.zero_grad = noting_evaluate_actions, zero_grad_then_kl
        try:
            yield kls
        finally:
            del policy.evaluate_actions, optimizer.zero_grad  # the class methods again


def stage_anchor(policy: Any, stage_folder: Path, curriculum: CurriculumSettings, warm_started: bool,
                 start_step: int, resumed: bool) -> Optional[PolicyAnchor]:
    """The anchor of a stage whose ``curriculum.anchor_coef`` > 0 and that started from a previous policy (else
    None). A stage starting now: a frozen copy of ``policy`` (its weights after the warm start), written to the
    stage folder. A ``resumed`` stage: the weights that file holds (``policy`` gives the network's shapes)."""
    if not curriculum.anchor_coef or not warm_started:
        return None
    frozen = frozen_copy(policy)
    path = Path(stage_folder) / START_POLICY_FILE
    if resumed:
        if not path.exists():
            raise DinosimError(f"{path} is missing: the policy this stage started from, which its "
                               "curriculum.anchor_coef pulls towards; the stage cannot resume with the same anchor")
        with loading(path, "start policy"):
            frozen.load_state_dict(th.load(path, map_location=frozen.device, weights_only=True))
    else:
        buffer = io.BytesIO()
        th.save(frozen.state_dict(), buffer)
        atomic_write_bytes(path, buffer.getvalue())
    return PolicyAnchor(frozen, float(curriculum.anchor_coef), int(curriculum.anchor_timesteps), int(start_step))
