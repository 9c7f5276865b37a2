"""Run evaluation episodes and summarise them (return, length, success, every reward component).

:func:`run_seeded_episodes` is the evaluation engine of gates and `dinosim evaluate`: every episode has its own
reset seed, a vector of environments is stepped together with one batched policy call per step, and the results
come back in seed order, so the same policy and seeds give the same numbers whatever the number of envs
(deterministic policies). Seeds: training envs are seeded ``seed .. seed + n_envs - 1``; gate evaluations draw
from :func:`gate_seeds` and `dinosim evaluate` from :func:`heldout_seeds`, two streams far above any training seed.

Gate evaluations and screenings stop early once they are certain to fail (``curriculum.eval_early_stop``; the
rule and why the numbers stay the same for any number of envs: :mod:`dinosim.training.eval_stop`).

Reward components are the ``reward_<term>`` keys of each step's ``info`` (they sum to the step reward); an
episode's component value is the sum over its steps. Success is the ``is_success`` flag of an episode's last
step's info; envs that never report it have no success rate (``None``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

import numpy as np

from dinosim.config.settings import STOPPABLE, EvalStats
from dinosim.runfolder import EVAL_STOPPED_PREFIX
from dinosim.training.eval_stop import StopRule

if TYPE_CHECKING:
    import gymnasium as gym
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.policies import BasePolicy
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize

REWARD_PREFIX = "reward_"
GATE_SEED_BASE = 1_000_000_000  # gate evaluations: GATE_SEED_BASE + run seed * SEEDS_PER_RUN + k
TEST_SEED_BASE = 2_000_000_000  # `dinosim evaluate` without --seed: TEST_SEED_BASE + run seed * SEEDS_PER_RUN + k
SEEDS_PER_RUN = 1_000_000

Policy = Callable[[np.ndarray], np.ndarray]  # batch of (normalised) observations -> batch of actions


def gate_seeds(run_seed: int, start: int, count: int) -> range:
    """Episode seeds ``start .. start + count - 1`` of a run's gate-evaluation stream (never a training seed)."""
    first = GATE_SEED_BASE + int(run_seed) * SEEDS_PER_RUN + int(start)
    return range(first, first + int(count))


def heldout_seeds(run_seed: int, count: int) -> range:
    """The first ``count`` seeds of a run's held-out test stream (disjoint from training and gate seeds)."""
    first = TEST_SEED_BASE + int(run_seed) * SEEDS_PER_RUN
    return range(first, first + int(count))


def reward_components(info: dict[str, Any]) -> dict[str, float]:
    """``{term: value}`` for every ``reward_<term>`` key of one step's info."""
    out = {}
    for key, value in info.items():
        if key.startswith(REWARD_PREFIX) and isinstance(value, (int, float, np.floating, np.integer)):
            out[key[len(REWARD_PREFIX):]] = float(value)
    return out


@dataclass
class EvalResult:
    """Per-episode results of one evaluation. ``stopped``: the criteria (of ``STOPPABLE``) it was certain to fail
    when it stopped early (empty: every planned episode is here); ``dropped_steps``: env steps of episodes played
    beyond the recorded ones before it stopped (played, not recorded). ``ends`` (each episode's last
    ``info["termination_reason"]``) and ``start_distances`` (``info["target_distance"]`` at reset) are filled by
    :func:`run_seeded_episodes` only (see :mod:`dinosim.training.outcomes`)."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[Optional[bool]] = field(default_factory=list)
    components: list[dict[str, float]] = field(default_factory=list)
    stopped: tuple[str, ...] = ()
    dropped_steps: int = 0
    ends: list[str] = field(default_factory=list)
    start_distances: list[float] = field(default_factory=list)

    @property
    def mean_reward(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
    def std_reward(self) -> float:
        return float(np.std(self.returns)) if self.returns else math.nan

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths)) if self.lengths else math.nan

    @property
    def success_rate(self) -> Optional[float]:
        known = [s for s in self.successes if s is not None]
        return float(np.mean(known)) if known else None

    def component_means(self) -> dict[str, float]:
        """Mean per-episode sum of each reward component (a component missing in an episode counts as 0)."""
        terms = sorted({t for c in self.components for t in c})
        n = max(len(self.components), 1)
        return {t: float(sum(c.get(t, 0.0) for c in self.components) / n) for t in terms}

    def stats(self) -> EvalStats:
        """Sample moments and success count in the form the gate rule reads."""
        n = len(self.returns)
        ddof = 1 if n > 1 else 0
        known = [s for s in self.successes if s is not None]
        return EvalStats(
            episodes=n, mean_return=self.mean_reward, std_return=float(np.std(self.returns, ddof=ddof)) if n else 0.0,
            mean_length=self.mean_length, std_length=float(np.std(self.lengths, ddof=ddof)) if n else 0.0,
            successes=int(sum(known)) if known else None,
        )

    def metrics(self) -> dict[str, Any]:
        """The flat record logged and appended to metrics.jsonl (without the step/stage keys); ``eval/stopped/<c>``
        is 1 for each criterion the evaluation stopped on, else 0."""
        out: dict[str, Any] = {
            "eval/mean_reward": self.mean_reward,
            "eval/std_reward": self.std_reward,
            "eval/mean_ep_length": self.mean_length,
            "eval/success_rate": self.success_rate,
            **{EVAL_STOPPED_PREFIX + criterion: int(criterion in self.stopped) for criterion in STOPPABLE},
        }
        for term, value in self.component_means().items():
            out[f"eval/reward/{term}"] = value
        return out


def run_episodes(model: "BaseAlgorithm", venv: "VecEnv", n_episodes: int, deterministic: bool = True) -> EvalResult:
    """Play ``n_episodes`` complete episodes spread evenly over ``venv``'s envs (like SB3's ``evaluate_policy``).

    Returns are the rewards as the VecEnv reports them (pass a VecNormalize with ``norm_reward=False`` to get raw
    returns). ``venv`` is reset first.
    """
    n_envs = venv.num_envs
    targets = np.array([(n_episodes + i) // n_envs for i in range(n_envs)], dtype=int)
    counts = np.zeros(n_envs, dtype=int)
    running_return = np.zeros(n_envs)
    running_length = np.zeros(n_envs, dtype=int)
    running_components: list[dict[str, float]] = [{} for _ in range(n_envs)]
    result = EvalResult()
    obs = venv.reset()
    state = None
    episode_starts = np.ones((n_envs,), dtype=bool)
    while (counts < targets).any():
        actions, state = model.predict(obs, state=state, episode_start=episode_starts, deterministic=deterministic)
        obs, rewards, dones, infos = venv.step(actions)
        running_return += rewards
        running_length += 1
        for i in range(n_envs):
            for term, value in reward_components(infos[i]).items():
                running_components[i][term] = running_components[i].get(term, 0.0) + value
            if dones[i]:
                if counts[i] < targets[i]:
                    success = infos[i].get("is_success")
                    result.returns.append(float(running_return[i]))
                    result.lengths.append(int(running_length[i]))
                    result.successes.append(None if success is None else bool(success))
                    result.components.append(running_components[i])
                    counts[i] += 1
                running_return[i] = 0.0
                running_length[i] = 0
                running_components[i] = {}
        episode_starts = dones
    return result


def obs_normalizer(vecnorm: Optional["VecNormalize"]) -> Callable[[np.ndarray], np.ndarray]:
    """A frozen copy of ``vecnorm``'s observation normalisation (identity without one or with norm_obs off)."""
    if vecnorm is None or not vecnorm.norm_obs or vecnorm.obs_rms is None:
        return lambda obs: obs
    mean = vecnorm.obs_rms.mean.copy()
    scale = np.sqrt(vecnorm.obs_rms.var + vecnorm.epsilon)
    clip = float(vecnorm.clip_obs)
    return lambda obs: np.clip((obs - mean) / scale, -clip, clip).astype(np.float32)


def model_policy(model: "BaseAlgorithm | BasePolicy", deterministic: bool = True) -> Policy:
    """``model.predict`` (an SB3 algorithm or its policy: the same call) as a batch policy (observations already
    normalised). Deterministic actor-critic policies use :meth:`LeanActorCritic.predict
    <dinosim.training.lean_policy.LeanActorCritic.predict>` (the same actions with fewer torch calls; it reads the
    live parameters, so it follows later updates of ``model``)."""
    from dinosim.training.lean_policy import LeanActorCritic

    lean = LeanActorCritic.of(getattr(model, "policy", model)) if deterministic else None
    if lean is not None:
        return lean.predict
    return lambda obs: model.predict(obs, deterministic=deterministic)[0]


@contextmanager
def action_noise_seeded(seed: Optional[int]) -> Iterator[None]:
    """Inside: torch's global CPU generator (which a stochastic ``model.predict`` samples from) seeded with
    ``seed``; on exit it is restored, so an evaluation inside the training process leaves training's random stream
    as it was. None: nothing is done (deterministic policies draw nothing)."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def run_seeded_episodes(policy: Policy, envs: Sequence["gym.Env"], seeds: Sequence[int],
                        normalize: Callable[[np.ndarray], np.ndarray] = lambda obs: obs,
                        stop: Optional[StopRule] = None) -> EvalResult:
    """One episode per seed, ``len(envs)`` at a time, with one batched ``policy`` call per step.

    Each env is reset with the next unplayed seed when its episode ends (``terminated`` or ``truncated``; the
    envs must truncate themselves). Results are in the order of ``seeds``. ``stop``: end as soon as the results of
    the first seeds make a criterion certain to fail (:mod:`dinosim.training.eval_stop`); the result then holds
    those first episodes, :attr:`EvalResult.stopped` the criteria, :attr:`EvalResult.dropped_steps` the steps of
    the episodes played beyond them.
    """
    return _SeededRun(policy, envs, [int(s) for s in seeds], normalize, stop).play()


class _SeededRun:
    """The state of :func:`run_seeded_episodes`: which seed each env plays, running sums, finished episodes."""

    def __init__(self, policy: Policy, envs: Sequence["gym.Env"], seeds: list[int],
                 normalize: Callable[[np.ndarray], np.ndarray], stop: Optional[StopRule]) -> None:
        self.policy, self.envs, self.seeds, self.normalize = policy, envs, seeds, normalize
        self.watch = stop.watch() if stop is not None else None
        self.slots: list[Optional[int]] = [None] * len(envs)  # index into seeds of the episode each env plays
        self.obs: list[Any] = [None] * len(envs)
        self.done: list[Optional[tuple[float, int, Optional[bool], dict, str, float]]] = [None] * len(seeds)
        self.running: dict[int, tuple[float, int, dict]] = {}
        self.start_distance: list[float] = [math.nan] * len(envs)
        self.next_seed = self.prefix = 0
        self.stopped: tuple[str, ...] = ()

    def play(self) -> EvalResult:
        for i in range(len(self.envs)):
            self._start(i)
        while self.running and not self.stopped:
            active = sorted(self.running)
            actions = self.policy(self.normalize(np.stack([self.obs[i] for i in active])))
            for row, i in enumerate(active):
                if self._step(i, actions[row]):
                    break
        return self._result()

    def _start(self, i: int) -> None:
        """Reset env ``i`` with the next unplayed seed (nothing when every seed is taken)."""
        if self.next_seed < len(self.seeds):
            self.obs[i], info = self.envs[i].reset(seed=self.seeds[self.next_seed])
            self.start_distance[i] = float(info.get("target_distance", math.nan))
            self.slots[i], self.next_seed = self.next_seed, self.next_seed + 1
            self.running[i] = (0.0, 0, {})

    def _step(self, i: int, action: np.ndarray) -> bool:
        """Step env ``i``; at its episode's end record it and start the next seed. True: the evaluation stopped."""
        o, reward, terminated, truncated, info = self.envs[i].step(action)
        ret, length, comps = self.running[i]
        for term, value in reward_components(info).items():
            comps[term] = comps.get(term, 0.0) + value
        self.running[i] = (ret + float(reward), length + 1, comps)
        self.obs[i] = o
        if not (terminated or truncated):
            return False
        success = info.get("is_success")
        ret, length, comps = self.running.pop(i)
        slot = self.slots[i]
        assert slot is not None
        self.done[slot] = (ret, length, None if success is None else bool(success), comps,
                           str(info.get("termination_reason", "")), self.start_distance[i])
        self._advance_prefix()
        if not self.stopped:
            self._start(i)
        return bool(self.stopped)

    def _advance_prefix(self) -> None:
        """Feed the finished episodes that follow the prefix in seed order to the stop watch, one at a time."""
        while self.prefix < len(self.done) and self.done[self.prefix] is not None:
            episode = self.done[self.prefix]
            assert episode is not None
            self.prefix += 1
            if self.watch is not None:
                self.stopped = self.watch.add(episode[1], episode[2])
                if self.stopped:
                    return

    def _result(self) -> EvalResult:
        kept = self.done[: self.prefix] if self.stopped else self.done
        result = EvalResult(stopped=self.stopped)
        for episode in kept:
            assert episode is not None
            ret, length, success, comps, end, start_distance = episode
            result.returns.append(ret)
            result.lengths.append(length)
            result.successes.append(success)
            result.components.append(comps)
            result.ends.append(end)
            result.start_distances.append(start_distance)
        if self.stopped:
            beyond = sum(e[1] for e in self.done[self.prefix:] if e is not None)
            result.dropped_steps = beyond + sum(length for _, length, _ in self.running.values())
        return result


def format_report(result: EvalResult, title: str) -> str:
    """Human-readable lines: return ± std, length, success rate, each component's mean per-episode sum."""
    lines = [
        title,
        f"  episodes         {len(result.returns)}"
        + (f" (stopped early: {', '.join(result.stopped)} out of reach)" if result.stopped else ""),
        f"  return           {result.mean_reward:.2f} ± {result.std_reward:.2f}",
        f"  episode length   {result.mean_length:.1f} ± {float(np.std(result.lengths)) if result.lengths else 0:.1f}",
        "  success rate     " + ("n/a (env reports no is_success)" if result.success_rate is None
                                   else f"{100 * result.success_rate:.1f}%"),
        "  reward components (mean per-episode sum):",
    ]
    means = result.component_means()
    width = max((len(t) for t in means), default=0)
    lines += [f"    {term:<{width}}  {value:12.3f}" for term, value in means.items()] or ["    (none reported)"]
    return "\n".join(lines)
