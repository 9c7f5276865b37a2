"""Background evaluation: the evaluation process gives the inline numbers, and a killed one costs nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dinosim.config.settings import CurriculumSettings
from dinosim.runfolder import (
    EVAL_COUNT,
    EVAL_TIME_FIELDS,
    EVAL_TIME_PREFIX,
    EVAL_WAIT,
    EVAL_WALL,
    METRICS_FILE,
    SCREEN_KIND,
    STAGE_EVAL_SHARE_KEY,
    STAGE_EVAL_TIME_KEY,
)
from dinosim.training.eval_plan import EvalPlan, play_plan, screen_passed
from dinosim.training.evaluation import model_policy, obs_normalizer

ENV = {"task": "strike", "max_episode_steps": 40, "strike_bonus": 10.0}
SNAPSHOT_SEED = 0  # seeds the reset and the sampled actions of _snapshot_model
# stage 1 for 2048 steps, evaluated every 256: the gate is unreachable, so both modes evaluate the same snapshots
RUN = ["train", "--species", "velociraptor", "--stage", "1", "--timesteps", "2048", "--n-envs", "2", "--no-progress"]


def _snapshot_model(net_arch: tuple[int, ...] = (16, 16)):
    """An untrained PPO policy and a VecNormalize whose statistics have seen a few steps, the same every time (the
    reset and the sampled actions are seeded: unseeded, an untrained policy stood through some screenings)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from dinosim.envs import make_env

    venv = VecNormalize(DummyVecEnv([lambda: make_env("velociraptor", dict(ENV))]), gamma=0.99)
    venv.seed(SNAPSHOT_SEED)
    venv.action_space.seed(SNAPSHOT_SEED)
    venv.reset()
    for _ in range(20):
        venv.step([venv.action_space.sample()])
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, policy_kwargs={"net_arch": list(net_arch)}, seed=3,
                device="cpu")
    return model, venv


def test_auto_evaluates_in_the_background_on_2_cpus_for_long_stages_with_envs_in_the_training_process() -> None:
    from dinosim.config.settings import BACKGROUND_AUTO_MIN_STEPS

    auto = CurriculumSettings()
    assert auto.background_eval == "auto"
    long, short = 4_000_000, BACKGROUND_AUTO_MIN_STEPS - 1
    assert auto.evaluates_in_background(long, 2, "dummy")
    assert auto.evaluates_in_background(long, 2, "threads")  # the default: envs in the training process too
    assert auto.evaluates_in_background(BACKGROUND_AUTO_MIN_STEPS, 8, "dummy")
    assert not auto.evaluates_in_background(long, 1, "dummy")  # nothing to overlap with
    assert not auto.evaluates_in_background(long, 2, "subproc")  # the workers use the other cores
    assert not auto.evaluates_in_background(short, 2, "dummy")  # too few evaluations to repay the start-up
    for flag in (True, False):
        chosen = CurriculumSettings(background_eval=flag)
        assert all(chosen.evaluates_in_background(b, c, v) is flag
                   for b in (long, short) for c in (1, 2) for v in ("dummy", "threads", "subproc"))


def test_a_snapshot_played_from_its_bytes_gives_the_inline_numbers() -> None:
    import torch

    from dinosim.envs import make_env
    from dinosim.run_integrity import model_bytes, vecnormalize_bytes
    from dinosim.training.eval_worker import SnapshotJob, play_snapshot

    model, venv = _snapshot_model()
    cur = CurriculumSettings(eval_episodes=3, gate_episodes=2, min_avg_reward=-1e9)
    plan = EvalPlan(step=4096, mark=4096, run_seed=5, first_seed=7, gate_if_pass=True, curriculum=cur)
    envs = [make_env("velociraptor", dict(ENV)) for _ in range(2)]
    inline = play_plan(plan, model_policy(model), envs, obs_normalizer(venv))
    job = SnapshotJob(plan, model_bytes(model), vecnormalize_bytes(venv))
    rng_before = torch.get_rng_state()
    replayed = play_snapshot(job, [make_env("velociraptor", dict(ENV)) for _ in range(2)])  # same batch: same BLAS
    assert inline.gate is not None and replayed.gate is not None  # the screening passed: the gate was played
    for a, b in ((inline.screen, replayed.screen), (inline.gate, replayed.gate)):
        assert (a.returns, a.lengths, a.components, a.successes) == (b.returns, b.lengths, b.components, b.successes)
    assert torch.equal(torch.get_rng_state(), rng_before)  # loading a model in the training process reseeds nothing
    assert inline.next_seed == replayed.next_seed == 7 + 3 + 2
    assert list(plan.screen_seeds) == list(range(plan.screen_seeds.start, plan.gate_seeds.start))


def test_stochastic_evaluations_sample_seeded_noise_inline_and_from_the_snapshot_alike() -> None:
    """``eval_deterministic = false``: the sampled actions come from torch's generator seeded with each evaluation's
    first episode seed, so a replay (inline or from the snapshot's bytes) gives the same numbers, the training
    process's generator is left where it was, and the numbers are not the mean action's."""
    import torch

    from dinosim.envs import make_env
    from dinosim.run_integrity import model_bytes, vecnormalize_bytes
    from dinosim.training.eval_worker import SnapshotJob, play_snapshot

    model, venv = _snapshot_model()
    cur = CurriculumSettings(eval_episodes=3, gate_episodes=2, min_avg_reward=-1e9, eval_deterministic=False)
    plan = EvalPlan(step=4096, mark=4096, run_seed=5, first_seed=7, gate_if_pass=True, curriculum=cur)

    def envs() -> list:
        return [make_env("velociraptor", dict(ENV)) for _ in range(2)]

    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    first = play_plan(plan, model_policy(model, deterministic=False), envs(), obs_normalizer(venv))
    assert torch.equal(torch.get_rng_state(), rng_before)  # training's random stream is untouched
    torch.manual_seed(456)  # another global state: the evaluation does not depend on it
    again = play_plan(plan, model_policy(model, deterministic=False), envs(), obs_normalizer(venv))
    replayed = play_snapshot(SnapshotJob(plan, model_bytes(model), vecnormalize_bytes(venv)), envs())
    mean_action = play_plan(dataclasses.replace(plan, curriculum=CurriculumSettings(
        eval_episodes=3, gate_episodes=2, min_avg_reward=-1e9)), model_policy(model), envs(), obs_normalizer(venv))
    assert first.gate is not None and again.gate is not None and replayed.gate is not None
    for other in (again, replayed):
        for a, b in ((first.screen, other.screen), (first.gate, other.gate)):
            assert (a.returns, a.lengths, a.components) == (b.returns, b.lengths, b.components)
    assert first.screen.returns != mean_action.screen.returns


@pytest.mark.parametrize("algorithm", ["ppo", "sac", "tqc", "crossq"])
def test_the_policy_loaded_without_optimizers_acts_like_the_loaded_model(algorithm: str) -> None:
    import io

    import numpy as np
    import torch

    from dinosim.envs import make_env
    from dinosim.run_integrity import model_bytes
    from dinosim.training.builders import algorithm_class
    from dinosim.training.eval_worker import load_policy

    env = make_env("velociraptor", dict(ENV))
    kwargs = {"n_steps": 64, "batch_size": 64} if algorithm == "ppo" else {"learning_starts": 0}
    model = algorithm_class(algorithm)("MlpPolicy", env, policy_kwargs={"net_arch": [16, 16]}, seed=1,
                                       device="cpu", **kwargs)
    data = model_bytes(model)
    obs = np.stack([env.observation_space.sample() for _ in range(5)])
    policy = load_policy(data)
    for deterministic in (True, False):
        reference = algorithm_class(algorithm).load(io.BytesIO(data), device="cpu")
        torch.manual_seed(0)
        want = reference.predict(obs, deterministic=deterministic)[0]
        torch.manual_seed(0)
        assert np.array_equal(policy.predict(obs, deterministic=deterministic)[0], want)
    assert not any(isinstance(getattr(m, "optimizer", None), torch.optim.Optimizer) for m in policy.modules())


def test_submit_returns_while_the_evaluation_process_starts() -> None:
    """A [256, 256] snapshot (~680 kB, more than the pipe holds) is handed over at once, not when the process has
    imported torch; the answer is the inline one."""
    from dinosim.envs import make_env
    from dinosim.run_integrity import model_bytes, vecnormalize_bytes
    from dinosim.training.builders import default_env_factory
    from dinosim.training.eval_worker import BackgroundEvaluator, EnvSpec, SnapshotJob

    model, venv = _snapshot_model((256, 256))
    cur = CurriculumSettings(eval_episodes=2, gate_episodes=1, min_avg_reward=1e9)
    plan = EvalPlan(step=64, mark=64, run_seed=1, first_seed=0, gate_if_pass=False, curriculum=cur)
    job = SnapshotJob(plan, model_bytes(model), vecnormalize_bytes(venv))
    assert len(job.model_zip) > 300_000
    evaluator = BackgroundEvaluator(EnvSpec(default_env_factory, "velociraptor", dict(ENV), 2))
    try:
        start = time.perf_counter()
        evaluator.submit(job)
        took = time.perf_counter() - start
        outcome = evaluator.wait()
    finally:
        evaluator.close()
    assert took < 1.0, f"submit blocked {took:.1f} s"
    inline = play_plan(plan, model_policy(model), [make_env("velociraptor", dict(ENV)) for _ in range(2)],
                       obs_normalizer(venv))
    assert outcome is not None and outcome.screen.returns == inline.screen.returns
    assert not evaluator.process.is_alive()


def test_evaluations_that_stop_early_give_the_same_numbers_inline_and_in_the_background_for_1_and_4_envs() -> None:
    """The same snapshot and seeds: the same recorded numbers inline and in the evaluation process (4 envs each),
    the same verdicts, stops and episodes with 1 env (returns equal up to rounding: a batch of 4 observations goes
    through other BLAS kernels than a batch of 1; tests/test_training_eval_stop.py shows exact equality for a
    row-wise policy); a stopped screening holds the first episodes of the full one, with its verdict."""
    from dinosim.envs import make_env
    from dinosim.run_integrity import model_bytes, vecnormalize_bytes
    from dinosim.training.builders import default_env_factory
    from dinosim.training.eval_worker import BackgroundEvaluator, EnvSpec, SnapshotJob

    model, venv = _snapshot_model()
    cur = CurriculumSettings(eval_episodes=6, gate_episodes=12, min_avg_reward=-1e9, min_avg_episode_length=39.5)
    plans = [EvalPlan(step=64, mark=64, run_seed=2, first_seed=first, gate_if_pass=True, curriculum=cur)
             for first in (0, 40)]
    passing = dataclasses.replace(cur, min_avg_episode_length=0.0)  # its screening passes: the gate is played
    plans.append(EvalPlan(step=64, mark=64, run_seed=2, first_seed=80, gate_if_pass=True, curriculum=passing))

    def inline(plan: EvalPlan, n_envs: int):
        envs = [make_env("velociraptor", dict(ENV)) for _ in range(n_envs)]
        return play_plan(plan, model_policy(model), envs, obs_normalizer(venv))

    outcomes = {n: [inline(plan, n) for plan in plans] for n in (1, 4)}
    evaluator = BackgroundEvaluator(EnvSpec(default_env_factory, "velociraptor", dict(ENV), 4))
    try:
        outcomes["background"], gate_started = [], []
        for plan in plans:
            evaluator.submit(SnapshotJob(plan, model_bytes(model), vecnormalize_bytes(venv)))
            outcomes["background"].append(evaluator.wait())
            gate_started.append(evaluator.gate_started)
    finally:
        evaluator.close()
    # the process announced each gate evaluation before its outcome (training waits for a gate evaluation)
    assert gate_started == [o.gate is not None for o in outcomes["background"]] == [False, False, True]

    def numbers(o):
        played = [o.screen] + ([o.gate] if o.gate is not None else [])
        return [(r.stopped, r.returns, r.lengths, r.successes, r.components) for r in played], o.next_seed

    assert [numbers(o) for o in outcomes[4]] == [numbers(o) for o in outcomes["background"]]
    for four, one in zip(outcomes[4], outcomes[1]):
        (played4, next4), (played1, next1) = numbers(four), numbers(one)
        assert next4 == next1 and len(played4) == len(played1)
        for a, b in zip(played4, played1):
            assert (a[0], a[2], a[3]) == (b[0], b[2], b[3]) and a[1] == pytest.approx(b[1], rel=1e-6)
    stopped = outcomes[1][0].screen
    assert stopped.stopped == ("length",)  # the untrained policy falls: its screening stopped early
    full = inline(dataclasses.replace(plans[0], curriculum=dataclasses.replace(cur, eval_early_stop=False)), 1).screen
    k = len(stopped.returns)
    assert k < len(full.returns) and stopped.returns == full.returns[:k] and stopped.lengths == full.lengths[:k]
    assert not screen_passed(stopped, cur) and not screen_passed(full, cur)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def _untimed(records: list[dict]) -> list[dict]:
    """The records without how long each evaluation took (the only part that differs between two runs)."""
    return [{k: v for k, v in r.items() if not k.startswith(EVAL_TIME_PREFIX)} for r in records]


def _worker_pid(parent: int) -> int | None:
    """The pid of ``parent``'s spawned multiprocessing child (not its resource tracker), if running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            return int(entry.name)
    return None


def _popen(root: Path, overrides: list[str], run_dir: Path, background: bool) -> subprocess.Popen:
    """The tiny tracking runs' stage-1 overrides with an unreachable gate, in background or inline mode."""
    overrides = [*(o for o in overrides if not o.startswith("2.")), "1.curriculum.min_avg_reward=1000.0"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "dinosim", *RUN, "--run-dir", str(run_dir), "--override", *overrides,
           f"curriculum.background_eval={str(background).lower()}"]
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the evaluation process through /proc")
def test_killing_the_evaluation_process_changes_no_record_and_training_ends_cleanly(
        tmp_path: Path, checkout_root: Path, tiny_overrides: list[str]) -> None:
    background = _popen(checkout_root, tiny_overrides, tmp_path / "background", True)
    inline = _popen(checkout_root, tiny_overrides, tmp_path / "inline", False)
    metrics = tmp_path / "background" / METRICS_FILE
    killed = None
    deadline = time.time() + 300
    while killed is None and background.poll() is None and time.time() < deadline:
        pid = _worker_pid(background.pid)
        if pid is not None and metrics.exists() and metrics.read_text().strip():
            os.kill(pid, signal.SIGKILL)  # after it answered once: the next evaluation is in flight or due
            killed = pid
        time.sleep(0.02)
    out, err = background.communicate(timeout=300)
    assert killed is not None, f"the run ended before its evaluation process could be killed:\n{err[-2000:]}"
    assert background.returncode == 0, err[-3000:]
    died = [line for line in err.splitlines() if "background evaluation process died" in line]
    assert len(died) == 1 and died[0].startswith("warning: stage 1:") and "evaluating inline" in died[0], err
    _, inline_err = inline.communicate(timeout=300)
    assert inline.returncode == 0, inline_err[-3000:]
    got, want = _records(tmp_path / "background"), _records(tmp_path / "inline")
    assert [r["global_step"] for r in got] == list(range(256, 2049, 256))
    assert _untimed(got) == _untimed(want)  # same snapshots, same seeds: the same numbers, whichever process played
    assert all(r[EVAL_TIME_PREFIX + EVAL_WALL] > 0 for r in got + want)  # every one timed, the replayed one too
    summary = json.loads((tmp_path / "background" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["stages"]["1"]["evaluations"] == 8


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _has_loaded_mujoco(pid: int) -> bool:
    """Whether process ``pid`` has mapped MuJoCo's library (the evaluation process's last import, for its envs)."""
    try:
        return "mujoco" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


# An evaluation of 10,000 episodes (~400,000 env steps: minutes) falls due after the first rollout, long before the
# evaluation process has started: once that process has built its envs it is playing it.
LONG_EVAL = ["curriculum.eval_freq=128", "curriculum.eval_episodes=10000"]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches the evaluation process through /proc")
@pytest.mark.parametrize("moment", ["starting", "evaluating"])
def test_killing_the_training_process_ends_its_evaluation_process(
        tmp_path: Path, checkout_root: Path, tiny_overrides: list[str], moment: str) -> None:
    """kill -9 of the trainer while its evaluation process starts or evaluates: that process ends within seconds
    instead of finishing its evaluation for nobody."""
    trainer = _popen(checkout_root, [*tiny_overrides, *LONG_EVAL], tmp_path / "run", True)
    worker, ready_at, deadline = None, None, time.time() + 600
    while trainer.poll() is None and time.time() < deadline:
        worker = worker or _worker_pid(trainer.pid)
        if worker is not None and moment == "starting":
            break
        if worker is not None and ready_at is None and _has_loaded_mujoco(worker):
            ready_at = time.time()
        if ready_at is not None and time.time() - ready_at > 3:
            break
        time.sleep(0.02)
    assert worker is not None and trainer.poll() is None, trainer.communicate()[1][-3000:]
    assert not _gone(worker)
    trainer.kill()
    trainer.wait(timeout=60)  # not communicate(): an orphan would hold the trainer's output pipes open
    killed_at = time.time()
    while not _gone(worker) and time.time() - killed_at < 10:
        time.sleep(0.05)
    alive = not _gone(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    trainer.communicate(timeout=60)
    assert not alive, f"the evaluation process ({moment}) outlived its killed trainer by 10 s"


def test_a_background_run_interrupted_by_sigterm_resumes_and_finishes(
        tmp_path: Path, tiny, dinosim_popen, dinosim_main, wait_for_file) -> None:
    """SIGTERM while evaluations run in the background: checkpointed like Ctrl-C, no evaluation process left,
    and `resume` finishes the stage with every evaluation recorded once, in step order."""
    run_dir = tmp_path / "run"
    overrides = [*tiny.overrides, "curriculum.background_eval=true"]
    proc = dinosim_popen("train", "--species", "velociraptor", "--stage", "1", "--timesteps", "1024", "--n-envs",
                         str(tiny.n_envs), "--run-dir", str(run_dir), "--no-progress", "--override", *overrides,
                         env={"WANDB_MODE": "disabled"})
    wait_for_file(run_dir / "stage1" / "checkpoints", "step_*.json", proc, timeout=600)
    worker = _worker_pid(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, newest = tiny.assert_interrupted(proc, signal.SIGTERM, run_dir)
    assert worker is None or _gone(worker)
    code, out, err = dinosim_main("resume", str(run_dir), "--no-progress")  # in this process: no import cost
    assert code == 0, err[-3000:]
    assert f"resumed from the checkpoint at step {newest}" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["stages"]["1"]["status"] == "finished"
    steps = [r["global_step"] for r in _records(run_dir)]
    assert steps == sorted(set(steps)) and steps[-1] == 1024, steps
    assert summary["stages"]["1"]["evaluations"] == len(steps)
    tiny.assert_every_file_loads(run_dir)
    # The first evaluation's answer was awaited by the next checkpoint while the evaluation process still started:
    # training's wait is recorded apart from (and here longer than) the evaluation process's play.
    records, state = _records(run_dir), summary["stages"]["1"]
    first = records[0]
    assert first[EVAL_TIME_PREFIX + EVAL_WAIT] > first[EVAL_TIME_PREFIX + EVAL_WALL] > 0, first
    # resume kept the totals of the evaluations before SIGTERM: they still add up to every record
    totals = state[STAGE_EVAL_TIME_KEY][SCREEN_KIND]
    assert totals[EVAL_COUNT] == len(records)
    for name in EVAL_TIME_FIELDS:
        assert totals[name] == pytest.approx(sum(r[EVAL_TIME_PREFIX + name] for r in records)), name
    waited = sum(r[EVAL_TIME_PREFIX + EVAL_WAIT] for r in records)
    assert state[STAGE_EVAL_SHARE_KEY] == pytest.approx(waited / state["wall_time"])
    assert 0 < state[STAGE_EVAL_SHARE_KEY] < 1


def _policy_tensors(model_zip: Path) -> dict:
    """The policy's parameters saved in a model zip (the weights only: the zip also holds counters and buffers)."""
    import io
    import zipfile

    import torch

    with zipfile.ZipFile(model_zip) as archive:
        return torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu")


def _same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_a_stage_ends_on_its_passing_snapshot_and_the_curriculum_trains_alike_in_both_modes(
        tmp_path: Path, tiny) -> None:
    """Stage 1's gate passes on its first screening (step 128); in the background training runs on while the
    evaluation process starts and plays, yet the stage's result is the snapshot that passed, as inline, so stage 2
    (inline in both runs, its gate unreachable) starts from the same weights, a few steps later, and trains to the
    same weights."""
    overrides = ["1.curriculum.min_avg_reward=-1e9", "curriculum.eval_freq=128", "1.curriculum.required_consecutive=1",
                 "curriculum.gate_episodes=4", "2.curriculum.background_eval=false"]
    runs = {}
    for mode in ("false", "true"):
        code, summary = tiny.run(tmp_path / mode, [1, 2], [*overrides, f"1.curriculum.background_eval={mode}"], 512)
        assert code == 0 and summary["status"] == "finished"
        runs[mode] = summary["stages"]
    for mode, stages in runs.items():
        stage1 = tmp_path / mode / "stage1"
        final = json.loads((stage1 / "final.json").read_text())
        assert stages["1"]["gate_passed_at"] == final["step"] == 128 == stages["1"]["start_step"] + 128
        assert _same_tensors(_policy_tensors(stage1 / "model.zip"), _policy_tensors(stage1 / "best" / "model.zip"))
        assert not stages["2"]["gate_passed"] and stages["2"]["timesteps_used"] == 512
    inline, background = (tmp_path / "false", tmp_path / "true")
    assert [runs[m][s]["evaluated_in_background"] for m in ("false", "true") for s in ("1", "2")] == [
        False, False, True, False]
    assert runs["true"]["1"]["timesteps_used"] > 128  # ran ahead of the passing snapshot (during the screening)
    assert json.loads((background / "stage1" / "final.json").read_text())["trained_to"] > 128
    for stage in ("stage1", "stage2"):
        assert _same_tensors(_policy_tensors(inline / stage / "model.zip"),
                             _policy_tensors(background / stage / "model.zip")), stage


def _stage_context(tmp_path: Path, state, curriculum: CurriculumSettings):
    """A stage-1 context of a velociraptor `train` run in ``tmp_path`` without envs: enough for the gate's
    bookkeeping."""
    from dinosim.training.callbacks import StageContext
    from dinosim.training.state import RunSummary

    return StageContext(stage=1, run_dir=tmp_path, stage_dir=tmp_path / "stage1",
                        summary=RunSummary("train", "velociraptor", "ppo", {1: state}), state=state,
                        curriculum=curriculum, train_env=None, eval_envs=[])


def test_a_gate_passed_before_a_resume_gives_the_snapshot_in_best_as_the_result(tmp_path: Path) -> None:
    """Killed between a checkpoint that recorded the passed gate and the stage's final save, the resumed stage
    trains no more; its result is ``best/`` when that holds the passing snapshot, intact (else the model)."""
    from dinosim.run_integrity import save_best_pair
    from dinosim.training.eval_gate import EvalGateCallback
    from dinosim.training.state import StageState

    state = StageState(stage=1, status="running", gate_passed=True, gate_passed_at=300)
    ctx = _stage_context(tmp_path, state, CurriculumSettings())
    gate_cb = EvalGateCallback(ctx)
    assert gate_cb.result() is None  # no best/ yet
    save_best_pair(ctx.stage_dir, b"model", b"stats", {"global_step": 300})
    assert gate_cb.result() == (300, b"model", b"stats")
    state.gate_passed_at = 400  # best/ holds another evaluation
    assert gate_cb.result() is None
    state.gate_passed_at = 300
    (ctx.stage_dir / "best" / "model.zip").write_bytes(b"damaged")
    assert gate_cb.result() is None


def test_training_waits_for_a_gate_evaluation_once_the_evaluation_process_says_it_began(tmp_path: Path) -> None:
    """A passing gate ends the stage on its snapshot, so steps trained past it would be thrown away: once the
    evaluation process reports that the job's screening passed and its gate evaluation began, the next training
    step waits for the outcome; before that, it only polls."""
    from dinosim.training.eval_gate import EvalGateCallback
    from dinosim.training.state import StageState

    class Waited(Exception):
        pass

    class Evaluator:  # the BackgroundEvaluator contract: poll (None while running), wait, gate_started
        gate_started = False

        def poll(self) -> None:
            return None

        def wait(self) -> None:
            raise Waited

    state = StageState(stage=1, status="running", start_step=0)
    evaluator = Evaluator()
    gate_cb = EvalGateCallback(_stage_context(tmp_path, state, CurriculumSettings(eval_freq=1000)),
                               evaluator)  # type: ignore[arg-type]
    gate_cb.num_timesteps = 10
    job = SimpleNamespace(plan=SimpleNamespace(step=0, mark=0))  # a job submitted at step 0
    gate_cb._in_flight = (job, lambda: (b"", b""))  # type: ignore[assignment]
    assert gate_cb._on_step() is True  # the screening runs: training goes on
    evaluator.gate_started = True
    with pytest.raises(Waited):
        gate_cb._on_step()


def test_the_snapshot_that_passed_the_gate_is_best_even_when_a_screening_ranked_higher(tmp_path: Path) -> None:
    """A 20-episode screening can have a higher return bound than the 50-episode gate evaluation that later passes
    (seen in a stochastic balance stage: its own gate evaluation failed on the length); ``best/``, which the next
    stage starts from and `evaluate` plays, must still be the snapshot that passed."""
    from dinosim.training.eval_gate import EvalGateCallback
    from dinosim.training.eval_plan import EvalOutcome, EvalTiming
    from dinosim.training.evaluation import EvalResult
    from dinosim.training.state import StageState

    cur = CurriculumSettings(min_avg_reward=500.0, min_avg_episode_length=450.0, eval_episodes=4, gate_episodes=6)
    state = StageState(stage=1, status="running", start_step=0)
    gate_cb = EvalGateCallback(_stage_context(tmp_path, state, cur))
    gate_cb.init_callback(SimpleNamespace(logger=SimpleNamespace(output_formats=[])))  # type: ignore[arg-type]
    timing = EvalTiming(wall_s=1.0, cpu_s=1.0, env_steps=100, ended=0.0)

    def result(returns: list[float], lengths: list[int]) -> EvalResult:
        return EvalResult(returns=returns, lengths=lengths, successes=[None] * len(returns),
                          components=[{} for _ in returns])

    def apply(step: int, screen: EvalResult, gate: EvalResult) -> None:
        plan = EvalPlan(step=step, mark=step, run_seed=0, first_seed=state.eval_seed_next, gate_if_pass=True,
                        curriculum=cur)
        gate_cb._apply(EvalOutcome(plan, screen, gate, timing, timing), lambda: (f"m{step}".encode(), b"v"))

    # step 600: a tight screening (return bound ~694), then its gate evaluation fails on the length
    failing_gate = result([700.0, 700.0, 700.0, 100.0, 100.0, 700.0], [500] * 3 + [60] * 2 + [500])
    apply(600, result([700.0] * 4, [500] * 4), failing_gate)
    assert not state.gate_passed and (tmp_path / "stage1" / "best" / "model.zip").read_bytes() == b"m600"
    # step 675: its gate evaluation passes with a lower return bound than step 600's screening
    passing_gate = result([600.0, 640.0, 620.0, 610.0, 650.0, 630.0], [500] * 6)
    apply(675, result([620.0, 640.0, 600.0, 660.0], [500] * 4), passing_gate)
    assert state.gate_passed and state.gate_passed_at == 675
    assert cur.rank(result([700.0] * 4, [500] * 4).stats()) > cur.rank(passing_gate.stats())
    assert (tmp_path / "stage1" / "best" / "model.zip").read_bytes() == b"m675"
    assert gate_cb.result() == (675, b"m675", b"v")
