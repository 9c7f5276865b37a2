"""Register dinosim's Gymnasium ids (``dinosim/Velociraptor-v0``, ``dinosim/TRex-v0``, ``dinosim/Brachiosaurus-v0``).

:func:`register_envs` runs when ``dinosim`` is imported, as in Gymnasium-Robotics and ALE, so ``gym.make`` and
``python -m rl_zoo3.train --gym-packages dinosim`` find the ids. Entry points are ``"module:Class"`` strings taken
from :data:`dinosim.species.SPECIES`: nothing imports MuJoCo, torch or the env modules until an env is made.
Importing this module imports ``gymnasium``'s registry (numpy) and nothing of ours but ``dinosim.species``.
"""

from __future__ import annotations

from dinosim.species import SPECIES


def register_envs() -> None:
    """Register every species' id once (idempotent). The env truncates its episodes itself (its kwarg
    ``max_episode_steps``), so no ``TimeLimit`` wrapper is added."""
    from gymnasium.envs.registration import register, registry

    for spec in SPECIES.values():
        if spec.env_id not in registry:
            register(id=spec.env_id, entry_point=f"{spec.env_module}:{spec.env_class}", max_episode_steps=None,
                     disable_env_checker=False)
