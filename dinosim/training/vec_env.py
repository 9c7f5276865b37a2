"""The vector envs dinosim trains in: ``InfoSafeDummyVecEnv`` and ``InterruptSafeSubprocVecEnv``.

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

``InterruptSafeSubprocVecEnv`` is SB3's SubprocVecEnv with a ``close`` that always ends its workers, also after
Ctrl-C, SIGTERM or SIGHUP (a ``KeyboardInterrupt`` in the main thread) broke off ``step_wait`` between two workers'
replies. SB3's ``close`` then waits for a reply from every worker, including the ones already read: it blocks
forever. And dinosim's workers ignore those signals (only the main process handles them), so multiprocessing's exit
handler, which terminates daemonic children with SIGTERM and joins them, hung too (seen in CI: a resumed run that
had saved its checkpoint never exited).
"""

from __future__ import annotations

import atexit
from typing import Any

import numpy as np
from gymnasium import spaces
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
