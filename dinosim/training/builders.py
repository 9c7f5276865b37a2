"""Build environments, vectorised envs and SB3 / sb3-contrib models from a :class:`RunConfig` (imports torch/SB3).

Env factory contract (``EnvFactory``): ``factory(species, env_kwargs, seed) -> gymnasium.Env``. The default is
:func:`dinosim.envs.make_env`; tests of the training code may pass their own. Every env built here is wrapped in
:class:`EnvParamSetter` (so the curriculum can change ``[env]`` values of a running env) and SB3's ``Monitor``.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import gymnasium as gym
import numpy as np

from dinosim.errors import DinosimError
from dinosim.training.new_inputs import expand_inputs
from dinosim.training.schedules import StageClock, StageSchedule

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize

    from dinosim.config.resolve import RunConfig

EnvFactory = Callable[[str, dict, Optional[int]], gym.Env]


TORCH_THREADS_ENV = "DINOSIM_TORCH_THREADS"
# Imported once by the forkserver that starts SubprocVecEnv workers; each worker is forked from it with them loaded.
# Without them every worker imported SB3 (torch with it) and MuJoCo itself when it unpickled its target: a 2-env
# subproc vec env took 4.1-4.7 s to start, with them 2.5 s the first time in a process and 0.4 s after that (nice
# 15, one core busy with a training).
FORKSERVER_PRELOAD = ("__main__", "stable_baselines3.common.vec_env.subproc_vec_env", "dinosim.envs")


def configure_torch_threads() -> int:
    """Use ``$DINOSIM_TORCH_THREADS`` (default 1) intra-op threads. Small MLPs gain nothing from more threads, and
    on a busy 2-core machine torch's default (one thread per core) measured 13x slower PPO training
    (38 vs 506 fps, velociraptor stage 1, 4 envs)."""
    import os

    import torch

    try:
        threads = max(1, int(os.environ.get(TORCH_THREADS_ENV, "1")))
    except ValueError:
        raise DinosimError(f"${TORCH_THREADS_ENV} must be an integer") from None
    torch.set_num_threads(threads)
    return threads


def default_env_factory(species: str, env_kwargs: dict, seed: Optional[int]) -> gym.Env:
    from dinosim.envs import make_env

    return make_env(species, env_kwargs, seed=seed)


class EnvParamSetter(gym.Wrapper):
    """Lets a VecEnv change constructor values of the wrapped env while it runs.

    ``set_env_params({"alive_bonus": 1.5})`` calls ``unwrapped.set_env_params(**params)`` when the env defines it,
    else sets same-named attributes on ``env.unwrapped`` (SB3's ``VecEnv.set_attr`` would only reach the outermost
    wrapper). Returns ``{key: True}`` for keys the env knows (it defines ``set_env_params`` or already had the
    attribute) and False for keys it did not have, which the env therefore probably does not read.
    """

    def set_env_params(self, params: dict[str, Any]) -> dict[str, bool]:
        target = self.env.unwrapped
        existed = {key: hasattr(target, key) for key in params}
        setter = getattr(target, "set_env_params", None)
        if callable(setter):
            setter(**params)
            return {key: True for key in params}
        for key, value in params.items():
            setattr(target, key, value)
        return existed


def _make_thunk(factory: EnvFactory, species: str, env_kwargs: dict, seed: Optional[int]) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        import multiprocessing
        import signal

        from stable_baselines3.common.monitor import Monitor

        if multiprocessing.parent_process() is not None:
            # a SubprocVecEnv worker: Ctrl-C (and SIGTERM/SIGHUP from a scheduler) reaches the whole process group;
            # only the main process handles it (saves a checkpoint, then closes the workers; a worker whose parent
            # died ends on the closed pipe)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)

        env = factory(species, dict(env_kwargs), seed)
        return Monitor(EnvParamSetter(env))

    return thunk


def make_vec_env(species: str, env_kwargs: dict, n_envs: int, seed: int, vec_env: str,
                 factory: Optional[EnvFactory] = None, threads: int = 1) -> "VecEnv":
    """``n_envs`` envs seeded ``seed, seed+1, ...``: ``"dummy"``, in this process one after the other (SB3's
    DummyVecEnv without the info deep copy, see :mod:`dinosim.training.vec_env`); ``"threads"``, in this process
    with their physics on up to ``threads`` threads at once (the same results); ``"subproc"``, a SubprocVecEnv
    (forkserver, preloading :data:`FORKSERVER_PRELOAD`; also with one env: the user asked for the simulation in its
    own process, e.g. to keep a native crash out of the trainer)."""
    from dinosim.config.resolve import VEC_ENVS
    from dinosim.training.vec_env import InfoSafeDummyVecEnv, InterruptSafeSubprocVecEnv, PhysicsThreadsVecEnv

    if vec_env not in VEC_ENVS:
        raise DinosimError(f"unknown vec env {vec_env!r}")
    factory = factory or default_env_factory
    thunks = [_make_thunk(factory, species, env_kwargs, seed + i) for i in range(n_envs)]
    if vec_env == "subproc":
        import multiprocessing

        multiprocessing.set_forkserver_preload(list(FORKSERVER_PRELOAD))  # read when the forkserver first starts
        return InterruptSafeSubprocVecEnv(thunks, start_method="forkserver")
    if vec_env == "threads":
        return PhysicsThreadsVecEnv(thunks, threads)
    return InfoSafeDummyVecEnv(thunks)


def wrap_normalize(venv: "VecEnv", algorithm: str, gamma: float, training: bool = True) -> "VecNormalize":
    """Observation normalisation for every algorithm; reward normalisation for PPO only."""
    from stable_baselines3.common.vec_env import VecNormalize

    norm_reward = algorithm == "ppo" and training
    return VecNormalize(venv, training=training, norm_obs=True, norm_reward=norm_reward, gamma=gamma)


def algorithm_class(algorithm: str) -> type:
    if algorithm == "ppo":  # SB3's PPO with a leaner rollout collection (same numbers, dinosim.training.fast_ppo)
        from dinosim.training.fast_ppo import FastPPO

        return FastPPO
    if algorithm == "sac":
        from stable_baselines3 import SAC

        return SAC
    if algorithm == "tqc":
        from sb3_contrib import TQC

        return TQC
    if algorithm == "crossq":
        from sb3_contrib import CrossQ

        return CrossQ
    raise DinosimError(f"unknown algorithm {algorithm!r}")


def algo_setting(config: "RunConfig", stage: int, name: str) -> Any:
    """The stage's value of constructor argument ``name`` of its algorithm: the configured one, else the
    constructor's own default (read from SB3's signature, e.g. ``gamma`` 0.99; never copied into dinosim)."""
    kwargs = config.algo_kwargs(stage)
    if name in kwargs:
        return kwargs[name]
    return inspect.signature(algorithm_class(config.algorithm)).parameters[name].default


def stage_schedules(config: "RunConfig", stage: int, clock: StageClock) -> dict[str, Any]:
    """``learning_rate`` (and PPO ``clip_range``) as :class:`StageSchedule` objects from the stage's settings."""
    sched = config.schedule(stage)
    cur = config.curriculum(stage)
    out: dict[str, Any] = {}
    lr = algo_setting(config, stage, "learning_rate")
    if isinstance(lr, (int, float)):
        out["learning_rate"] = StageSchedule(clock, float(lr), sched.learning_rate_end, sched.lr_schedule,
                                            decay_steps=sched.lr_decay_timesteps)
    if config.algorithm == "ppo":
        clip = algo_setting(config, stage, "clip_range")
        if isinstance(clip, (int, float)):
            out["clip_range"] = StageSchedule(
                clock, float(clip), sched.clip_range_end, "linear",
                warmup_steps=cur.warmup_timesteps, warmup_value=cur.warmup_clip_range,
            )
    return out


def build_model(config: "RunConfig", stage: int, env: "VecEnv", clock: StageClock, seed: int,
                device: str = "cpu") -> "BaseAlgorithm":
    """A fresh model of ``config.algorithm`` with the stage's hyperparameters and stage-local schedules, on the
    torch ``device`` ("auto": cuda when available)."""
    cls = algorithm_class(config.algorithm)
    kwargs = config.algo_kwargs(stage)
    kwargs.update(stage_schedules(config, stage, clock))
    if isinstance(kwargs.get("train_freq"), list):  # TOML's [n, "episode"]: SB3 reads only a tuple as (n, unit)
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    policy = "MlpPolicy"
    try:
        return cls(policy, env, seed=seed, verbose=0, device=device, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise DinosimError(f"stage {stage}: cannot build {config.algorithm} with the resolved config: {exc}") from None


def load_model(algorithm: str, path: Path, env: Optional["VecEnv"] = None) -> "BaseAlgorithm":
    cls = algorithm_class(algorithm)
    from dinosim.run_integrity import loading

    with loading(path, f"{algorithm} model"):  # a damaged or foreign file: one line naming it
        return cls.load(str(path), env=env, device="cpu")


def warm_start(model: "BaseAlgorithm", source_model: Path, source_vecnorm: Optional[Path],
               vec_normalize: "VecNormalize", algorithm: str, keep_log_std: bool, *,
               obs_norm_count: Optional[float], new_stage_env: Optional[Callable[[], Any]],
               new_inputs: str) -> list[str]:
    """Copy the policy (actor and critic/value) weights and observation statistics of a saved model.

    ``keep_log_std``: leave the new model's ``log_std`` (the stage set ``policy_kwargs.log_std_init``) instead of
    copying it. ``obs_norm_count``: cap the sample count of the copied observation statistics, so that they
    follow the new stage's observations (a walker's velocities, a stander's were near zero) within about that
    many samples instead of the previous stage's whole length. ``new_stage_env`` (builds one env of the new stage):
    observation values the saved statistics never saw vary start as ``new_inputs`` says
    (:mod:`dinosim.training.new_inputs`; a stage-3 target after a stage without one), and a line on stderr names
    them (``new_inputs``: the stage's ``curriculum.new_inputs``, whose default lives in
    :class:`~dinosim.config.settings.CurriculumSettings`). Returns the names of the tensors copied. Raises
    DinosimError when the networks do not match.
    """
    import pickle

    source = load_model(algorithm, source_model)
    state = source.policy.state_dict()
    if keep_log_std:
        state = {k: v for k, v in state.items() if k != "log_std"}
    target = model.policy.state_dict()
    mismatched = [k for k, v in state.items() if k not in target or target[k].shape != v.shape]
    missing = [k for k in target if k not in state and not (keep_log_std and k == "log_std")]
    if mismatched or missing:
        raise DinosimError(
            f"cannot warm-start from {source_model}: network shapes differ "
            f"({', '.join((mismatched + missing)[:4])}); use the same policy_kwargs.net_arch in every stage"
        )
    model.policy.load_state_dict(state, strict=not keep_log_std)
    if source_vecnorm is not None and Path(source_vecnorm).exists():
        from dinosim.run_integrity import loading

        with loading(source_vecnorm, "normalisation file"), open(source_vecnorm, "rb") as fh:
            saved = pickle.load(fh)
        if saved.obs_rms is not None and vec_normalize.obs_rms is not None:
            if np.shape(saved.obs_rms.mean) != np.shape(vec_normalize.obs_rms.mean):
                raise DinosimError(f"cannot warm-start from {source_vecnorm}: observation shapes differ")
            vec_normalize.obs_rms = saved.obs_rms.copy()
            if obs_norm_count is not None:
                vec_normalize.obs_rms.count = min(float(vec_normalize.obs_rms.count), float(obs_norm_count))
            if new_stage_env is not None:
                new = expand_inputs(model.policy, vec_normalize.obs_rms, new_stage_env, new_inputs)
                if new:
                    weights = "zero weights" if new_inputs == "zero" else "their untrained weights"
                    print(f"warm start: observation values {', '.join(map(str, new))} never varied in the previous "
                          f"stage: they start with this stage's statistics and {weights} (curriculum.new_inputs = "
                          f"{new_inputs!r})", file=sys.stderr, flush=True)
    return list(state)
