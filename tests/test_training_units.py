"""Unit tests of the training code that need no training: schedules, ramps, gates,
evaluation statistics and the bad-input checks of the runner (which must not import torch)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from dinosim.config.settings import CurriculumSettings
from dinosim.errors import DinosimError
from dinosim.training.schedules import StageClock, StageSchedule, changed_numeric_weights, ramp_typed, ramp_value
from dinosim.training.state import RunSummary, StageState


# -- schedules -----------------------------------------------------------------------------------------------------
def sb3_progress(global_step: int, clock: StageClock) -> float:
    """What SB3 passes when learn() was called so that _total_timesteps == start + budget."""
    return 1.0 - global_step / (clock.start + clock.budget)


@pytest.mark.parametrize("start", [0, 12_345, 1_000_000])
def test_stage_schedule_decays_over_its_own_stage(start: int) -> None:
    clock = StageClock(start=start, budget=10_000)
    lin = StageSchedule(clock, 3e-4, 1e-4, "linear")
    cos = StageSchedule(clock, 3e-4, 1e-4, "cosine")
    assert lin(sb3_progress(start, clock)) == pytest.approx(3e-4)
    assert lin(sb3_progress(start + 5_000, clock)) == pytest.approx(2e-4)
    assert lin(sb3_progress(start + 10_000, clock)) == pytest.approx(1e-4)
    assert cos(sb3_progress(start + 5_000, clock)) == pytest.approx(2e-4)
    assert cos(sb3_progress(start + 2_500, clock)) == pytest.approx(1e-4 + 2e-4 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert StageSchedule(clock, 0.2)(sb3_progress(start + 7_000, clock)) == 0.2  # no end: constant


def test_warmup_value_then_schedule() -> None:
    clock = StageClock(start=4096, budget=8192)
    clip = StageSchedule(clock, 0.2, 0.1, "linear", warmup_steps=1024, warmup_value=0.05)
    assert clip(sb3_progress(4096, clock)) == 0.05
    assert clip(sb3_progress(4096 + 1023, clock)) == 0.05
    assert clip(sb3_progress(4096 + 1024, clock)) == pytest.approx(0.2 - 0.1 * 1024 / 8192)


def test_a_decay_over_its_own_steps_then_held_whatever_the_budget() -> None:
    """``lr_decay_timesteps``: the rate at each stage step is that of a stage whose budget is the decay's length,
    and stays at the end value after it; the config key reaches the model's schedule."""
    from dinosim.config.resolve import resolve_run
    from dinosim.training.builders import stage_schedules

    short, long = StageClock(start=5_000, budget=1_200), StageClock(start=5_000, budget=8_000)
    over_budget = StageSchedule(short, 5e-4, 5e-5, "linear")
    own_steps = StageSchedule(long, 5e-4, 5e-5, "linear", decay_steps=1_200)
    for done in (0, 300, 600, 1_199, 1_200):
        expected = over_budget(sb3_progress(5_000 + done, short))
        assert own_steps(sb3_progress(5_000 + done, long)) == pytest.approx(expected)
    assert own_steps(sb3_progress(5_000 + 4_000, long)) == pytest.approx(5e-5)  # held after the decay
    assert StageSchedule(long, 5e-4, 5e-5)(sb3_progress(5_000 + 4_000, long)) == pytest.approx(5e-4 - 4.5e-4 * 0.5)
    config = resolve_run("trex", "ppo", (3,), ["ppo.learning_rate=5e-4", "ppo.learning_rate_end=5e-5",
                                                "ppo.lr_decay_timesteps=1200"])
    lr = stage_schedules(config, 3, long)["learning_rate"]
    assert lr.decay_steps == 1_200 and lr(sb3_progress(5_000 + 600, long)) == pytest.approx(2.75e-4)
    old = StageSchedule(long, 5e-4, 5e-5)
    del old.__dict__["decay_steps"]  # a schedule pickled before the field existed
    assert old(sb3_progress(5_000 + 4_000, long)) == pytest.approx(5e-4 - 4.5e-4 * 0.5)


def test_ramp_moves_every_changed_numeric_value_linearly() -> None:
    previous = {"task": "balance", "alive_bonus": 2.0, "fall_penalty": -20.0, "max_episode_steps": 500,
                "push": True, "same": 1.0, "only_previous": 3.0}
    current = {"task": "locomotion", "alive_bonus": 1.0, "fall_penalty": -50.0, "max_episode_steps": 1000,
               "push": False, "same": 1.0, "only_current": 4.0}
    ramp = changed_numeric_weights(previous, current)
    assert ramp == {"alive_bonus": (2.0, 1.0), "fall_penalty": (-20.0, -50.0), "max_episode_steps": (500, 1000)}
    assert ramp_value(2.0, 1.0, 0, 100) == 2.0
    assert ramp_value(2.0, 1.0, 25, 100) == pytest.approx(1.75)
    assert ramp_value(2.0, 1.0, 100, 100) == 1.0 and ramp_value(2.0, 1.0, 500, 100) == 1.0
    assert ramp_value(2.0, 1.0, 0, 0) == 1.0  # no ramp: the stage value at once
    assert ramp_typed(500, 1000, 50, 100) == 750 and isinstance(ramp_typed(500, 1000, 33, 100), int)


# -- evaluation statistics and the gate -----------------------------------------------------------------------------
def test_eval_result_statistics() -> None:
    from dinosim.training.evaluation import EvalResult, format_report

    result = EvalResult(returns=[1.0, 3.0], lengths=[10, 30], successes=[True, False],
                        components=[{"alive": 2.0, "fall": -1.0}, {"alive": 4.0}])
    assert result.mean_reward == 2.0 and result.std_reward == 1.0 and result.mean_length == 20.0
    assert result.success_rate == 0.5
    assert result.component_means() == {"alive": 3.0, "fall": -0.5}
    assert result.metrics()["eval/reward/fall"] == -0.5
    assert EvalResult(returns=[1.0], lengths=[1], successes=[None], components=[{}]).success_rate is None
    text = format_report(result, "title")
    assert "2.00 ± 1.00" in text and "50.0%" in text and "alive" in text


@pytest.mark.parametrize(
    "mean_reward, mean_length, success, min_success, expected",
    [(10.0, 100.0, None, None, True), (9.9, 100.0, None, None, False), (10.0, 99.0, None, None, False),
     (10.0, 100.0, 0.5, 0.5, True), (10.0, 100.0, 0.4, 0.5, False), (10.0, 100.0, None, 0.5, False)],
)
def test_gate_needs_reward_length_and_success(mean_reward, mean_length, success, min_success, expected) -> None:
    from dinosim.config.settings import CurriculumSettings
    from dinosim.training.evaluation import EvalResult

    settings = CurriculumSettings(min_avg_reward=10.0, min_avg_episode_length=100.0, min_success_rate=min_success)
    flags = [None] * 10 if success is None else [i < round(10 * success) for i in range(10)]
    result = EvalResult(returns=[mean_reward] * 10, lengths=[int(mean_length)] * 10, successes=flags,
                        components=[{}] * 10)
    assert settings.screen_passes(result.stats()) is expected


# -- runner bad-input checks: DinosimError, before torch ---------------------------------------------------------------
def _make_run(folder: Path, status: str, algorithm: str = "ppo", stage_status: str = "finished") -> None:
    from dinosim.config.resolve import resolve_run

    folder.mkdir(parents=True)
    config = resolve_run("velociraptor", algorithm, (1,)).to_dict()
    (folder / "run.json").write_text(json.dumps({"format": 1, "command": "train", "strict_gates": False,
                                                 "config": config}))
    summary = RunSummary(command="train", species="velociraptor", algorithm=algorithm,
                         stages={1: StageState(stage=1, status=stage_status)}, status=status)
    summary.save(folder)
    summary_data = json.loads((folder / "summary.json").read_text())
    summary_data["pid"] = None
    (folder / "summary.json").write_text(json.dumps(summary_data))


def _run_check(code: str) -> subprocess.CompletedProcess:
    script = code + "\nimport sys\nassert 'torch' not in sys.modules and 'stable_baselines3' not in sys.modules\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_resume_refuses_non_run_and_finished_runs_without_torch(tmp_path: Path) -> None:
    _make_run(tmp_path / "done", "finished")
    (tmp_path / "empty").mkdir()
    code = textwrap.dedent(f"""
        from pathlib import Path
        from dinosim.errors import DinosimError
        from dinosim.training.runner import resume
        for folder, words in (({str(tmp_path / 'empty')!r}, "not a dinosim run"),
                              ({str(tmp_path / 'done')!r}, "already finished"),
                              ({str(tmp_path / 'nope')!r}, "not a dinosim run")):
            try:
                resume(Path(folder))
            except DinosimError as exc:
                assert words in str(exc), exc
            else:
                raise AssertionError(folder)
    """)
    proc = _run_check(code)
    assert proc.returncode == 0, proc.stderr


def test_resume_refuses_a_run_locked_by_a_live_process_and_ignores_stale_pids(tmp_path: Path, lock_holder) -> None:
    """The run folder's flock decides, not the PID in summary.json: a PID reused by another process (or one from
    before a reboot) never blocks `resume`; a live holder of the lock does, with one line naming it."""
    import socket

    from dinosim.run_lock import lock_run_dir
    from dinosim.training.runner import check_resumable

    _make_run(tmp_path / "live", "running", stage_status="running")
    with lock_holder(tmp_path / "live") as holder:
        with pytest.raises(DinosimError, match=f"process {holder.pid} is already training"):
            lock_run_dir(tmp_path / "live")
        data = json.loads((tmp_path / "live" / "summary.json").read_text())
        data["pid"], data["host"] = holder.pid, socket.gethostname()  # an alive PID in the summary
        (tmp_path / "live" / "summary.json").write_text(json.dumps(data))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # a live, unrelated process with the summary's PID (a reused PID, e.g. after a reboot) does not block
        data["pid"] = sleeper.pid
        (tmp_path / "live" / "summary.json").write_text(json.dumps(data))
        with lock_run_dir(tmp_path / "live"):  # the killed holder's lock went with it
            check_resumable(tmp_path / "live")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_init_from_and_evaluate_bad_input_without_torch(tmp_path: Path) -> None:
    _make_run(tmp_path / "nomodel", "finished")
    (tmp_path / "nomodel" / "stage1").mkdir()
    _make_run(tmp_path / "sac", "finished", algorithm="sac")
    (tmp_path / "sac" / "stage1").mkdir()
    import zipfile

    with zipfile.ZipFile(tmp_path / "sac" / "stage1" / "model.zip", "w") as archive:  # paths only: never loaded
        archive.writestr("data", "{}")
    code = textwrap.dedent(f"""
        from pathlib import Path
        from dinosim.errors import DinosimError
        from dinosim.training.runner import evaluate, find_init_source
        cases = [
            (lambda: find_init_source(Path({str(tmp_path / 'nomodel')!r}), "ppo"), "no trained model"),
            (lambda: find_init_source(Path({str(tmp_path / 'sac')!r}), "ppo"), "holds a sac model"),
            (lambda: find_init_source(Path({str(tmp_path)!r}), "ppo"), "not a dinosim run"),
            (lambda: evaluate(Path({str(tmp_path / 'nomodel')!r}), None, 3, True), "no trained model"),
            (lambda: evaluate(Path({str(tmp_path / 'nomodel')!r}), 2, 3, True), "not part of this run"),
            (lambda: evaluate(Path({str(tmp_path)!r}), None, 3, True), "not a dinosim run"),
        ]
        for call, words in cases:
            try:
                call()
            except DinosimError as exc:
                assert words in str(exc), (words, str(exc))
            else:
                raise AssertionError(words)
        model, vecnorm, env, network = find_init_source(Path({str(tmp_path / 'sac')!r}), "sac")
        assert model.name == "model.zip" and vecnorm is None and isinstance(network, dict)
    """)
    proc = _run_check(code)
    assert proc.returncode == 0, proc.stderr


def test_summary_round_trip(tmp_path: Path) -> None:
    summary = RunSummary(command="curriculum", species="trex", algorithm="ppo",
                         stages={1: StageState(stage=1, budget=10), 2: StageState(stage=2, budget=20)})
    summary.stages[1].last_eval = {"eval/mean_reward": 1.5}
    summary.save(tmp_path)
    loaded = RunSummary.load(tmp_path)
    assert loaded.stages[1].last_eval == {"eval/mean_reward": 1.5} and loaded.stages[2].budget == 20
    assert loaded.pid == os.getpid()


def test_steps_to_gate_count_to_the_passing_snapshot_else_every_step_used() -> None:
    from dinosim.training.metrics import stage_end_metrics

    # stage 2 began at global step 279,180 and its gate passed on the snapshot of 554,180 (steps trained on while
    # that evaluation ran in the background were dropped; the stage used 280,092)
    passed = StageState(stage=2, status="finished", start_step=279_180, timesteps_used=280_092, gate_passed=True,
                        gate_passed_at=554_180)
    assert (passed.steps_to_gate(), passed.global_steps_to_gate()) == (275_000, 554_180)
    failed = StageState(stage=2, status="finished", start_step=279_180, timesteps_used=300_000)
    assert (failed.steps_to_gate(), failed.global_steps_to_gate()) == (300_000, 579_180)  # >= any passing stage
    walk = CurriculumSettings(min_avg_reward=1500.0, min_avg_episode_length=800.0)
    # no complete evaluation: as far from the gate as a stage can be
    assert stage_end_metrics(failed, walk) == {"stage/steps_to_gate": 300_000, "run/steps_to_gate": 579_180,
                                               "stage/gate_passed": 0, "stage/gate_shortfall": 1.0,
                                               "stage/steps_to_gate_ranked": 600_000}
    # best/ returned 1,200 over 900-step episodes: 0.2 short of the return, the length met
    failed.best_eval = {"eval/mean_reward": 1200.0, "eval/mean_ep_length": 900.0, "eval/success_rate": None}
    closer = stage_end_metrics(failed, walk)
    assert closer["stage/gate_shortfall"] == pytest.approx(0.2) and closer["stage/steps_to_gate_ranked"] == 360_000
    # failed trials rank by how close they came, every one below a trial that passed within the same budget
    assert passed.steps_to_gate() < failed.timesteps_used < closer["stage/steps_to_gate_ranked"] < 600_000
    assert stage_end_metrics(passed, walk)["stage/steps_to_gate_ranked"] == 275_000
    assert stage_end_metrics(passed, walk)["stage/gate_shortfall"] == 0.0


def test_gate_shortfall_is_the_largest_relative_gap_to_a_threshold() -> None:
    bite = CurriculumSettings(min_avg_reward=150.0, min_success_rate=0.9)
    assert bite.shortfall({"return": 300.0, "length": 60.0, "success": 0.45}) == pytest.approx(0.5)
    assert bite.shortfall({"return": 75.0, "length": 60.0, "success": 0.9}) == pytest.approx(0.5)
    assert bite.shortfall({"return": 300.0, "length": 60.0, "success": 0.95}) == 0.0  # every threshold met
    assert bite.shortfall({"return": -500.0, "length": 60.0, "success": 0.0}) == 1.0  # clipped
    assert bite.shortfall({"return": 300.0, "length": 60.0}) == 1.0  # the success rate was not reported
    zero = CurriculumSettings(min_avg_reward=0.0)  # a threshold of 0 is measured in units of the quantity
    assert zero.shortfall({"return": -0.25, "length": 10.0}) == pytest.approx(0.25)


def test_resume_refuses_a_run_stopped_by_strict_gates(tmp_path: Path) -> None:
    from dinosim.training.runner import check_resumable

    _make_run(tmp_path / "strict", "failed")
    data = json.loads((tmp_path / "strict" / "run.json").read_text())
    data["strict_gates"] = True
    (tmp_path / "strict" / "run.json").write_text(json.dumps(data))
    with pytest.raises(DinosimError, match="strict-gates after stage 1"):
        check_resumable(tmp_path / "strict")


def test_non_finite_parameters_or_losses_stop_training() -> None:
    import torch
    from stable_baselines3 import PPO

    from dinosim.envs import make_env
    from dinosim.training.faults import FiniteLossCallback, TrainingFault

    env = make_env("velociraptor", {"task": "balance", "max_episode_steps": 10}, seed=0)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, policy_kwargs={"net_arch": [8]}, device="cpu")
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(None, []))
    callback = FiniteLossCallback(lambda: "stage 1, step 7")
    callback.init_callback(model)
    callback.check_now()  # finite: no error
    model.logger.record("train/value_loss", float("nan"))
    with pytest.raises(TrainingFault, match="stage 1, step 7: train/value_loss"):
        callback.check_now()
    model.logger.dump(0)
    with torch.no_grad():
        next(model.policy.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(TrainingFault, match="non-finite policy parameter"):
        callback.check_now()


# -- vec env -------------------------------------------------------------------------------------------------------
def test_info_safe_dummy_vec_env_returns_what_dummy_vec_env_returns() -> None:
    import numpy as np
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from dinosim.envs import make_env
    from dinosim.training.vec_env import InfoSafeDummyVecEnv

    def thunks():
        return [lambda i=i: Monitor(make_env("trex", {"task": "bite", "max_episode_steps": 15, "bite_bonus": 1.0},
                                             seed=i)) for i in range(2)]

    ours, sb3 = InfoSafeDummyVecEnv(thunks()), DummyVecEnv(thunks())
    ours.seed(3), sb3.seed(3)
    assert np.array_equal(ours.reset(), sb3.reset())
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(40):  # several episode ends (time limit and falls) with their resets
        action = rng.uniform(-1, 1, size=(2, ours.action_space.shape[0])).astype(np.float32)
        (o1, r1, d1, i1), (o2, r2, d2, i2) = ours.step(action), sb3.step(action)
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2) and np.array_equal(d1, d2)
        assert o1.dtype == o2.dtype and o1.flags.owndata and not np.shares_memory(o1, ours.buf_obs[None])
        for a, b in zip(i1, i2):
            assert a.keys() == b.keys()
            for key in a:
                if key == "terminal_observation":
                    assert np.array_equal(a[key], b[key])
                elif key == "episode":  # Monitor's dict: return, length, and wall-clock time (differs)
                    assert (a[key]["r"], a[key]["l"]) == (b[key]["r"], b[key]["l"])
                else:
                    assert a[key] == b[key], key
        ends += int(d1.sum())
        i1[0]["mutated"] = True  # the caller's dicts are its own
        assert "mutated" not in ours.buf_infos[0]
    assert ends >= 2


def test_vec_env_subproc_is_honoured_with_one_env() -> None:
    """`--vec-env subproc --n-envs 1` asks for the simulation in its own process; it used to be a DummyVecEnv."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from dinosim.training.builders import make_vec_env

    venv = make_vec_env("velociraptor", {"task": "balance", "max_episode_steps": 20}, 1, 0, "subproc")
    try:
        assert isinstance(venv, SubprocVecEnv) and venv.num_envs == 1
        assert venv.reset().shape[0] == 1
    finally:
        venv.close()
    with pytest.raises(DinosimError, match="unknown vec env 'thread'"):
        make_vec_env("velociraptor", {}, 1, 0, "thread")


def test_subproc_close_after_an_interrupted_step_ends_the_workers() -> None:
    """Ctrl-C/SIGTERM/SIGHUP can break off `step_wait` after one worker's reply was read. SB3's close then waited for
    that reply again, forever; and the workers ignore SIGTERM, so the interpreter's exit hung as well (seen in CI)."""
    from dinosim.training.builders import make_vec_env

    venv = make_vec_env("velociraptor", {"task": "balance", "max_episode_steps": 20}, 2, 0, "subproc")
    venv.reset()
    status = [Path(f"/proc/{p.pid}/status").read_text() for p in venv.processes]
    ignored = [int(next(line.split()[1] for line in s.splitlines() if line.startswith("SigIgn:")), 16) for s in status]
    assert all(mask & (1 << (signal.SIGTERM - 1)) for mask in ignored)  # only the main process handles signals
    venv.step_async(np.zeros((2, venv.action_space.shape[0]), dtype=np.float32))
    venv.remotes[0].recv()  # what an interrupted step_wait leaves behind: one reply read, one pending
    closing = threading.Thread(target=venv.close, daemon=True)
    closing.start()
    closing.join(30)
    hung = closing.is_alive()
    for process in venv.processes:  # whatever happened, leave no worker behind
        if process.is_alive():
            process.kill()
    assert not hung, "close() blocked on the reply that step_wait had already read"
    assert not any(p.is_alive() for p in venv.processes)


def test_subproc_close_kills_a_worker_that_does_not_exit() -> None:
    from dinosim.training.builders import make_vec_env

    venv = make_vec_env("velociraptor", {"task": "balance", "max_episode_steps": 20}, 1, 0, "subproc")
    venv.reset()
    os.kill(venv.processes[0].pid, signal.SIGSTOP)  # cannot read the close command
    venv.grace = 0.5
    venv.close()
    assert not venv.processes[0].is_alive()
