"""dinosim MuJoCo environments. Importing this package registers the Gymnasium ids (no torch/SB3 import)."""

from __future__ import annotations

from dinosim.envs.gl import choose_headless_gl

choose_headless_gl()  # before any submodule imports mujoco

from dinosim.envs.factory import ENV_IDS, make_env, register_envs  # noqa: E402

register_envs()

__all__ = ["ENV_IDS", "make_env"]
