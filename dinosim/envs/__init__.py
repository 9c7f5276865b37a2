"""dinosim MuJoCo environments. Importing this package registers the Gymnasium ids (no torch/SB3 import)."""

from __future__ import annotations

from dinosim.envs.gl import choose_headless_gl

choose_headless_gl()  # before any submodule imports mujoco

from gymnasium.envs.registration import register, registry  # noqa: E402

from dinosim.envs.factory import ENV_IDS, make_env  # noqa: E402

for _species, _env_id in ENV_IDS.items():
    if _env_id not in registry:
        _module, _cls = {
            "velociraptor": ("dinosim.envs.velociraptor", "VelociraptorEnv"),
            "trex": ("dinosim.envs.trex", "TRexEnv"),
            "brachiosaurus": ("dinosim.envs.brachiosaurus", "BrachiosaurusEnv"),
        }[_species]
        # The env truncates episodes itself (kwarg max_episode_steps), so no TimeLimit wrapper is added.
        register(id=_env_id, entry_point=f"{_module}:{_cls}", max_episode_steps=None, disable_env_checker=False)

__all__ = ["ENV_IDS", "make_env"]
