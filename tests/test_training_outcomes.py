"""How evaluated episodes ended, and success against the target's distance at reset (`dinosim evaluate`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dinosim.training.evaluation import EvalResult, run_seeded_episodes
from dinosim.training.outcomes import distance_bins, end_counts, format_outcomes


def test_end_counts_are_sorted_by_count_then_name_and_name_an_empty_reason() -> None:
    counts = end_counts(["fell_tilt", "success", "success", "", "fell_height", "fell_tilt", "success"])
    assert list(counts.items()) == [("success", 3), ("fell_tilt", 2), ("fell_height", 1), ("unknown", 1)]


def test_distance_bins_cut_the_sorted_episodes_into_quarters() -> None:
    distances = [5.0, 1.0, 3.0, 2.0, 8.0, 7.0, 4.0, 6.0, 9.0]
    successes = [False, True, True, True, False, False, True, True, False]
    ends = ["fell_tilt" if not s else "success" for s in successes]
    ends[0] = "time_limit"
    bins = distance_bins(distances, successes, ends)
    assert [(b.low, b.high, b.episodes, b.successes) for b in bins] == [
        (1.0, 2.0, 2, 2), (3.0, 4.0, 2, 2), (5.0, 6.0, 2, 1), (7.0, 9.0, 3, 0)]
    assert bins[2].ends == {"success": 1, "time_limit": 1} and bins[3].ends == {"fell_tilt": 3}
    assert sum(b.episodes for b in bins) == len(distances)


def test_no_distance_table_without_a_target_a_success_flag_or_enough_episodes() -> None:
    ends = ["success"] * 4
    assert distance_bins([1.0, -1.0, 2.0, 3.0], [True] * 4, ends) == []  # the env's "no target" distance
    assert distance_bins([1.0, math.nan, 2.0, 3.0], [True] * 4, ends) == []
    assert distance_bins([1.0, 2.0, 3.0, 4.0], [True, None, True, True], ends) == []
    assert distance_bins([1.0, 2.0, 3.0], [True] * 3, ends[:3]) == []
    assert format_outcomes(EvalResult()) == []  # a result without ends (SB3's VecEnv loop) prints nothing


def test_the_engine_records_each_episodes_end_and_start_distance_for_any_number_of_envs() -> None:
    from dinosim.envs import make_env

    def envs(n: int):
        return [make_env("velociraptor", {"task": "strike", "max_episode_steps": 30, "push_force": 0.1})
                for _ in range(n)]

    seeds = list(range(300, 308))
    one = run_seeded_episodes(lambda obs: np.zeros((obs.shape[0], 18)), envs(1), seeds)
    three = run_seeded_episodes(lambda obs: np.zeros((obs.shape[0], 18)), envs(3), seeds)
    assert one.ends == three.ends and one.start_distances == three.start_distances and len(one.ends) == 8
    assert all(end == "time_limit" or end.startswith("fell_") for end in one.ends)  # zero actions never strike
    assert [e == "time_limit" for e in one.ends] == [n == 30 for n in one.lengths]
    assert all(d > 0.0 for d in one.start_distances) and len(set(one.start_distances)) == 8
    first = make_env("velociraptor", {"task": "strike", "max_episode_steps": 30, "push_force": 0.1})
    assert first.reset(seed=300)[1]["target_distance"] == one.start_distances[0]
    lines = format_outcomes(one)
    assert lines[0].startswith("  episode ends") and len(lines) == 2 + 4
    balance = run_seeded_episodes(lambda obs: np.zeros((obs.shape[0], 18)),
                                  [make_env("velociraptor", {"max_episode_steps": 20})], [1, 2, 3, 4])
    assert len(format_outcomes(balance)) == 1  # no target: the ends, no distance table


def test_evaluate_prints_how_the_episodes_ended(tmp_path: Path, tiny, dinosim_main) -> None:
    run_dir = tmp_path / "run"
    code, _ = tiny.run(run_dir, [3], [], 256)
    assert code == 0
    code, out, err = dinosim_main("evaluate", str(run_dir), "--episodes", "4")
    assert code == 0, err
    ends = next(line for line in out.splitlines() if line.startswith("  episode ends"))
    assert sum(int(part.split()[-1]) for part in ends.split("ends", 1)[1].split(",")) == 4
    assert "success by target distance at reset" in out
