"""Task contracts of the dinosim envs: reward terms, info signals, falls, pushes, stage-3 success, audit, render."""

from __future__ import annotations

import dataclasses
import math
import os

import tomllib

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede the first mujoco import

import mujoco
import numpy as np
import pytest

from dinosim.config.settings import CurriculumSettings
from dinosim.envs import make_env
from dinosim.envs.audit import format_audit_table, gate_passed, run_audit
from dinosim.envs.rewards import REWARD_KEYS, TERMS, StepSignals, reward_terms
from dinosim.species import CONFIGS_DIR, SPECIES

SPECIES_NAMES = tuple(SPECIES)
RAW_KEYS = ("forward_velocity", "lateral_velocity", "yaw_rate", "drift", "gait_asymmetry", "tilt", "height",
            "target_distance", "termination_reason")


def stage_config(species: str, stage: int) -> dict:
    path = CONFIGS_DIR / species / SPECIES[species].stage_files[stage - 1]
    return tomllib.loads(path.read_text())


@pytest.mark.parametrize("has_target", (False, True))
def test_reward_terms_are_named_once_each(has_target):
    env = make_env("velociraptor", {"task": "strike" if has_target else "balance"}).unwrapped
    terms = reward_terms(env, StepSignals(has_target=has_target, fell=True, success=True))
    assert tuple(terms) == TERMS  # every term, by name, in summation order
    assert terms["fall"] == env.fall_penalty and terms["alive"] == 0.0


def test_forward_posture_gate_scales_forward_pay_by_the_posture_factor():
    env = make_env("velociraptor", {"task": "locomotion", "forward_vel_weight": 2.0, "forward_vel_max": 3.0,
                                    "posture_weight": 1.0}).unwrapped
    upright = StepSignals(forward_velocity=1.0)
    lunge = StepSignals(forward_velocity=1.0, tilt=0.35, height_error=-0.15)  # posture factor exp(-2)
    backwards = StepSignals(forward_velocity=-1.0, tilt=0.35)
    for gate, lunge_pay in ((0.0, 2.0), (1.0, 2.0 * math.exp(-2.0)), (0.5, 1.0 + math.exp(-2.0))):
        env.forward_posture_gate = gate
        assert reward_terms(env, upright)["forward"] == 2.0  # upright at standing height: the full pay
        assert math.isclose(reward_terms(env, lunge)["forward"], lunge_pay, rel_tol=1e-12)
        assert math.isclose(reward_terms(env, lunge)["posture"], math.exp(-2.0), rel_tol=1e-12)
        assert reward_terms(env, backwards)["forward"] == -2.0  # moving backwards is never discounted
    with pytest.raises(ValueError, match="forward_posture_gate"):
        make_env("velociraptor", {"task": "locomotion", "forward_posture_gate": 1.5})


def test_reset_forward_speed_starts_the_torso_moving_along_the_heading():
    still = make_env("trex", {"task": "locomotion", "heading": 0.5}).unwrapped
    moving = make_env("trex", {"task": "locomotion", "heading": 0.5, "reset_forward_speed": 2.0}).unwrapped
    speeds = []
    for seed in range(20):
        still.reset(seed=seed)
        moving.reset(seed=seed)
        extra = moving.data.qvel[:2] - still.data.qvel[:2]  # the same reset noise: 0 draws no extra number first
        speeds.append(float(np.hypot(*extra)))
        assert math.isclose(math.atan2(extra[1], extra[0]), 0.5, abs_tol=1e-9)  # along the heading, forwards
        np.testing.assert_array_equal(moving.data.qvel[2:], still.data.qvel[2:])
    assert 0.0 <= min(speeds) < 0.5 and 1.5 < max(speeds) <= 2.0  # uniform in [0, 2] m/s
    with pytest.raises(ValueError, match="reset_forward_speed"):
        make_env("trex", {"task": "locomotion", "reset_forward_speed": -1.0})


@pytest.mark.parametrize("species", SPECIES_NAMES)
@pytest.mark.parametrize("stage", (1, 2, 3))
def test_reward_terms_sum_to_reward_every_step(species, stage):
    kwargs = stage_config(species, stage)["env"]
    env = make_env(species, kwargs)
    env.reset(seed=stage)
    env.action_space.seed(stage)
    expected_keys = set(REWARD_KEYS) | set(RAW_KEYS) | ({"is_success"} if stage == 3 else set())
    nonzero: set[str] = set()
    steps = 0
    for episode in range(2):
        done = False
        while not done:
            action = env.action_space.sample() * (0.0 if episode == 0 else 1.0)
            _, reward, terminated, truncated, info = env.step(action)
            steps += 1
            assert set(info) == expected_keys
            total = sum(info[k] for k in REWARD_KEYS)
            assert math.isclose(total, reward, rel_tol=1e-12, abs_tol=1e-12)
            assert isinstance(reward, float) and math.isfinite(reward)
            nonzero |= {k for k in REWARD_KEYS if info[k] != 0.0}
            assert isinstance(info["termination_reason"], str)
            assert (info["termination_reason"] != "") == (terminated or truncated)
            if stage == 3:
                assert isinstance(info["is_success"], bool) and info["target_distance"] > 0.0
            else:
                assert info["target_distance"] == -1.0
            done = terminated or truncated
        env.reset()
    weights = {"reward_alive": "alive_bonus", "reward_posture": "posture_weight", "reward_fall": "fall_penalty",
               "reward_energy": "energy_penalty_weight"}
    active = {term for term, key in weights.items() if kwargs.get(key, 1.0) != 0.0}
    # (the walking raptor has no alive/fall pay)
    assert len(active) >= 2 and active <= nonzero
    if stage == 3:
        assert {"reward_approach", "reward_proximity"} <= nonzero


def test_penalties_use_the_clipped_action():
    env = make_env("velociraptor", {"energy_penalty_weight": 1.0, "smoothness_weight": 1.0})
    results = []
    for scale in (1.0, 7.0, -7.0):
        env.reset(seed=0)
        _, _, _, _, info = env.step(np.full(env.action_space.shape, scale, dtype=np.float32))
        results.append((info["reward_energy"], info["reward_smoothness"]))
        assert np.all(np.abs(env.unwrapped.data.ctrl - env.unwrapped._home) <= env.unwrapped._ctrl_scale + 1e-12)
    assert results[0] == results[1]  # the policy output beyond the action space changes nothing
    assert -1.0 <= results[0][0] < -0.9 and -1.0 <= results[2][0] < -0.9  # mean a^2 of a clipped action


@pytest.mark.parametrize("species", SPECIES_NAMES)
def test_statue_falls_in_stage1(species):
    """A zero-action policy (servos hold the home pose) falls in every episode of the committed stage-1 config."""
    kwargs = stage_config(species, 1)["env"]
    env = make_env(species, kwargs)
    for seed in range(3):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
            done = terminated or truncated
        assert terminated and info["termination_reason"].startswith("fell_"), info["termination_reason"]
        assert info["reward_fall"] == kwargs["fall_penalty"] and info["reward_alive"] == 0.0


def test_pushes_move_the_animal():
    """With pushes, the torso picks up horizontal speed that a push-free twin does not."""
    speeds = []
    for push in (0.0, 0.3):
        env = make_env("velociraptor", {"push_force": push, "push_interval": 0.2, "reset_noise_scale": 0.0})
        env.reset(seed=0)
        peak = 0.0
        for _ in range(8):
            env.step(np.zeros(env.action_space.shape, dtype=np.float32))
            peak = max(peak, float(np.linalg.norm(env.unwrapped.data.qvel[:2])))
        speeds.append(peak)
    assert speeds[1] > speeds[0] + 0.1


def _effector_position(env, species: str) -> np.ndarray:
    u = env.unwrapped
    name = {"velociraptor": "claw_left", "trex": "teeth", "brachiosaurus": "mouth"}[species]
    return u.data.geom_xpos[u.model.geom(name).id].copy()


def _touch_target(env, species: str) -> None:
    u = env.unwrapped
    u.data.mocap_pos[u._mocap] = _effector_position(env, species)
    mujoco.mj_forward(u.model, u.data)


@pytest.mark.parametrize("species", SPECIES_NAMES)
def test_stage3_success_after_the_hold_ends_episode_with_bonus(species):
    kwargs = stage_config(species, 3)["env"]
    hold = kwargs["success_hold_steps"]
    assert hold > 0
    bonus = {"velociraptor": "strike_bonus", "trex": "bite_bonus", "brachiosaurus": "food_reach_bonus"}[species]
    env = make_env(species, kwargs)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    # Target far away: no success.
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(zero)
    assert not terminated and info["is_success"] is False and info["reward_success"] == 0.0
    # Teleport the target onto the effector: the touch starts the hold; success comes success_hold_steps later,
    # with the bonus on that step only. A strike/bite needs one touch (the prey is then moved 1 m away so it
    # does not push the animal over); food stays at the mouth.
    env.reset(seed=0)
    u = env.unwrapped
    for step in range(hold + 1):
        if step == 0 or not u.success_by_contact:
            _touch_target(env, species)
        elif step == 1:
            u.data.mocap_pos[u._mocap] += np.array([1.0, 0.0, 0.0])
        _, reward, terminated, truncated, info = env.step(zero)
        if step < hold:
            assert not terminated and info["is_success"] is False and info["reward_success"] == 0.0, step
    assert terminated and not truncated
    assert info["is_success"] is True and info["termination_reason"] == "success"
    assert info["reward_success"] == kwargs[bonus]
    assert reward == pytest.approx(sum(v for k, v in info.items() if k.startswith("reward_")))


def test_a_touch_followed_by_a_fall_is_a_fall():
    env = make_env("trex", {"task": "bite", "bite_bonus": 100.0, "success_hold_steps": 50})
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    env.reset(seed=0)
    _touch_target(env, "trex")
    reasons = []
    for _ in range(51):  # the zero-action T-Rex sags and falls within ~60 steps, before the 50-step hold ends
        _, _, terminated, _, info = env.step(zero)
        reasons.append(info["termination_reason"])
        if terminated:
            break
    assert reasons[-1].startswith("fell_") and info["is_success"] is False and info["reward_success"] == 0.0


def test_reaching_needs_the_mouth_kept_at_the_food():
    env = make_env("brachiosaurus", {"task": "food_reach", "food_reach_bonus": 100.0, "success_hold_steps": 3})
    u = env.unwrapped
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    env.reset(seed=0)
    food = u.data.mocap_pos[u._mocap].copy()
    _touch_target(env, "brachiosaurus")
    env.step(zero)  # at the food: the hold starts
    u.data.mocap_pos[u._mocap] = food  # the food back where it was: the mouth leaves it
    mujoco.mj_forward(u.model, u.data)
    for _ in range(4):
        _, _, terminated, _, info = env.step(zero)
        assert not terminated and info["is_success"] is False


def test_stage3_targets_spawn_inside_configured_ranges():
    rap = make_env("velociraptor", {"task": "strike", "prey_distance_range": (1.0, 1.2), "prey_lateral_range": 0.0})
    for seed in range(10):
        rap.reset(seed=seed)
        prey = rap.unwrapped.data.mocap_pos[0]
        assert 1.0 <= prey[0] - rap.unwrapped.data.qpos[0] <= 1.2 and abs(prey[1]) < 1e-9


@pytest.mark.parametrize("species,task", [("velociraptor", "strike"), ("trex", "bite")])
def test_prey_height_raises_the_prey_off_the_ground(species, task):
    """``prey_height`` is the prey's underside above the ground: 0 (the default) rests it on the floor, and the same
    seed raises the same prey by exactly that much."""
    kwargs = {"task": task, "prey_lateral_range": 0.0}
    ground = make_env(species, kwargs).unwrapped
    raised = make_env(species, {**kwargs, "prey_height": 1.2}).unwrapped
    ground.reset(seed=3)
    raised.reset(seed=3)
    radius = float(ground.model.geom_size[ground._target_geom][0])
    low, high = ground.data.mocap_pos[0].copy(), raised.data.mocap_pos[0].copy()
    assert low[2] == pytest.approx(radius)
    assert high[2] == pytest.approx(radius + 1.2) and high[:2] == pytest.approx(low[:2])


def test_every_food_is_reachable_by_holding_a_neck_pose_and_none_is_at_the_resting_mouth():
    kwargs = stage_config("brachiosaurus", 3)["env"]
    env = make_env("brachiosaurus", kwargs)
    u = env.unwrapped
    foods, successes = [], []
    for seed in range(12):
        env.reset(seed=seed)
        food = u.data.mocap_pos[u._mocap].copy()
        assert np.linalg.norm(food - _effector_position(env, "brachiosaurus")) >= kwargs["food_min_offset"] - 0.1
        foods.append(food - u.data.qpos[:3])
        oracle = u.food_pose_action.copy()  # the neck pose whose mouth position the food was placed at
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(oracle)
            done = terminated or truncated
        successes.append(info["is_success"])
    assert all(successes)
    spread = np.ptp(np.array(foods), axis=0)
    assert spread[0] > 1.0 and spread[1] > 1.0 and spread[2] > 1.0  # near/far, left/right, low/high


@pytest.mark.parametrize("heading", [0.0, math.pi / 2])
def test_food_distance_range_moves_the_food_ahead_along_the_heading(heading):
    """With food_distance_range the food is the neck pose's mouth position moved that far along the heading (the
    animal walks up to it); with the default (0, 0) it stays where the pose puts it."""
    kwargs = {**stage_config("brachiosaurus", 3)["env"], "heading": heading}
    near = make_env("brachiosaurus", {**kwargs, "food_distance_range": [0.0, 0.0]}).unwrapped
    far = make_env("brachiosaurus", {**kwargs, "food_distance_range": [3.0, 5.0]}).unwrapped
    shifts = []
    for seed in range(20):
        near.reset(seed=seed)
        far.reset(seed=seed)
        shift = far.data.mocap_pos[far._mocap] - near.data.mocap_pos[near._mocap]
        assert np.allclose(far.food_pose_action, near.food_pose_action)  # the same neck pose
        ahead = shift[0] * math.cos(heading) + shift[1] * math.sin(heading)
        assert 3.0 <= ahead <= 5.0 and abs(shift[2]) < 1e-9
        assert np.linalg.norm(shift[:2]) == pytest.approx(ahead)
        shifts.append(ahead)
    assert np.ptp(shifts) > 1.0  # uniform over the range, not one distance


def test_the_food_offset_table_is_what_the_env_measures():
    """FOOD_OFFSET_REACHED (the config rule's data, no MuJoCo at config time) matches the model: measured again
    the same way, each point is within 2 cm (after a change to brachiosaurus.xml: scripts/measure_food_reach.py)."""
    from dinosim.config.env_rules import FOOD_OFFSET_REACHED
    from dinosim.envs.brachiosaurus import measure_food_offset_reached

    measured = [measure_food_offset_reached(reach, samples=2000) for reach, _ in FOOD_OFFSET_REACHED]
    assert measured == pytest.approx([m for _, m in FOOD_OFFSET_REACHED], abs=0.02)
    assert all(a < b for a, b in zip(measured, measured[1:]))  # linear interpolation between points is sound


@pytest.mark.parametrize("action_scale, noise", [(0.5, 0.05), (1.0, 0.05), (0.25, 0.3)])
def test_food_min_offset_at_its_limit_is_honoured_and_above_it_refused(action_scale, noise):
    """Before, a food_min_offset of 3 m passed the dry run and 287 of 300 foods were closer (the last of 100 draws
    was kept): now every food is at least as far as asked at the limit, and above it the env (and the config) refuse."""
    from dinosim.config.env_rules import food_offset_limit

    kwargs = {**stage_config("brachiosaurus", 3)["env"], "action_scale": action_scale, "reset_noise_scale": noise}
    limit = food_offset_limit(kwargs["food_pose_range"], action_scale)
    env = make_env("brachiosaurus", {**kwargs, "food_min_offset": limit})
    for seed in range(100):
        env.reset(seed=seed)
        food = env.unwrapped.data.mocap_pos[env.unwrapped._mocap]
        assert np.linalg.norm(food - _effector_position(env, "brachiosaurus")) >= limit
    with pytest.raises(ValueError, match=f"env.food_min_offset = {limit + 0.05!r} is above {limit:g} m"):
        make_env("brachiosaurus", {**kwargs, "food_min_offset": limit + 0.05})
    make_env("brachiosaurus", {**kwargs, "task": "balance", "food_min_offset": limit + 0.05})  # no food: no rule


CURRICULUM_KEYS = {f.name for f in dataclasses.fields(CurriculumSettings)}


def test_short_audit_has_no_passes():
    rows = []
    for species in SPECIES_NAMES:
        for stage in (1, 2, 3):
            config = stage_config(species, stage)
            gate = {k: v for k, v in config["curriculum"].items() if k in CURRICULUM_KEYS}
            rows += run_audit(species, stage, config["env"], CurriculumSettings(**gate), episodes=2, seeds=(0, 1))
    table = format_audit_table(rows)
    assert len(rows) == 27 and not any(r.passed for r in rows), table
    assert "0 of 27" in table
    constant = [r for r in rows if r.policy == "constant"]
    assert len(constant) == 9 and all(r.detail.endswith(("=-1", "=+1")) for r in constant)


def test_gate_logic():
    from dinosim.config.settings import CurriculumSettings as Gate

    stats = {"mean_return": 10.0, "mean_length": 100.0, "success_rate": 0.5}
    assert gate_passed(stats, Gate(min_avg_reward=10.0, min_avg_episode_length=100.0), 20)
    assert not gate_passed(stats, Gate(min_avg_reward=10.1, min_avg_episode_length=100.0), 20)
    assert not gate_passed(stats, Gate(min_avg_reward=0.0, min_avg_episode_length=0.0, min_success_rate=0.6), 20)
    assert gate_passed(stats, Gate(min_avg_reward=0.0, min_avg_episode_length=0.0, min_success_rate=None), 20)


@pytest.mark.parametrize("species", SPECIES_NAMES)
def test_render_rgb_array_headless(species):
    env = make_env(species, {"task": SPECIES[species].behaviour}, render_mode="rgb_array")
    env.reset(seed=0)
    try:
        frame = env.render()
    except Exception as exc:  # no GL backend (EGL/OSMesa) can be created on this machine
        pytest.skip(f"no headless OpenGL context: {exc!r}")
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert frame.std() > 5.0  # not a blank image
    for _ in range(5):
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert env.render().shape == (480, 640, 3)
    env.close()


def test_kwarg_attributes_can_be_changed_after_construction():
    """Trainers ramp [env] values with set_attr; derived caches (action bounds, heading) must follow."""
    env = make_env("velociraptor", {"reset_noise_scale": 0.0})
    u = env.unwrapped
    ones = np.ones(env.action_space.shape, dtype=np.float32)
    for scale in (0.5, 0.25):
        u.action_scale = scale
        env.reset(seed=0)
        env.step(ones)
        half_range = 0.5 * (u._ctrl_hi - u._ctrl_lo)
        expected = np.minimum(scale * half_range, u._ctrl_hi - u._home)  # target clipped at the joint limit
        assert np.allclose(u.data.ctrl - u._home, expected)
    env.reset(seed=0)
    u.data.qvel[0] = 1.0  # moving along +x
    u.heading = math.pi  # walking direction is now -x
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert info["forward_velocity"] < 0.0
