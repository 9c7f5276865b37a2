"""API contracts of the dinosim envs: signatures, registration, checkers, spaces, determinism, imports."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import tomllib

import dinosim.envs
from dinosim.envs import make_env
from dinosim.envs.base import DinoEnv
from dinosim.species import CONFIGS_DIR, SPECIES, module_source_path

SPECIES_NAMES = tuple(SPECIES)


def stage_kwargs(species: str, stage: int) -> dict:
    """The committed [env] table of one species/stage config."""
    path = CONFIGS_DIR / species / SPECIES[species].stage_files[stage - 1]
    return tomllib.loads(path.read_text())["env"]


def env_class(species: str) -> type[DinoEnv]:
    spec = SPECIES[species]
    module = __import__(spec.env_module, fromlist=[spec.env_class])
    return getattr(module, spec.env_class)


def _init_node(path, class_name: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    return next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")


@pytest.mark.parametrize(
    "path,class_name",
    [(module_source_path("dinosim.envs.base"), "DinoEnv")]
    + [(module_source_path(s.env_module), s.env_class) for s in SPECIES.values()],
)
def test_init_signature_is_ast_readable(path, class_name):
    init = _init_node(path, class_name)
    assert not init.args.args[1:] and not init.args.posonlyargs, "all kwargs must be keyword-only"
    assert init.args.kwonlyargs, "no keyword parameters found"
    for arg, default in zip(init.args.kwonlyargs, init.args.kw_defaults):
        assert default is not None, f"{arg.arg} has no default"
        ast.literal_eval(default)  # raises if the default is not a literal
        assert arg.annotation is not None, f"{arg.arg} has no annotation"
    if class_name != "DinoEnv":
        assert init.args.kwarg is not None, "species __init__ must forward **kwargs to DinoEnv"


@pytest.mark.parametrize("species", SPECIES_NAMES)
def test_config_env_keys_are_constructor_kwargs(species):
    cls = env_class(species)
    valid = set(inspect.signature(DinoEnv.__init__).parameters) | set(inspect.signature(cls.__init__).parameters)
    for stage in (1, 2, 3):
        unknown = set(stage_kwargs(species, stage)) - valid
        assert not unknown, f"{species} stage {stage}: unknown [env] keys {unknown}"


def test_ast_reader_sees_species_and_base_kwargs():
    signatures = pytest.importorskip("dinosim.config.signatures")
    spec = SPECIES["velociraptor"]
    params = signatures.read_init_params(module_source_path(spec.env_module), spec.env_class)
    assert {"task", "alive_bonus", "push_force", "strike_bonus", "prey_distance_range", "render_mode"} <= set(params)
    assert params["alive_bonus"].default == inspect.signature(DinoEnv.__init__).parameters["alive_bonus"].default


@pytest.mark.parametrize("species", SPECIES_NAMES)
def test_gymnasium_make_with_kwargs(species):
    env = gym.make(SPECIES[species].env_id, task="locomotion", alive_bonus=0.25, reset_noise_scale=0.0)
    u = env.unwrapped
    assert isinstance(u, env_class(species)) and u.task == "locomotion" and u.alive_bonus == 0.25
    assert u.reset_noise_scale == 0.0
    assert env.spec.max_episode_steps is None  # registered without TimeLimit: the env truncates itself
    # gym.make consumes max_episode_steps itself (TimeLimit); make_env hands it to the env instead.
    env = make_env(species, {"task": "locomotion", "max_episode_steps": 7})
    assert env.unwrapped.max_episode_steps == 7 and "TimeLimit" not in str(env)
    # make_env drops gymnasium's passive checker (the env is checked by test_checkers_pass), keeps the order check
    assert "PassiveEnvChecker" not in str(env) and "OrderEnforcing" in str(env)
    assert "PassiveEnvChecker" in str(gym.make(SPECIES[species].env_id))
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        steps += 1
        done = terminated or truncated
    assert steps <= 7 and (truncated == (info["termination_reason"] == "time_limit"))
    with pytest.raises(ValueError):
        gym.make(SPECIES[species].env_id, task="fly")


def test_make_env_factory():
    env = make_env("trex", {"task": "bite", "bite_bonus": 5.0}, seed=3)
    assert env.unwrapped.bite_bonus == 5.0 and env.unwrapped.target_bonus == 5.0
    with pytest.raises(KeyError):
        make_env("stegosaurus", {})
    with pytest.raises(TypeError):
        make_env("trex", {"no_such_key": 1.0})
    assert dinosim.envs.make_env is make_env


@pytest.mark.parametrize("species", SPECIES_NAMES)
@pytest.mark.parametrize("stage", (1, 2, 3))
def test_checkers_pass(species, stage):
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_env(species, stage_kwargs(species, stage)).unwrapped
    with pytest.warns(UserWarning, match="infinity"):  # unbounded Box bounds are intentional
        gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=False)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.low.min() == -1.0 and env.action_space.high.max() == 1.0


@pytest.mark.parametrize("species", SPECIES_NAMES)
def test_same_seed_same_trajectory(species):
    kwargs = {**stage_kwargs(species, 1), "push_interval": 0.5}

    def rollout(seed: int) -> np.ndarray:
        env = make_env(species, kwargs)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        out = [obs]
        for _ in range(60):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample() * 0.3)
            out.append(np.append(obs, reward))
            if terminated or truncated:
                obs, _ = env.reset()
                out.append(obs)
        return np.concatenate(out)

    a, b, c = rollout(5), rollout(5), rollout(6)
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_observation_sizes_and_target_slots():
    sizes = {}
    for species in SPECIES_NAMES:
        envs = [make_env(species, {"task": t}) for t in ("balance", SPECIES[species].behaviour)]
        shapes = {e.observation_space.shape for e in envs}
        assert len(shapes) == 1, "observation size must not depend on the stage"
        obs_balance, _ = envs[0].reset(seed=0)
        obs_target, _ = envs[1].reset(seed=0)
        assert np.all(obs_balance[-3:] == 0.0) and np.linalg.norm(obs_target[-3:]) > 0.5
        sizes[species] = shapes.pop()[0]
    assert sizes == {"velociraptor": 53, "trex": 53, "brachiosaurus": 55}


def test_import_is_light():
    code = (
        "import sys, dinosim.envs, dinosim.envs.audit, dinosim.envs.velociraptor, dinosim.envs.trex, "
        "dinosim.envs.brachiosaurus; "
        "bad = [m for m in ('torch', 'stable_baselines3', 'wandb') if m in sys.modules]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
