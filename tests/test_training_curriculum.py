"""Real (tiny) training runs with the real velociraptor env: kill -9 and resume, Ctrl-C, gates, warm start,
warm-up and env ramp, NaN detection, evaluate. Sizes: 2 envs, 64-step rollouts, 16-unit nets, 50-step episodes."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import pytest

from dinosim.config.resolve import resolve_run
from dinosim.training.request import RunRequest

pytestmark = pytest.mark.slow

def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_in_stage_2_then_resume_finishes_without_redoing_stages(tmp_path: Path, tiny, dinosim_popen,
                                                                     wait_for_file, dinosim_main) -> None:
    run_dir = tmp_path / "run"
    budget = 1024
    proc = dinosim_popen("curriculum", "--species", "velociraptor", "--timesteps", str(budget), "--n-envs",
                         str(tiny.n_envs), "--run-dir", str(run_dir), "--no-progress", "--override", *tiny.overrides)
    wait_for_file(run_dir / "stage2" / "checkpoints", "step_*.json", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "running"
    assert summary["stages"]["1"]["status"] == "finished" and summary["stages"]["2"]["status"] == "running"
    assert summary["stages"]["3"]["status"] == "pending"
    tiny.assert_every_file_loads(run_dir)
    stage1_files = {p: digest(p) for p in (run_dir / "stage1").rglob("*") if p.is_file()}
    checkpoint_steps = sorted(int(p.stem.split("_")[1]) for p in (run_dir / "stage2" / "checkpoints").glob("*.json"))

    code, out, err = dinosim_main("resume", str(run_dir), "--no-progress")  # in this process: no import cost
    assert code == 0, err[-3000:]
    resumed_at = int(out.split("stage 2: resumed from the checkpoint at step ")[1].split()[0])
    assert resumed_at >= checkpoint_steps[-1] and budget < resumed_at < 2 * budget
    assert "stage 1: resumed" not in out

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["global_step"] == 3 * budget
    for stage in (1, 2, 3):
        state = summary["stages"][str(stage)]
        assert state["status"] == "finished" and state["timesteps_used"] == budget
        assert state["start_step"] == (stage - 1) * budget
        assert state["wall_time"] > 0 and state["last_eval"]["global_step"] <= stage * budget
    assert summary["stages"]["2"]["warm_start"].endswith("stage1/best/model.zip")
    assert {p: digest(p) for p in (run_dir / "stage1").rglob("*") if p.is_file()} == stage1_files  # not redone
    tiny.assert_every_file_loads(run_dir)
    for stage in (1, 2, 3):
        with np.load(run_dir / f"stage{stage}" / "evaluations.npz") as data:
            steps = list(data["timesteps"])
        assert steps == sorted(set(steps)) and len(steps) == budget // 256
        assert all((stage - 1) * budget < s <= stage * budget for s in steps)
        assert len(list((run_dir / f"stage{stage}" / "checkpoints").glob("*.json"))) <= 2  # keep_checkpoints
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {x["stage"] for x in lines} == {1, 2, 3}
    assert all("eval/mean_reward" in x and "eval/reward/alive" in x and "eval/success_rate" in x for x in lines)

    # plain SB3 loading of the final files
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from dinosim.envs import make_env

    config = resolve_run("velociraptor", "ppo", [3], tiny.overrides, n_envs=tiny.n_envs)
    model = PPO.load(str(run_dir / "stage3" / "model.zip"))
    venv = VecNormalize.load(str(run_dir / "stage3" / "vecnormalize.pkl"),
                             DummyVecEnv([lambda: make_env("velociraptor", config.env_kwargs(3))]))
    assert model.predict(venv.reset(), deterministic=True)[0].shape == (1, 18)

    # TensorBoard scalars at global steps
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "stage3" / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"eval/mean_reward", "eval/mean_ep_length", "curriculum/stage", "curriculum/gate_streak"} <= set(tags)
    assert any(t.startswith("reward/") for t in tags)
    stage_points = events.Scalars("curriculum/stage")
    assert all(p.value == 3 and 2 * budget < p.step <= 3 * budget for p in stage_points)

    # evaluate prints return ± std, length, success rate and the reward components
    code, out, err = dinosim_main("evaluate", str(run_dir), "--episodes", "2")
    assert code == 0, err
    assert "stage 3" in out and "±" in out and "success rate" in out and "%" in out
    assert "alive" in out and "fall" in out


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tmp_path: Path, tiny, dinosim_popen,
                                                                 wait_for_file) -> None:
    run_dir = tmp_path / "run"
    proc = dinosim_popen("train", "--species", "velociraptor", "--stage", "1", "--timesteps", "100000", "--n-envs",
                         str(tiny.n_envs), "--run-dir", str(run_dir), "--no-progress", "--override", *tiny.overrides)
    wait_for_file(run_dir / "stage1" / "checkpoints", "step_*.json", proc)
    proc.send_signal(signal.SIGINT)
    tiny.assert_interrupted(proc, signal.SIGINT, run_dir)


def test_gate_ends_the_stage_early_and_init_from_warm_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture, tiny) -> None:
    trial_metrics = tmp_path / "trial.jsonl"
    monkeypatch.setenv("DINOSIM_TRIAL_METRICS", str(trial_metrics))
    code, summary = tiny.run(tmp_path / "run", [1], ["curriculum.min_avg_reward=-1e9", "curriculum.eval_freq=128",
                                                   "curriculum.min_avg_episode_length=0",
                                                   "curriculum.required_consecutive=2"], 4096)
    state = summary["stages"]["1"]
    assert code == 0 and state["gate_passed"] and state["gate_passed_at"] == 256
    assert state["timesteps_used"] == 256 and state["evaluations"] == 2 and state["gate_streak"] == 2
    *lines, stage_end = [json.loads(x) for x in trial_metrics.read_text().splitlines()]
    # two screenings in a row pass, then the gate evaluation of the same snapshot confirms it
    assert [(x["global_step"], x["eval_kind"]) for x in lines] == [(128, "screen"), (256, "screen"), (256, "gate")]
    assert all("eval/mean_reward" in x for x in lines)
    seeds = [x["eval_seeds"] for x in lines]  # consecutive ranges of the gate stream, far above training seeds
    assert seeds[0][0] >= 10**9 and all(a[1] == b[0] for a, b in zip(seeds, seeds[1:]))
    metrics_jsonl = (tmp_path / "run" / "metrics.jsonl").read_text()  # evaluations only
    assert trial_metrics.read_text() == metrics_jsonl + json.dumps(stage_end) + "\n"
    # then the stage's end, for a sweep that minimises the steps to a gate
    assert stage_end == {"global_step": 256, "stage": 1, "stage/steps_to_gate": 256, "run/steps_to_gate": 256,
                         "stage/gate_passed": 1, "stage/gate_shortfall": 0.0, "stage/steps_to_gate_ranked": 256}

    # train --stage 2 --init-from <that run>: warm start from its best model, ramp from its stage-1 [env]
    from dinosim.training.curriculum import RunHooks
    from dinosim.training.runner import run

    config = resolve_run("velociraptor", "ppo", [2], tiny.overrides + ["2.env.alive_bonus=0.25"], n_envs=tiny.n_envs)
    request = RunRequest(command="train", config=config, timesteps=256, run_dir=tmp_path / "second",
                         init_from=tmp_path / "run", progress=False)
    capsys.readouterr()
    assert run(request, hooks=RunHooks(log_stdout=False)) == 0
    second = json.loads((tmp_path / "second" / "summary.json").read_text())["stages"]["2"]
    assert second["warm_start"] == str(tmp_path / "run" / "stage1" / "best" / "model.zip")
    assert f"warm start: {second['warm_start']}\n" in capsys.readouterr().out  # the run says which policy it took
    first_alive = resolve_run("velociraptor", "ppo", [1], tiny.overrides).env_kwargs(1)["alive_bonus"]
    assert second["ramped"]["alive_bonus"] == [first_alive, 0.25]


def test_a_stage_starts_from_the_stage_its_warm_start_stage_names(tmp_path: Path, tiny) -> None:
    """Stage 2 from scratch, stage 3 from stage 1's policy (not the previous stage's): the warm start and the
    reward ramp's starting point are stage 1's."""
    code, summary = tiny.run(tmp_path / "run", [1, 2, 3], ["2.curriculum.warm_start_stage=0",
                                                          "3.curriculum.warm_start_stage=1"], 256)
    assert code == 0 and summary["status"] == "finished"
    stages = summary["stages"]
    assert stages["2"]["warm_start"] is None and stages["2"]["ramped"] == {}
    assert stages["3"]["warm_start"] == str(tmp_path / "run" / "stage1" / "best" / "model.zip")
    config = resolve_run("velociraptor", "ppo", [1, 2, 3], tiny.overrides)
    alive = [config.env_kwargs(s)["alive_bonus"] for s in (1, 2, 3)]
    assert alive[0] != alive[1] and stages["3"]["ramped"]["alive_bonus"] == [alive[0], alive[2]]


def test_strict_gates_stop_after_a_failed_stage(tmp_path: Path, capsys: pytest.CaptureFixture, tiny) -> None:
    code, summary = tiny.run(tmp_path / "run", [1, 2], ["curriculum.min_avg_reward=1e9"], 512, strict_gates=True)
    assert code == 1 and summary["status"] == "failed" and "strict-gates" in summary["message"]
    assert summary["stages"]["1"]["status"] == "finished" and summary["stages"]["2"]["status"] == "pending"
    assert "stage 1" in capsys.readouterr().err


def test_warm_start_warmup_and_env_ramp(tmp_path: Path, tiny) -> None:
    """Stage 2 starts from stage 1's best weights (not log_std), clips at warmup_clip_range during the warm-up,
    and moves every changed [env] value linearly from the stage-1 value to the stage-2 value."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from dinosim.training.curriculum import RunHooks

    seen: dict[str, Any] = {"ramp": [], "clip": []}
    budget = 1024

    class Probe(BaseCallback):
        def _on_training_start(self) -> None:
            if self.num_timesteps == budget:  # stage 2 begins
                best = PPO.load(str(tmp_path / "run" / "stage1" / "best" / "model.zip"), device="cpu")
                mine, theirs = self.model.policy.state_dict(), best.policy.state_dict()
                seen["same"] = all(torch.equal(mine[k], theirs[k]) for k in theirs if k != "log_std")
                seen["log_std"] = float(mine["log_std"].mean())

        def _on_step(self) -> bool:
            if self.num_timesteps > budget:
                env = self.training_env.unwrapped.envs[0].unwrapped
                seen["ramp"].append((self.num_timesteps - budget, env.alive_bonus, env.fall_penalty))
            return True

        def _on_rollout_end(self) -> None:
            if self.num_timesteps > budget:
                progress = 1.0 - self.num_timesteps / self.model._total_timesteps
                seen["clip"].append((self.num_timesteps - budget, self.model.clip_range(progress)))

    overrides = ["1.env.alive_bonus=2.0", "2.env.alive_bonus=1.0", "1.env.fall_penalty=-20.0",
                 "2.env.fall_penalty=-60.0", "2.curriculum.ramp_timesteps=512", "2.curriculum.warmup_timesteps=256",
                 "2.curriculum.warmup_clip_range=0.05", "2.ppo.clip_range=0.2", "2.ppo.policy_kwargs.log_std_init=-2.0"]
    code, summary = tiny.run(tmp_path / "run", [1, 2], overrides, budget, hooks=RunHooks(log_stdout=False,
                                                                                         extra_callbacks=[Probe()]))
    assert code == 0
    assert seen["same"] is True and seen["log_std"] == pytest.approx(-2.0)
    assert summary["stages"]["2"]["ramped"]["alive_bonus"] == [2.0, 1.0]
    for step, alive, fall in seen["ramp"]:
        expected = min(step, 512) / 512
        # updated every ramp/100 steps: the value lags the exact line by at most one update
        assert 2.0 - alive == pytest.approx(expected, abs=0.011 + 2 / 512)
        assert (-20.0 - fall) / 40.0 == pytest.approx(expected, abs=0.011 + 2 / 512)
    assert len(seen["ramp"]) > 100 and seen["ramp"][-1][1:] == (1.0, -60.0)
    assert any(s < 256 for s, _ in seen["clip"]) and any(s >= 256 for s, _ in seen["clip"])
    assert [c for s, c in seen["clip"] if s < 256] == [0.05] * len([s for s, _ in seen["clip"] if s < 256])
    assert all(c == pytest.approx(0.2) for s, c in seen["clip"] if s >= 256)


def test_critic_warmup_trains_only_the_value_function_and_obs_count_is_capped(tmp_path: Path, tiny) -> None:
    """A warm-started stage with critic_warmup_timesteps: the actor (policy net, action net, log_std) keeps the
    stage-1 weights until the warm-up ends, the value net learns; the carried-over obs statistics weigh at most
    obs_norm_count samples."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from dinosim.training.curriculum import RunHooks

    budget, seen = 512, {}

    class Probe(BaseCallback):
        def _on_training_start(self) -> None:
            if self.num_timesteps == budget:
                seen["start"] = {k: v.clone() for k, v in self.model.policy.state_dict().items()}
                seen["count"] = float(self.training_env.obs_rms.count)

        def _on_rollout_start(self) -> None:
            if self.num_timesteps == budget + 384:  # three updates of 128 steps into stage 2, inside the warm-up
                seen["warm"] = {k: v.clone() for k, v in self.model.policy.state_dict().items()}

        def _on_step(self) -> bool:
            return True

    overrides = ["2.curriculum.critic_warmup_timesteps=300", "2.curriculum.obs_norm_count=100",
                 "2.curriculum.warmup_timesteps=0"]
    code, _ = tiny.run(tmp_path / "run", [1, 2], overrides, budget,
                             hooks=RunHooks(log_stdout=False, extra_callbacks=[Probe()]))
    assert code == 0
    start, warm = seen["start"], seen["warm"]
    actor = [k for k in start if k.startswith(("mlp_extractor.policy_net", "action_net")) or k == "log_std"]
    critic = [k for k in start if k.startswith(("mlp_extractor.value_net", "value_net"))]
    assert actor and critic
    assert all(torch.equal(start[k], warm[k]) for k in actor)
    assert any(not torch.equal(start[k], warm[k]) for k in critic)
    final = PPO.load(str(tmp_path / "run" / "stage2" / "model.zip"), device="cpu").policy.state_dict()
    assert any(not torch.equal(start[k], final[k]) for k in actor)  # after the warm-up the actor trains
    assert seen["count"] <= 100 + 2  # capped, plus the first reset's observations


class NanAfter(gym.Wrapper):
    """A real env whose observations turn NaN after ``n`` steps (stands for a diverging simulation)."""

    def __init__(self, env: gym.Env, n: int) -> None:
        super().__init__(env)
        self.n, self.count = n, 0

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        if self.count > self.n:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


def test_nan_stops_with_stage_and_step_and_keeps_the_last_checkpoint(tmp_path: Path, tiny) -> None:
    from stable_baselines3 import PPO

    from dinosim.envs import make_env
    from dinosim.training.curriculum import RunHooks

    def factory(species: str, env_kwargs: dict, seed: Optional[int]) -> gym.Env:
        return NanAfter(make_env(species, env_kwargs, seed=seed), 300)

    hooks = RunHooks(log_stdout=False, env_factory=factory)
    code, summary = tiny.run(tmp_path / "run", [1], ["curriculum.eval_freq=4096"], 4096, hooks=hooks)  # no eval
    assert code == 1 and summary["status"] == "failed"
    assert "stage 1, step" in summary["message"] and "NaN in observations" in summary["message"]
    step = int(summary["message"].split("step ")[1].split(":")[0])
    assert 2 * 300 <= step <= 2 * 300 + tiny.n_envs
    checkpoints = sorted((tmp_path / "run" / "stage1" / "checkpoints").glob("*_model.zip"))
    assert checkpoints, "the checkpoint at step 256 must stay"
    model = PPO.load(str(checkpoints[-1]), device="cpu")
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.policy.parameters())
    from dinosim.tracking.diagnose import diagnose  # `dinosim diagnose` names the stop, with overrides to try

    found = {s.id: s for s in diagnose([tmp_path / "run"]).symptoms()}
    assert found["algorithm.nan_guard"].confidence == 1.0 and found["algorithm.nan_guard"].overrides


@pytest.mark.parametrize("algorithm", ["sac", "tqc", "crossq"])
def test_off_policy_algorithms_train_and_warm_start(tmp_path: Path, algorithm: str, tiny) -> None:
    from dinosim.training.curriculum import RunHooks
    from dinosim.training.runner import run

    overrides = [o for o in tiny.overrides if not o.startswith(("ppo.", "curriculum.critic"))] + [
        "sac.buffer_size=2000", "sac.learning_starts=64", "sac.batch_size=32", "sac.train_freq=8",
                        "sac.gradient_steps=1", "sac.policy_kwargs.net_arch=[16,16]", "curriculum.eval_freq=128"]
    config = resolve_run("velociraptor", algorithm, [1, 2], overrides, n_envs=tiny.n_envs)
    request = RunRequest(command="curriculum", config=config, timesteps=256, run_dir=tmp_path / "run",
                         progress=False)
    assert run(request, hooks=RunHooks(log_stdout=False)) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["global_step"] == 512 and summary["stages"]["2"]["warm_start"].endswith("best/model.zip")
    from dinosim.training.builders import algorithm_class

    model = algorithm_class(algorithm).load(str(tmp_path / "run" / "stage2" / "model.zip"), device="cpu")
    assert model.num_timesteps == 512


def test_a_stage_gated_on_the_stochastic_policy_is_evaluated_stochastically_by_default(tmp_path: Path, tiny,
                                                                                      dinosim_main) -> None:
    """``curriculum.eval_deterministic = false``: the stage's evaluations sampled the actions, so `dinosim evaluate`
    does too unless told otherwise, with noise seeded by the episode seeds (the same report twice)."""
    run_dir = tmp_path / "run"
    code, _ = tiny.run(run_dir, [1], ["curriculum.eval_deterministic=false"], 512)
    assert code == 0
    flags: list[list[str]] = [[], [], ["--deterministic"]]
    reports = [dinosim_main("evaluate", str(run_dir), "--episodes", "2", *flag) for flag in flags]
    assert all(code == 0 for code, _, _ in reports), reports
    stochastic, again, deterministic = (out for _, out, _ in reports)
    assert "(stochastic)" in stochastic and "(deterministic)" in deterministic
    assert stochastic == again
