"""dinosim MuJoCo environments. The Gymnasium ids are registered by ``import dinosim`` (no torch/SB3 import)."""

from __future__ import annotations

from dinosim.envs.gl import choose_headless_gl

choose_headless_gl()  # before any submodule imports mujoco

from dinosim.envs.factory import ENV_IDS, make_env  # noqa: E402
from dinosim.registration import register_envs  # noqa: E402

register_envs()  # already done by `import dinosim`; kept so this module's contract holds on its own

__all__ = ["ENV_IDS", "make_env"]
