"""``PhysicsThreadsVecEnv`` (``--vec-env threads``): the envs' physics on several threads, the results of the serial
``InfoSafeDummyVecEnv`` bit for bit; serial stepping where an env cannot be stepped in two parts; a worker's
exception reaches the caller; ``close`` ends the worker threads."""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np
import pytest

from dinosim.envs import make_env
from dinosim.species import SPECIES
from dinosim.training.builders import make_vec_env
from dinosim.training.vec_env import InfoSafeDummyVecEnv, PhysicsThreadsVecEnv

# Pushes (the env's random generator runs in begin_step), short episodes (falls, time limits, resets mid-rollout).
KWARGS = {"push_force": 0.3, "push_interval": 0.4, "push_duration": 0.1, "max_episode_steps": 40}
N_ENVS, STEPS = 5, 120


def _tasks() -> list[tuple[str, str]]:
    return [(species, task) for species, spec in SPECIES.items() for task in ("balance", "locomotion", spec.behaviour)]


def _physics_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "dinosim-physics"}


@pytest.mark.parametrize("species,task", _tasks())
def test_threads_return_exactly_what_the_serial_vec_env_returns(species: str, task: str) -> None:
    kwargs = {**KWARGS, "task": task}
    serial = make_vec_env(species, kwargs, N_ENVS, 3, "dummy")
    threaded = make_vec_env(species, kwargs, N_ENVS, 3, "threads", threads=3)
    try:
        assert type(serial) is InfoSafeDummyVecEnv and isinstance(threaded, PhysicsThreadsVecEnv)
        assert threaded.threads == 3
        assert serial.reset().tobytes() == threaded.reset().tobytes()
        rng = np.random.default_rng(1)
        ends = 0
        for _ in range(STEPS):
            action = rng.uniform(-1.5, 1.5, size=(N_ENVS, serial.action_space.shape[0])).astype(np.float32)
            (o1, r1, d1, i1), (o2, r2, d2, i2) = serial.step(action), threaded.step(action)
            assert o1.tobytes() == o2.tobytes() and r1.tobytes() == r2.tobytes() and d1.tobytes() == d2.tobytes()
            for a, b in zip(i1, i2):
                assert a.keys() == b.keys()
                for key in a.keys() - {"terminal_observation", "episode"}:
                    assert a[key] == b[key], key
                if "terminal_observation" in a:
                    assert a["terminal_observation"].tobytes() == b["terminal_observation"].tobytes()
                if "episode" in a:  # Monitor's dict: return, length and wall-clock time (differs)
                    assert (a["episode"]["r"], a["episode"]["l"]) == (b["episode"]["r"], b["episode"]["l"])
            ends += int(d1.sum())
        assert ends >= N_ENVS  # every env ended an episode at least once on average
    finally:
        serial.close()
        threaded.close()


def test_one_thread_or_a_single_env_steps_serially() -> None:
    for n_envs, threads in ((4, 1), (1, 4)):
        venv = make_vec_env("velociraptor", KWARGS, n_envs, 0, "threads", threads=threads)
        assert venv.threads == 1 and not _physics_threads()
        venv.reset()
        venv.step(np.zeros((n_envs, venv.action_space.shape[0]), dtype=np.float32))
        venv.close()


def test_a_wrapper_that_may_change_the_action_makes_it_step_serially() -> None:
    def clipped(seed: int):
        return lambda: gym.wrappers.ClipAction(make_env("trex", KWARGS, seed=seed))

    def plain(seed: int):
        return lambda: make_env("trex", KWARGS, seed=seed)

    mixed = PhysicsThreadsVecEnv([plain(0), clipped(1)], threads=2)
    same = PhysicsThreadsVecEnv([plain(0), plain(1)], threads=2)
    try:
        assert mixed.threads == 1 and same.threads == 2
        mixed.reset()
        mixed.step(np.full((2, mixed.action_space.shape[0]), 3.0, dtype=np.float32))
    finally:
        mixed.close()
        same.close()


def test_a_worker_exception_reaches_the_caller_and_close_ends_the_threads() -> None:
    before = _physics_threads()
    venv = make_vec_env("brachiosaurus", KWARGS, 4, 0, "threads", threads=2)
    assert len(_physics_threads() - before) == 1
    venv.reset()
    action = np.zeros((4, venv.action_space.shape[0]), dtype=np.float32)
    venv.step(action)

    def broken() -> None:
        raise FloatingPointError("simulated physics fault")

    venv.envs[3].unwrapped.simulate = broken  # env 3 is in the worker thread's block
    with pytest.raises(FloatingPointError, match="simulated physics fault"):
        venv.step(action)
    venv.close()
    assert _physics_threads() == before
