"""dinosim: curriculum reinforcement learning for MuJoCo dinosaurs.

Importing this package is cheap: it imports no torch, Stable-Baselines3, wandb or MuJoCo.
"""

__version__ = "0.1.0"
