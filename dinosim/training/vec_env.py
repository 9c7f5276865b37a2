"""The vector envs dinosim trains in: ``InfoSafeDummyVecEnv``, ``PhysicsThreadsVecEnv`` and
``InterruptSafeSubprocVecEnv``.

``InfoSafeDummyVecEnv`` is SB3's DummyVecEnv without the per-step ``deepcopy`` of the info dicts and of the
observation buffer.

SB3's ``DummyVecEnv.step_wait`` returns ``deepcopy(self.buf_infos)``. A dinosim env builds a new info dict of
immutable values (floats, bools, strings) every step and returns a fresh observation array, and SB3's ``Monitor``
adds a fresh ``episode`` dict, so a shallow copy of each dict gives the caller the same independence. The deep copy
of ~25 keys per env per step took 3.9 s of a 53 s PPO run (cProfile: raptor stage 1, 65,536 steps, 4 envs).
The observations: SB3 returns ``deepcopy`` of its ``OrderedDict`` observation buffer; for an unstructured (e.g.
``Box``) observation space that dict holds one array, and a plain copy of that array is the same new array
(same values, dtype and shape, owning its memory) without ``deepcopy``'s Python machinery (a tenth of the cost; the
caller's array is still independent of the buffer the next step writes into). Dict and tuple spaces keep SB3's way.
The stepping logic below is SB3's own, line for line; ``tests/test_training_units.py`` checks it
returns exactly what ``DummyVecEnv`` returns.

``PhysicsThreadsVecEnv`` is ``InfoSafeDummyVecEnv`` whose envs advance their MuJoCo physics on several threads at
once. Each step it begins every env's step (servo targets, pushes: ``DinoEnv.begin_step``), runs the envs'
``simulate`` (``frame_skip`` MuJoCo steps, during which MuJoCo releases the GIL) in blocks, one block in the calling
thread and one in each worker thread, and then steps every env through its wrappers as ``InfoSafeDummyVecEnv``
does, which finishes the begun steps (rewards, observations, resets) in the calling thread. Only the physics runs
in parallel: an env's own Python never runs on two threads at once (the GIL would serialise it, which is why
stepping whole envs on threads made training slower, see the README's Benchmarks), and each env does exactly the
operations of a serial step on its own state, so the results are ``InfoSafeDummyVecEnv``'s, bit for bit
(``tests/test_training_vec_env.py``). Envs without ``begin_step``/``simulate``, or wrapped in a wrapper that might
change the action on its way down, step serially.

``InterruptSafeSubprocVecEnv`` is SB3's SubprocVecEnv with a ``close`` that always ends its workers, also after
Ctrl-C, SIGTERM or SIGHUP (a ``KeyboardInterrupt`` in the main thread) broke off ``step_wait`` between two workers'
replies. SB3's ``close`` then waits for a reply from every worker, including the ones already read: it blocks
forever. And dinosim's workers ignore those signals (only the main process handles them), so multiprocessing's exit
handler, which terminates daemonic children with SIGTERM and joins them, hung too (seen in CI: a resumed run that
had saved its checkpoint never exited).
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn


class InfoSafeDummyVecEnv(DummyVecEnv):
    """DummyVecEnv for envs whose info dicts are new every step and hold no mutable values shared across steps."""

    def step_wait(self) -> VecEnvStepReturn:
        for env_idx in range(self.num_envs):
            obs, self.buf_rews[env_idx], terminated, truncated, self.buf_infos[env_idx] = self.envs[env_idx].step(
                self.actions[env_idx]
            )
            self.buf_dones[env_idx] = terminated or truncated
            self.buf_infos[env_idx]["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[env_idx]:
                self.buf_infos[env_idx]["terminal_observation"] = obs
                obs, self.reset_infos[env_idx] = self.envs[env_idx].reset()
            self._save_obs(env_idx, obs)
        infos = [dict(info) for info in self.buf_infos]
        return self._obs_from_buf(), np.copy(self.buf_rews), np.copy(self.buf_dones), infos

    def _obs_from_buf(self) -> VecEnvObs:
        """A new array of the buffered observations (see the module docstring); SB3's deep copy for dict and tuple
        observation spaces."""
        if isinstance(self.observation_space, (spaces.Dict, spaces.Tuple)):
            return super()._obs_from_buf()
        return self.buf_obs[None].copy()


class PhysicsThreadsVecEnv(InfoSafeDummyVecEnv):
    """``InfoSafeDummyVecEnv`` whose envs simulate on up to ``threads`` threads at once (see the module docstring):
    the calling thread and ``threads - 1`` worker threads, each a fixed contiguous block of envs. ``threads``
    is capped at the number of envs; 1, or envs that cannot be stepped in two parts, step serially."""

    def __init__(self, env_fns: list, threads: int) -> None:
        super().__init__(env_fns)
        self.threads = 1
        self._blocks: list[list[Any]] = []
        self._workers: list[_PhysicsThread] = []
        dinos = [env.unwrapped for env in self.envs]
        if min(int(threads), self.num_envs) < 2 or not all(_two_part_step(env) for env in self.envs):
            return
        self.threads = min(int(threads), self.num_envs)
        bounds = np.linspace(0, self.num_envs, self.threads + 1).round().astype(int)
        self._blocks = [dinos[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._workers = [_PhysicsThread(block) for block in self._blocks[1:]]

    def step_wait(self) -> VecEnvStepReturn:
        if self._workers:
            i = len(self._blocks[0])
            for worker in self._workers:  # first: their physics starts while this thread begins block 0
                for env in worker.envs:
                    env.begin_step(self.actions[i])
                    i += 1
                worker.start()
            try:
                for env, action in zip(self._blocks[0], self.actions):
                    env.begin_step(action)
                    env.simulate()
            finally:
                for worker in self._workers:
                    worker.wait()  # re-raises a worker's exception
        return super().step_wait()  # each env's step finishes the step begun above

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []
        super().close()


_ACTION_TRANSPARENT_STEPS = (gym.Wrapper.step, Monitor.step, gym.wrappers.OrderEnforcing.step)


def _two_part_step(env: gym.Env) -> bool:
    """Whether ``env`` can be stepped as ``begin_step`` + ``simulate`` + ``step``: its unwrapped env has both
    methods, and every wrapper around it passes ``step``'s action down unchanged (its ``step`` is one of
    :data:`_ACTION_TRANSPARENT_STEPS`)."""
    inner = env.unwrapped
    if not (callable(getattr(inner, "begin_step", None)) and callable(getattr(inner, "simulate", None))):
        return False
    while isinstance(env, gym.Wrapper):
        if type(env).step not in _ACTION_TRANSPARENT_STEPS:
            return False
        env = env.env
    return env is inner


class _PhysicsThread:
    """A daemon thread that runs ``simulate()`` of its envs each time :meth:`start` is called; :meth:`wait`
    returns when they are done (re-raising their exception). Two locks hand the turn back and forth (the cheapest
    handoff Python has: ~17 µs measured on the 2-core machine)."""

    def __init__(self, envs: Sequence[Any]) -> None:
        self.envs = list(envs)
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="dinosim-physics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._go.acquire()
            if self._closed:
                return
            try:
                for env in self.envs:
                    env.simulate()
            except BaseException as error:  # handed to the caller of wait()
                self._error = error
            self._done.release()

    def start(self) -> None:
        self._go.release()

    def wait(self) -> None:
        self._done.acquire()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        """End the thread (after the step it may be running)."""
        self._closed = True
        if self._go.locked():
            self._go.release()
        self._thread.join(timeout=5.0)


class InterruptSafeSubprocVecEnv(SubprocVecEnv):
    """SubprocVecEnv whose ``close`` never blocks: pending replies are read only where one is waiting, workers get
    ``grace`` seconds to exit after the close command, and those still alive are killed."""

    grace: float = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # runs before multiprocessing's exit handler (atexit is last-in, first-out), which would wait forever for
        # workers that ignore its SIGTERM: a path that never closes this env still lets the process exit
        atexit.register(_kill_alive, list(self.processes))

    def close(self) -> None:
        if self.closed:
            return
        if self.waiting:  # step_wait was interrupted: some replies may already have been read
            for remote in self.remotes:
                _drain(remote)
            self.waiting = False
        for remote in self.remotes:
            try:
                remote.send(("close", None))
            except (OSError, EOFError):  # the worker is gone already
                pass
        for process in self.processes:
            process.join(self.grace)
            if process.is_alive():
                process.kill()
                process.join()
        for remote in self.remotes:
            remote.close()
        self.closed = True


def _drain(remote: Any, timeout: float = 1.0) -> None:
    """Read the reply waiting on ``remote``, if one comes within ``timeout`` seconds."""
    try:
        if remote.poll(timeout):
            remote.recv()
    except (OSError, EOFError):
        pass


def _kill_alive(processes: list) -> None:
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
