"""Learnability check: plain SB3 PPO on one species/stage, logging episode length and return over training.

Usage: python benchmarks/learnability.py [--species velociraptor] [--config configs/velociraptor/stage1_balance.toml]
       [--timesteps 300000] [--out runs/learnability]
Prints the zero-action and random-action baselines (from dinosim.envs.audit) first, then one line per PPO
rollout with the mean length/return of the episodes finished in it, and finally a deterministic evaluation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tomllib
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from dinosim.envs import make_env
from dinosim.envs.audit import run_policy


class EpisodeLog(BaseCallback):
    """Print mean episode length/return of the episodes that ended in each rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.lengths: list[int] = []
        self.returns: list[float] = []
        self.speeds: list[float] = []  # info["forward_velocity"] of every step in the rollout
        self.successes: list[bool] = []
        self.t0 = time.time()
        self.history: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            self.speeds.append(info["forward_velocity"])
            if "episode" in info:
                self.lengths.append(info["episode"]["l"])
                self.returns.append(info["episode"]["r"])
                self.successes.append(bool(info.get("is_success", False)))
        return True

    def _on_rollout_end(self) -> None:
        if self.lengths:
            row = {
                "timesteps": self.num_timesteps,
                "episodes": len(self.lengths),
                "mean_length": float(np.mean(self.lengths)),
                "mean_return": float(np.mean(self.returns)),
                "mean_forward_velocity": float(np.mean(self.speeds)),
                "success_rate": float(np.mean(self.successes)),
                "wall_s": time.time() - self.t0,
            }
            self.history.append(row)
            print(json.dumps(row), flush=True)
        self.lengths, self.returns, self.speeds, self.successes = [], [], [], []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--species", default="velociraptor")
    parser.add_argument("--config", default="configs/velociraptor/stage1_balance.toml")
    parser.add_argument("--timesteps", type=int, default=300_000)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--out", default="runs/learnability")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared; one thread avoids oversubscription stalls

    env_kwargs = tomllib.loads(Path(args.config).read_text())["env"]
    print("env kwargs:", env_kwargs, flush=True)
    for policy in ("zero", "random"):
        stats = run_policy(args.species, env_kwargs, policy, episodes=10, seeds=(0,))
        print(f"baseline {policy}: {json.dumps(stats)}", flush=True)

    venv = DummyVecEnv(
        [lambda i=i: Monitor(make_env(args.species, env_kwargs, seed=args.seed + i)) for i in range(args.n_envs)]
    )
    venv.seed(args.seed)
    venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=0.99)
    model = PPO(
        "MlpPolicy", venv, learning_rate=3e-4, n_steps=1024, batch_size=256, n_epochs=10, gamma=0.99,
        gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, policy_kwargs={"net_arch": [128, 128], "log_std_init": -1.0},
        seed=args.seed, verbose=0, device="cpu",
    )
    log = EpisodeLog()
    model.learn(total_timesteps=args.timesteps, callback=log)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "ppo")
    venv.save(str(out / "vecnormalize.pkl"))

    # Deterministic evaluation with frozen normalisation statistics.
    venv.training = False
    venv.norm_reward = False
    lengths, returns, successes, speeds = [], [], [], []
    for episode in range(10):
        env = make_env(args.species, env_kwargs, seed=1000 + episode)
        obs, _ = env.reset(seed=1000 + episode)
        done, total, steps = False, 0.0, 0
        while not done:
            action, _ = model.predict(venv.normalize_obs(obs[None]), deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action[0])
            speeds.append(info["forward_velocity"])
            total += reward
            steps += 1
            done = terminated or truncated
        lengths.append(steps)
        returns.append(total)
        successes.append(bool(info.get("is_success", False)))
    final = {
        "eval_mean_length": float(np.mean(lengths)),
        "eval_mean_return": float(np.mean(returns)),
        "eval_success_rate": float(np.mean(successes)),
        "eval_mean_forward_velocity": float(np.mean(speeds)),
    }
    print("final:", json.dumps(final), flush=True)
    (out / "history.json").write_text(json.dumps({"history": log.history, "final": final}, indent=1))


if __name__ == "__main__":
    main()
