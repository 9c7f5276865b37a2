"""`dinosim diagnose` rules on synthetic recorded run data: each rule fires on data that shows its symptom and stays
silent on data that does not; suggested overrides are valid for the species; the JSON schema is pinned."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from dinosim.config.resolve import resolve_run
from dinosim.tracking.diagnose import RULE_IDS, SCHEMA_VERSION, diagnose, format_text
from dinosim.tracking.run_logs import Series

DOCS = Path(__file__).resolve().parents[1] / "docs" / "diagnose.md"


def scalars(**tags: list[tuple[int, float]]) -> Any:
    """A TensorBoard reader returning these series (tag names with '__' for '/') for every stage folder."""
    series = {k.replace("__", "/"): Series(tuple(s for s, _ in v), tuple(x for _, x in v)) for k, v in tags.items()}
    return lambda path: series


def flat(value: float, n: int = 6, every: int = 1000) -> list[tuple[int, float]]:
    return [(every * (i + 1), value) for i in range(n)]


def ids(run: Path, reader: Any = None, stage: Optional[int] = None) -> set[str]:
    return {s.id for s in diagnose([run], stage=stage, reader=reader or scalars()).symptoms()}


# -- balance -------------------------------------------------------------------------------------------------------
def test_falls_early(tmp_path, ev, make_run, balance_evals):
    bad = make_run(tmp_path, "bad", {1: [ev(25000 * i, 30.0, 30.0, alive=30) for i in (1, 2, 3)]})
    good = make_run(tmp_path, "good", {1: balance_evals()})
    assert "balance.falls_early" in ids(bad)
    assert "balance.falls_early" not in ids(good)
    found = next(s for s in diagnose([bad], reader=scalars()).symptoms() if s.id == "balance.falls_early")
    assert "stage1.ppo.learning_rate=0.00015" in found.overrides  # raptor stage 1: 3e-4 halved
    assert "stage1.env.posture_weight=1.0" in found.overrides  # 0.5 doubled
    assert found.numbers["mean_ep_length"] == 30.0 and "30 of 500 steps" in found.evidence[0]


def test_drift_to_survive(tmp_path, make_run, balance_evals):
    run = make_run(tmp_path, "r", {1: balance_evals()}, overrides=("env.alive_bonus=5.0", "env.drift_penalty_weight=0"))
    drifting = scalars(signal__drift=flat(3.0, every=20000))
    found = [s for s in diagnose([run], reader=drifting).symptoms() if s.id == "balance.drift_to_survive"]
    assert found and "stage1.env.alive_bonus=2.5" in found[0].overrides
    # zero weight: the penalty is derived so that the observed drift costs half the alive bonus (0.5 * 5 / 3)
    assert "stage1.env.drift_penalty_weight=0.833" in found[0].overrides
    assert "balance.drift_to_survive" not in ids(run, scalars(signal__drift=flat(0.3, every=20000)))


def test_drift_recovered_from_the_reward_term_without_signals(tmp_path, make_run, balance_evals):
    # drift_penalty_weight 0.1 (committed raptor stage 1): 490 steps x 2.5 m x 0.1 = -122.5 per episode
    run = make_run(tmp_path, "r", {1: balance_evals(drift=-122.5)})
    assert "balance.drift_to_survive" in ids(run)
    assert "balance.drift_to_survive" not in ids(make_run(tmp_path, "s", {1: balance_evals(drift=-10.0)}))


def test_spin(tmp_path, ev, make_run, balance_evals):
    run = make_run(tmp_path, "r", {1: balance_evals()})
    assert "balance.spin" in ids(run, scalars(signal__yaw_rate=flat(1.2, every=20000)))
    assert "balance.spin" not in ids(run, scalars(signal__yaw_rate=flat(0.1, every=20000)))
    falling = make_run(tmp_path, "f", {1: [ev(25000 * i, 30.0, 30.0, alive=30) for i in (1, 2, 3)]})
    assert "balance.spin" not in ids(falling, scalars(signal__yaw_rate=flat(1.2, every=20000)))  # tumbling, not spin


def test_plateau(tmp_path, ev, make_run):
    stuck = make_run(tmp_path, "stuck", {1: [ev(25000 * i, 200.0 + (i % 2), 300, alive=300) for i in range(1, 9)]})
    rising = make_run(tmp_path, "rising", {1: [ev(25000 * i, 50.0 * i, 300, alive=300) for i in range(1, 9)]})
    assert "balance.plateau" in ids(stuck)
    assert "balance.plateau" not in ids(rising)
    passed = make_run(tmp_path, "passed", {1: [ev(25000 * i, 200.0, 300, alive=300) for i in range(1, 9)]},
                      entries={1: {"gate_passed": True}})
    assert "balance.plateau" not in ids(passed)


def test_jerky(tmp_path, make_run, balance_evals):
    jerky = make_run(tmp_path, "j", {1: balance_evals(smoothness=-120.0, energy=-80.0)})
    assert "balance.jerky" in ids(jerky)
    assert "balance.jerky" not in ids(make_run(tmp_path, "s", {1: balance_evals(smoothness=-5.0, energy=-3.0)}))


def test_seed_spread(tmp_path, make_run, balance_evals):
    a = make_run(tmp_path, "a", {1: balance_evals(ret=600)}, entries={1: {"gate_passed": True}})
    b = make_run(tmp_path, "b", {1: balance_evals(ret=150)})
    c = make_run(tmp_path, "c", {1: balance_evals(ret=580)}, entries={1: {"gate_passed": True}})
    spread = diagnose([a, b], reader=scalars())
    assert [s.id for s, _ in spread.across_runs] == ["balance.seed_spread"]
    assert spread.to_json()["across_runs"][0]["runs"] == [str(a), str(b)]
    assert diagnose([a, c], reader=scalars()).across_runs == []


# -- locomotion ----------------------------------------------------------------------------------------------------
# Walking-stage weights these tests assert on (the velociraptor's before its committed alive_bonus became 0).
WALK = ("env.alive_bonus=0.25", "env.forward_vel_weight=1.5", "env.forward_vel_max=2.0", "env.posture_weight=0.25",
        "env.speed_penalty_weight=1.0", "env.max_episode_steps=1000")


@pytest.fixture
def walk_run(make_run, ev):
    """``walk_run(tmp_path, name, length=950, **components)``: a walking-stage run with WALK's weights."""

    def walk_run(tmp_path: Path, name: str, length: float = 950, **components: float) -> Path:
        comps = {"alive": 0.25 * length, "posture": 100.0, **components}
        return make_run(tmp_path, name, {2: [ev(25000 * i, 400.0, length, **comps) for i in (1, 2, 3, 4)]},
                        overrides=WALK)

    return walk_run


def test_standing_still(tmp_path, walk_run):
    # committed raptor stage 2: forward_vel_weight 1.5, so forward reward 1.5 * 950 * v
    still = walk_run(tmp_path, "still", forward=1.5 * 950 * 0.02)
    walking = walk_run(tmp_path, "walking", forward=1.5 * 950 * 0.9)
    assert "locomotion.standing_still" in ids(still)
    assert "locomotion.standing_still" not in ids(walking)
    found = next(s for s in diagnose([still], reader=scalars()).symptoms() if s.id == "locomotion.standing_still")
    assert {"stage2.env.forward_vel_weight=3.0", "stage2.env.alive_bonus=0.125"} <= set(found.overrides)


def test_sideways(tmp_path, walk_run):
    run = walk_run(tmp_path, "r", forward=1.5 * 950 * 0.2)
    assert "locomotion.sideways" in ids(run, scalars(signal__lateral_velocity=flat(0.5)))
    assert "locomotion.sideways" in ids(run, scalars(signal__lateral_velocity=flat(0.5), signal__drift=flat(8.0)))
    assert "locomotion.sideways" not in ids(run, scalars(signal__lateral_velocity=flat(0.5), signal__drift=flat(0.2)))
    assert "locomotion.sideways" not in ids(run, scalars(signal__lateral_velocity=flat(0.03)))


def test_falls_while_walking(tmp_path, walk_run):
    falls = walk_run(tmp_path, "f", length=200, forward=1.5 * 200 * 1.2)
    steady = walk_run(tmp_path, "s", length=990, forward=1.5 * 990 * 1.2)
    assert "locomotion.falls_while_walking" in ids(falls)
    assert "locomotion.falls_while_walking" not in ids(steady)


def test_asymmetric_gait(tmp_path, walk_run):
    run = walk_run(tmp_path, "r", forward=1.5 * 950 * 0.9)
    assert "locomotion.asymmetric_gait" in ids(run, scalars(signal__gait_asymmetry=flat(0.2)))
    assert "locomotion.asymmetric_gait" not in ids(run, scalars(signal__gait_asymmetry=flat(0.01)))


def test_over_speed_cap(tmp_path, walk_run):
    run = walk_run(tmp_path, "r", forward=1.5 * 950 * 2.0)  # the forward reward is capped at forward_vel_max 2
    assert "locomotion.over_speed_cap" in ids(run, scalars(signal__forward_velocity=flat(2.6)))
    assert "locomotion.over_speed_cap" not in ids(run, scalars(signal__forward_velocity=flat(1.9)))
    # speed penalty (weight 1.0 in the committed config) large relative to the positive reward
    assert "locomotion.over_speed_cap" in ids(walk_run(tmp_path, "p", forward=2850.0, speed=-600.0))


# -- behaviour -----------------------------------------------------------------------------------------------------
# The T-Rex bite weights of the issue's runs (before the committed stage-3 configs made the bonus dominate).
ISSUE_BITE = ("env.bite_bonus=100.0", "env.alive_bonus=0.5", "env.forward_vel_weight=0.5", "env.posture_weight=0.3",
              "env.bite_proximity_weight=0.5", "env.max_episode_steps=750", "ppo.gamma=0.995",
              "ppo.learning_rate=5e-5")


@pytest.fixture
def bite_run(make_run):
    """``bite_run(tmp_path, name, records, overrides=ISSUE_BITE, **make_run_keywords)``: a T-Rex stage-3 run."""

    def bite_run(tmp_path: Path, name: str, records: list[dict], overrides: tuple[str, ...] = ISSUE_BITE,
                 **kw: Any) -> Path:
        return make_run(tmp_path, name, {3: records}, species="trex", overrides=overrides, **kw)

    return bite_run


def test_never_triggers(tmp_path, ev, bite_run):
    # the issue's T-Rex: walks past the prey to the time limit
    past = bite_run(tmp_path, "past", [ev(25000 * i, 100.0, 750, 0.0, forward=415, approach=-682, alive=369,
                                          proximity=20) for i in range(1, 5)])
    assert {"behaviour.never_triggers", "behaviour.bonus_too_small"} <= ids(past)
    approaching = bite_run(tmp_path, "app", [ev(25000 * i, 100.0, 300, 0.0, approach=120, alive=150, posture=60)
                                             for i in range(1, 5)])
    assert "behaviour.never_triggers" not in ids(approaching)
    some = bite_run(tmp_path, "some", [ev(25000 * i, 100.0, 300, 0.1 * i, approach=-5, alive=150) for i in range(1, 5)])
    assert "behaviour.never_triggers" not in ids(some)


def test_hovering(tmp_path, ev, bite_run):
    # the issue's T-Rex later: stands beside the prey without biting
    hover = bite_run(tmp_path, "h", [ev(25000 * i, 500.0, 740, 0.0, proximity=180, alive=370, posture=150)
                                     for i in range(1, 5)])
    found = next(s for s in diagnose([hover], reader=scalars()).symptoms() if s.id == "behaviour.hovering")
    # the issue's numbers: proximity +58 per 750-step episode (weight 0.5: exp(-d / 1.5 m) = 0.155 on average)
    beside = bite_run(tmp_path, "beside", [ev(25000 * i, 500.0, 750, 0.0, proximity=58, alive=375, posture=200)
                                           for i in range(1, 5)])
    assert "behaviour.hovering" in ids(beside)
    assert {"stage3.env.bite_proximity_weight=0.25", "stage3.env.bite_bonus=200.0"} <= set(found.overrides)
    biting = bite_run(tmp_path, "b", [ev(25000 * i, 150.0, 120, 0.8, proximity=30, alive=60, success=80)
                                      for i in range(1, 5)])
    assert "behaviour.hovering" not in ids(biting)


def test_forgets_walking(tmp_path, ev, make_run, balance_evals):
    stage1 = balance_evals()
    collapse = make_run(tmp_path, "c", {1: stage1, 2: [ev(25000 * i, 40.0, 60 if i < 3 else 500, alive=15)
                                                       for i in range(1, 6)]})
    kept = make_run(tmp_path, "k", {1: stage1, 2: [ev(25000 * i, 400.0, 900, alive=225) for i in range(1, 6)]})
    assert "behaviour.forgets_walking" in ids(collapse)
    assert "behaviour.forgets_walking" not in ids(kept)
    from_scratch = ("2.curriculum.warm_start_stage=0", "2.curriculum.critic_warmup_timesteps=0")
    scratch = make_run(tmp_path, "s", {1: stage1, 2: [ev(25000 * i, 40.0, 60 if i < 3 else 500, alive=15)
                                                     for i in range(1, 6)]}, overrides=from_scratch)
    assert "behaviour.forgets_walking" not in ids(scratch)  # it did not start from stage 1: nothing to forget


def test_forgets_walking_sees_a_collapse_a_few_screenings_after_the_switch(tmp_path, ev, make_run, balance_evals):
    """The shape of a walking stage from a T-Rex stander paid for moving forward (2026-12-02; it stood still): it
    kept its episodes for two screenings after the switch, then fell within ~120 steps; the warm-up keys are 0 or
    one screening long, so a window of one screening missed it. A collapse after the first FORGET_EVALS screenings
    is the regression rule's, not this one's."""
    from dinosim.tracking.diagnose.rules_task import FORGET_EVALS

    lengths = (820, 820, 120, 200, 500, 800)
    late = make_run(tmp_path, "late", {1: balance_evals(), 2: [ev(25000 * i, 400.0, n, alive=0)
                                                           for i, n in enumerate(lengths, 1)]})
    found = next(s for s in diagnose([late]).symptoms() if s.id == "behaviour.forgets_walking")
    assert found.numbers["window_steps"] == FORGET_EVALS * 25000 and found.numbers["early_fraction"] == 0.12
    after = (820,) * FORGET_EVALS + (120, 200)
    later = make_run(tmp_path, "later", {1: balance_evals(), 2: [ev(25000 * i, 400.0, n, alive=0)
                                                             for i, n in enumerate(after, 1)]})
    assert "behaviour.forgets_walking" not in ids(later)


@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_forgets_walking_suggests_only_keys_the_algorithm_reads(tmp_path, algorithm, ev, make_run,
                                                                 balance_evals):
    collapse = make_run(tmp_path, "c", {1: balance_evals(), 2: [ev(25000 * i, 40.0, 60 if i < 3 else 500, alive=15)
                                                                for i in range(1, 6)]}, algorithm=algorithm)
    found = next(s for s in diagnose([collapse]).symptoms() if s.id == "behaviour.forgets_walking")
    keys = {o.split("=")[0] for o in found.overrides}
    assert ("stage2.curriculum.warmup_clip_range" in keys) == (algorithm == "ppo"), keys
    assert ("stage2.curriculum.critic_warmup_timesteps" in keys) == (algorithm == "ppo"), keys
    config = resolve_run("velociraptor", algorithm, (1, 2), found.overrides)  # PPO-only keys refused for sac
    config.check_overrides_take_effect({1: False, 2: True})


def test_regression(tmp_path, ev, bite_run):
    peaked = bite_run(tmp_path, "p", [ev(25000 * i, 100.0, 200, s, alive=100)
                                      for i, s in enumerate((0.1, 0.5, 0.8, 0.3, 0.1, 0.2), 1)])
    rising = bite_run(tmp_path, "r", [ev(25000 * i, 100.0, 200, s, alive=100)
                                      for i, s in enumerate((0.1, 0.3, 0.4, 0.5, 0.55, 0.6), 1)])
    found = next(s for s in diagnose([peaked], reader=scalars()).symptoms() if s.id == "behaviour.regression")
    assert found.numbers["peak"] == 0.8 and "stage3.ppo.learning_rate_end=5e-06" in found.overrides
    assert "behaviour.regression" not in ids(rising)


def test_bonus_too_small(tmp_path, ev, bite_run):
    records = [ev(25000 * i, 500.0, 740, 0.0, alive=370, posture=150, proximity=100) for i in range(1, 4)]
    issue = bite_run(tmp_path, "issue", records)
    found = next(s for s in diagnose([issue], reader=scalars()).symptoms() if s.id == "behaviour.bonus_too_small")
    # per step at most 0.5 alive + 0.3 posture + 0.5 x 2 m/s forward + 0.5 proximity = 2.3, over 750 steps at 0.995
    standby = 2.3 * (1 - 0.995**750) / 0.005
    assert found.numbers["standby_value"] == pytest.approx(standby) and found.numbers["bonus"] == 100.0
    assert f"stage3.env.bite_bonus={round(2 * standby, 0)}" in found.overrides
    committed = bite_run(tmp_path, "committed", records, overrides=())  # bonus 300 against 0.5 per step
    assert "behaviour.bonus_too_small" not in ids(committed)
    succeeding = bite_run(tmp_path, "ok", [ev(25000 * i, 500.0, 100, 0.95, alive=50) for i in range(1, 4)])
    assert "behaviour.bonus_too_small" not in ids(succeeding)


# -- algorithm -----------------------------------------------------------------------------------------------------
def test_budget_below_rollout(tmp_path, make_run, balance_evals):
    short = make_run(tmp_path, "s", {1: balance_evals(n=1)}, timesteps=1000, n_envs=4)
    found = next(s for s in diagnose([short], reader=scalars()).symptoms() if s.id == "algorithm.budget_below_rollout")
    assert found.numbers["limit"] == 2048 * 4
    n_steps = int(re.search(r"n_steps=(\d+)", " ".join(found.overrides)).group(1))
    batch = int(re.search(r"batch_size=(\d+)", " ".join(found.overrides)).group(1))
    assert 4 * n_steps * 4 <= 1000 and (n_steps * 4) % batch == 0
    assert "algorithm.budget_below_rollout" not in ids(make_run(tmp_path, "l", {1: balance_evals()}))
    sac = make_run(tmp_path, "sac", {1: balance_evals(n=1)}, algorithm="sac", timesteps=5000)
    assert any(o.startswith("stage1.sac.learning_starts=") for s in diagnose([sac], reader=scalars()).symptoms()
               for o in s.overrides)


def test_entropy_collapse(tmp_path, make_run, balance_evals):
    run = make_run(tmp_path, "r", {1: balance_evals()})
    collapse = scalars(train__std=[(10000, 0.6), (30000, 0.2), (50000, 0.05), (100000, 0.04)])
    assert "algorithm.entropy_collapse" in ids(run, collapse)
    assert "algorithm.entropy_collapse" not in ids(run, scalars(train__std=[(10000, 0.6), (50000, 0.5),
                                                                            (100000, 0.4)]))


def test_value_loss_exploding(tmp_path, make_run, balance_evals):
    run = make_run(tmp_path, "r", {1: balance_evals()})
    boom = scalars(train__value_loss=[(i * 10000, 1.0 if i < 5 else 40.0) for i in range(1, 11)])
    calm = scalars(train__value_loss=[(i * 10000, 1.0 + 0.1 * i) for i in range(1, 11)])
    assert "algorithm.value_loss_exploding" in ids(run, boom)
    assert "algorithm.value_loss_exploding" not in ids(run, calm)


def test_nan_guard(tmp_path, make_run, balance_evals):
    msg = "stage 1, step 4096: NaN in observations; the last good checkpoint is kept"
    failed = make_run(tmp_path, "f", {1: balance_evals()}, status="failed", message=msg)
    assert "algorithm.nan_guard" in ids(failed)
    other = make_run(tmp_path, "o", {1: balance_evals()}, status="failed", message="stage 1: stopped by --strict-gates")
    assert "algorithm.nan_guard" not in ids(other)


# -- healthy runs, overrides, output -------------------------------------------------------------------------------
@pytest.mark.parametrize("species", ["velociraptor", "trex", "brachiosaurus"])
def test_healthy_curriculum_has_no_symptoms(tmp_path, species, ev, make_run):
    stage1 = [ev(25000 * i, 300.0 + 90 * i, 300 + 50 * i, alive=300 + 50 * i, posture=100, drift=-5.0,
                 smoothness=-4.0, energy=-2.0, spin=-1.0) for i in range(1, 5)]
    stage2 = [ev(25000 * i, 900.0 + 300 * i, 980, alive=245, posture=150, forward=400 + 300 * i, smoothness=-8.0)
              for i in range(1, 5)]
    stage3 = [ev(25000 * i, 40.0 + 25 * i, 150, 0.2 * i, alive=75, posture=30, approach=60, proximity=40,
                 success=20.0 * i) for i in range(1, 5)]
    run = make_run(tmp_path, "h", {1: stage1, 2: stage2, 3: stage3}, species=species,
                   entries={n: {"gate_passed": True} for n in (1, 2, 3)})
    reader = scalars(train__std=[(10000, 0.6), (200000, 0.45)], signal__drift=flat(0.3),
                     signal__forward_velocity=flat(0.9), signal__lateral_velocity=flat(0.05),
                     signal__gait_asymmetry=flat(0.01), signal__yaw_rate=flat(0.1),
                     train__value_loss=[(i * 10000, 1.0) for i in range(1, 9)])
    result = diagnose([run], reader=reader)
    assert result.symptoms() == []
    assert format_text(result).count("no symptoms found") == 3


@pytest.mark.parametrize("species", ["velociraptor", "trex", "brachiosaurus"])
@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_every_suggested_override_is_accepted_by_the_config(tmp_path, species, algorithm, ev, make_run):
    """Overrides of every rule that can fire are valid for the species and algorithm (resolve_run accepts them)."""
    bad1 = [ev(25000 * i, 30.0, 30.0, alive=30, smoothness=-50, energy=-30) for i in range(1, 9)]
    bad2 = [ev(25000 * i, 30.0, 200, alive=50, forward=1.5 * 200 * 1.2, speed=-100) for i in range(1, 9)]
    bad3 = [ev(25000 * i, 30.0, 700, s, alive=350, proximity=200, approach=-50)
            for i, s in enumerate((0, 0.4, 0.5, 0.1, 0.0, 0.0, 0.0, 0.0), 1)]
    run = make_run(tmp_path, "bad", {1: bad1, 2: bad2, 3: bad3}, species=species, algorithm=algorithm,
                   timesteps=500, status="failed", message="stage 3, step 9: NaN in rewards")
    tag = "train/value_loss" if algorithm == "ppo" else "train/critic_loss"
    reader = scalars(**{tag.replace("/", "__"): [(i, 1.0 if i < 5 else 50.0) for i in range(1, 11)]},
                     signal__yaw_rate=flat(2.0), signal__lateral_velocity=flat(1.0), signal__gait_asymmetry=flat(0.3),
                     train__std=[(1, 1.0), (2, 0.01)], train__ent_coef=[(1, 1.0), (2, 0.001)])
    result = diagnose([run], reader=reader)
    found = result.symptoms()
    assert len({s.id for s in found}) >= 10
    for symptom in found:
        assert symptom.id in RULE_IDS and 0 < symptom.confidence <= 1 and symptom.evidence
        config = resolve_run(species, algorithm, (1, 2, 3), symptom.overrides)  # ConfigError: invalid key/value
        config.check_overrides_take_effect({1: False, 2: True, 3: True})  # ConfigError: an override without effect


def test_json_schema_is_stable(tmp_path, ev, make_run):
    run = make_run(tmp_path, "r", {1: [ev(25000 * i, 30.0, 30.0, alive=30) for i in (1, 2, 3)]})
    out = diagnose([run], reader=scalars()).to_json()
    assert out["schema"] == SCHEMA_VERSION == 1
    assert set(out) == {"schema", "runs", "across_runs"}
    assert set(out["runs"][0]) == {"run_dir", "species", "algorithm", "status", "stages"}
    stage = out["runs"][0]["stages"][0]
    assert set(stage) == {"stage", "task", "gate_passed", "evaluations", "start_step", "end_step", "symptoms"}
    symptom = stage["symptoms"][0]
    assert set(symptom) == {"id", "category", "stage", "confidence", "summary", "evidence", "numbers", "overrides"}
    assert [s["confidence"] for s in stage["symptoms"]] == sorted((s["confidence"] for s in stage["symptoms"]),
                                                                  reverse=True)
    json.dumps(out, allow_nan=False)


def test_docs_describe_every_rule_and_the_schema():
    text = DOCS.read_text()
    for rule_id in RULE_IDS:
        assert f"`{rule_id}`" in text, rule_id
    for key in ("schema", "across_runs", "confidence", "evidence", "numbers", "overrides"):
        assert f"`{key}`" in text


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dinosim", "diagnose", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_text_json_and_bad_input(tmp_path, ev, make_run, dinosim_main):
    """The bad inputs run in this process (an exception other than the exit would fail the test): ~1.5 s each."""
    run = make_run(tmp_path, "r", {1: [ev(25000 * i, 30.0, 30.0, alive=30) for i in (1, 2, 3)]})
    r = run_cli(str(run))
    assert r.returncode == 0 and "balance.falls_early" in r.stdout and "try: --override stage1." in r.stdout
    r = run_cli(str(run), "--json", "--stage", "1")
    assert r.returncode == 0 and json.loads(r.stdout)["runs"][0]["stages"][0]["stage"] == 1
    for args, needle in (([str(tmp_path / "nope")], "no such folder"), ([str(run), "--stage", "3"], "stage 3"),
                         ([str(tmp_path)], "not a dinosim run folder"), ([str(run), "--stage", "0"], "--stage")):
        code, _, err = dinosim_main("diagnose", *args)
        assert code == 2 and err.startswith("error:") and needle in err, (args, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1


def test_bad_input_imports_nothing_heavy(tmp_path):
    code = ("import sys\nfrom dinosim.cli import main\ntry:\n    main(['diagnose', sys.argv[1]])\nexcept SystemExit:\n"
            "    pass\nheavy = [m for m in ('torch', 'stable_baselines3', 'mujoco', 'wandb', 'tensorboard') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nope")], capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_gate_evaluation_records_are_left_out(tmp_path, ev, make_run):
    screens = [{**ev(25000 * i, 30.0, 30.0, alive=30), "eval_kind": "screen"} for i in (1, 2, 3)]
    gate = {**ev(75000, 600.0, 500.0, alive=500), "eval_kind": "gate"}  # same step as the last screening
    run = make_run(tmp_path, "r", {1: [*screens, gate]})
    stage = diagnose([run], reader=scalars()).to_json()["runs"][0]["stages"][0]
    assert stage["evaluations"] == 3 and "balance.falls_early" in {s["id"] for s in stage["symptoms"]}
