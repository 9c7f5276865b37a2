"""dinosim: curriculum reinforcement learning for MuJoCo dinosaurs.

Importing this package registers the Gymnasium ids ``dinosim/Velociraptor-v0``, ``dinosim/TRex-v0`` and
``dinosim/Brachiosaurus-v0`` (lazy ``"module:Class"`` entry points, see :mod:`dinosim.registration`). It imports
gymnasium's registry but no torch, Stable-Baselines3, wandb or MuJoCo.
"""

__version__ = "0.1.0"

from dinosim.registration import register_envs  # noqa: E402

register_envs()
