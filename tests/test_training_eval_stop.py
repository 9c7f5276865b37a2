"""Evaluations that stop as soon as they are certain to fail: the rule is exact and its numbers reproducible."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dinosim.config.settings import STOPPABLE, CurriculumSettings, EvalStats
from dinosim.runfolder import EVAL_STOPPED_PREFIX, stopped_on
from dinosim.training.eval_plan import EvalPlan, gate_passed, screen_passed
from dinosim.training.eval_stop import StopRule, longest_episode
from dinosim.training.evaluation import EvalResult, run_seeded_episodes

ENV = {"task": "strike", "max_episode_steps": 40, "strike_bonus": 10.0, "push_force": 0.1}


def _policy(obs: np.ndarray) -> np.ndarray:
    """A fixed nonlinear policy, row by row (the same actions whatever the batch size)."""
    weights = np.random.default_rng(7).normal(0.0, 0.3, size=(obs.shape[1], 18))
    return np.stack([np.tanh(row @ weights) for row in obs])


def _envs(n: int):
    from dinosim.envs import make_env

    return [make_env("velociraptor", dict(ENV)) for _ in range(n)]


def _stats(lengths: list[int], successes: list[bool]) -> EvalStats:
    """What the full evaluation's rule reads (the return never decides here: its threshold is far below)."""
    ddof = 1 if len(lengths) > 1 else 0
    return EvalStats(episodes=len(lengths), mean_return=0.0, std_return=0.0, mean_length=float(np.mean(lengths)),
                     std_length=float(np.std(lengths, ddof=ddof)), successes=int(sum(successes)))


def _criterion_met(cur: CurriculumSettings, stats: EvalStats, criterion: str, gate: bool) -> bool:
    estimates = stats.lower_bounds(cur.gate_confidence) if gate else stats.point_estimates()
    return cur.meets(criterion, estimates[criterion])


@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("n, rate, confidence", [(200, 0.9, 0.95), (20, 0.9, 0.95), (50, 0.7, 0.99), (7, 1.0, 0.9),
                                                  (30, 0.0, 0.95), (13, 0.33, 0.6)])
def test_fewest_successes_is_the_smallest_count_the_rule_passes(n: int, rate: float, confidence: float,
                                                                gate: bool) -> None:
    cur = CurriculumSettings(min_avg_reward=-1e9, min_success_rate=rate, gate_confidence=confidence)
    fewest = cur.fewest_successes(n, gate)
    passes = [(cur.gate_passes if gate else cur.screen_passes)(EvalStats(n, 0.0, 0.0, 1.0, 0.0, successes=s))
              for s in range(n + 1)]
    assert fewest is not None and not any(passes[:fewest]) and (fewest > n or passes[fewest])
    assert CurriculumSettings().fewest_successes(n, gate) is None  # no success criterion: nothing to count


def test_fewest_successes_of_the_stage_3_gates() -> None:
    cur = CurriculumSettings(min_success_rate=0.9, gate_confidence=0.95)
    assert cur.fewest_successes(200, gate=True) == 187  # at most 13 failures of 200
    assert cur.fewest_successes(20, gate=False) == 18  # a screening of 20: at most 2
    assert CurriculumSettings(min_success_rate=1.0).fewest_successes(20, gate=True) == 21  # no count passes


@pytest.mark.parametrize("gate", [False, True])
def test_the_watch_stops_only_when_no_completion_can_meet_the_criterion(gate: bool) -> None:
    """Random results, fed in seed order: when the watch stops, the kindest completion (every remaining episode a
    success of the longest length) still misses the criterion, so any completion does (success is counted, the
    mean is monotone in every length). Before it stops, the success criterion is still reachable (the stop is as
    early as the rule allows) and so is the screening's length criterion."""
    n, longest = 16, 40
    cur = CurriculumSettings(min_avg_reward=-1e9, min_avg_episode_length=27.0, min_success_rate=0.75,
                             gate_confidence=0.95)
    rng = np.random.default_rng(0)
    stops = {criterion: 0 for criterion in STOPPABLE}
    for _ in range(150):
        lengths = [int(x) for x in rng.integers(1, longest + 1, size=n)]
        successes = [bool(x) for x in rng.random(n) < 0.8]
        watch = StopRule(cur, n, gate, longest).watch()
        for k in range(1, n + 1):
            reasons = watch.add(lengths[k - 1], successes[k - 1])
            kindest = _stats(lengths[:k] + [longest] * (n - k), successes[:k] + [True] * (n - k))
            for criterion in STOPPABLE:
                reachable = _criterion_met(cur, kindest, criterion, gate)
                if criterion in reasons:
                    assert not reachable and k < n
                    stops[criterion] += 1
                elif k < n and (criterion == "success" or not gate):
                    assert reachable, (criterion, k, lengths, successes)
            if reasons:
                full = _stats(lengths, successes)
                assert not (cur.gate_passes if gate else cur.screen_passes)(full)  # the verdict is the full one's
                break
    assert all(stops.values()), stops  # both criteria were exercised


def test_a_stopped_evaluation_keeps_the_first_seeds_for_any_number_of_envs() -> None:
    seeds, envs = range(100, 112), _envs(4)  # an env is reset with its seed for every episode: reusable
    full = run_seeded_episodes(_policy, envs, seeds)
    assert len(set(full.lengths)) > 3  # episodes of different lengths: the envs finish them out of seed order
    cases = {"success": CurriculumSettings(min_avg_reward=-1e9, min_success_rate=0.5),
             "length": CurriculumSettings(min_avg_reward=-1e9, min_avg_episode_length=20.0)}
    for criterion, cur in cases.items():
        rule = StopRule(cur, len(seeds), False, longest_episode(envs))
        one, four = (run_seeded_episodes(_policy, envs[:k], seeds, stop=rule) for k in (1, 4))
        k = len(one.returns)
        assert 0 < k < len(seeds) and one.stopped == four.stopped == (criterion,)
        for got in (one, four):
            assert (got.returns, got.lengths, got.successes, got.components) == (
                full.returns[:k], full.lengths[:k], full.successes[:k], full.components[:k])
        assert one.dropped_steps == 0 < four.dropped_steps  # one env plays nothing beyond the prefix
        assert not screen_passed(one, cur) and not cur.screen_passes(full.stats())  # the full verdict too
        assert not gate_passed(four, cur)


def test_no_stop_when_off_or_when_the_criterion_stays_reachable() -> None:
    seeds = range(100, 112)
    cur = CurriculumSettings(min_avg_reward=-1e9, min_avg_episode_length=1.0, eval_episodes=12)
    envs = _envs(2)
    reachable = run_seeded_episodes(_policy, envs, seeds, stop=StopRule(cur, 12, True, 40))
    assert not reachable.stopped and len(reachable.returns) == 12
    off = EvalPlan(step=1, mark=1, run_seed=0, first_seed=0, gate_if_pass=False,
                   curriculum=CurriculumSettings(min_avg_episode_length=39.0, eval_early_stop=False))
    assert off.stop_rule(False, 40) is None
    assert longest_episode(envs) == 40 and longest_episode([object()]) is None


def test_records_say_how_many_episodes_and_why() -> None:
    stopped = EvalResult(returns=[1.0], lengths=[3], successes=[False], components=[{}], stopped=("success",))
    metrics = stopped.metrics()
    assert {k: v for k, v in metrics.items() if k.startswith(EVAL_STOPPED_PREFIX)} == {
        EVAL_STOPPED_PREFIX + c: int(c == "success") for c in STOPPABLE}
    assert stopped_on(metrics) == ["success"] and stopped_on(EvalResult(returns=[1.0], lengths=[3]).metrics()) == []


def test_the_stop_rule_is_the_same_for_screenings_of_every_size() -> None:
    """A sanity sweep over small sizes: a stop never happens on the last episode nor with a reachable criterion."""
    cur = CurriculumSettings(min_avg_reward=-1e9, min_success_rate=0.6)
    for n in range(1, 9):
        for outcome in itertools.product([False, True], repeat=n):
            watch = StopRule(cur, n, False, None).watch()
            reasons = [watch.add(1, s) for s in outcome]
            assert not reasons[-1]
            first = next((k for k, r in enumerate(reasons, 1) if r), None)
            if first is not None:
                assert n - outcome[:first].count(False) < cur.fewest_successes(n, False)


def test_a_training_run_records_stopped_screenings_and_never_keeps_one_as_best(tmp_path, tiny) -> None:
    """Real tiny runs with and without the early stop: the same evaluations and verdicts; a stopped screening
    records the first episodes of the full one, says so, and is never best/."""
    import json

    from dinosim.runfolder import METRICS_FILE, stopped_on
    from dinosim.tracking.summary import summarize_run
    from dinosim.training.eval_gate import load_evaluations

    # untrained walkers stand ~37-40 steps: a screening stops once its episodes fell 5 steps short of 40 in all
    hard = ["env.max_episode_steps=40", "curriculum.min_avg_episode_length=39", "curriculum.eval_episodes=4",
            "curriculum.min_avg_reward=-1e9", "curriculum.eval_envs=2"]
    runs = {}
    for early in (True, False):
        run_dir = tmp_path / str(early)
        code, summary = tiny.run(run_dir, [1], [*hard, f"curriculum.eval_early_stop={str(early).lower()}"], 768)
        assert code == 0
        records = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
        runs[early] = (run_dir, summary["stages"]["1"], records, load_evaluations(run_dir / "stage1", None))
    (stop_dir, stop_state, stopped, stop_history), (_, full_state, full, full_history) = runs[True], runs[False]
    assert [r["global_step"] for r in stopped] == [r["global_step"] for r in full] == [256, 512, 768]
    assert any(stopped_on(r) == ["length"] for r in stopped) and not any(stopped_on(r) for r in full)
    for short, whole, returns, whole_returns in zip(stopped, full, stop_history["results"], full_history["results"]):
        assert returns == whole_returns[: len(returns)] and short["eval/episodes"] == len(returns)
        assert (short["eval/episodes"] < 4) == bool(stopped_on(short))
        assert short["eval_seeds"] == whole["eval_seeds"]  # the seeds drawn do not depend on the stop
    assert stop_state["gate_streak"] == full_state["gate_streak"] == 0 and not stop_state["gate_passed"]
    complete = [r for r in stopped if not stopped_on(r)]
    assert complete, "no screening played all its episodes: the test needs one of each"
    assert (stop_dir / "stage1" / "best").exists() and stop_state["best_step"] in [r["global_step"] for r in complete]
    assert summarize_run(stop_dir).rows[0].best_reward == stop_state["best_eval"]["eval/mean_reward"]


def test_a_stage_whose_every_screening_stopped_is_ranked_by_its_best_stopped_one(tmp_path, tiny,
                                                                                  monkeypatch) -> None:
    """With the early stop every screening of a policy far from its gate can stop, so no evaluation is complete
    and nothing is best/. The stage-end shortfall (and the ranked steps a sweep minimises) then come from the best
    stopped screening's point estimates, not 1 for every such stage: a sweep of the T-Rex's bite tied each trial
    that did not pass at twice its budget."""
    import json

    from dinosim.runfolder import stopped_on

    trial = tmp_path / "trial.jsonl"
    monkeypatch.setenv("DINOSIM_TRIAL_METRICS", str(trial))
    unreachable = ["env.max_episode_steps=40", "curriculum.min_avg_episode_length=40", "curriculum.eval_episodes=4",
                   "curriculum.min_avg_reward=-1e9", "curriculum.eval_envs=2"]
    code, summary = tiny.run(tmp_path / "run", [1], unreachable, 768)
    assert code == 0
    *screenings, end = [json.loads(line) for line in trial.read_text().splitlines()]
    assert len(screenings) == 3 and all(stopped_on(r) == ["length"] for r in screenings)
    state = summary["stages"]["1"]
    assert state["best_eval"] is None and not (tmp_path / "run" / "stage1" / "best").exists()
    partial = state["best_partial_eval"]
    assert partial["eval/return_lb"] == max(r["eval/return_lb"] for r in screenings)
    assert partial["global_step"] in [r["global_step"] for r in screenings]
    gate = CurriculumSettings(min_avg_reward=-1e9, min_avg_episode_length=40.0)
    expected = gate.shortfall({"return": partial["eval/mean_reward"], "length": partial["eval/mean_ep_length"]})
    assert 0.0 < expected < 1.0
    assert end["stage/gate_passed"] == 0 and end["stage/gate_shortfall"] == pytest.approx(expected, abs=1e-6)
    assert end["stage/steps_to_gate_ranked"] == round(end["stage/steps_to_gate"] * (1.0 + expected))
