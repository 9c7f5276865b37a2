"""The offline engine on a tiny real program that follows the training contract (metrics JSON lines).

The program's "reward" is a known function of its parameters, so the tests can check what the engine decided.
Real-CLI sweeps are in test_sweeps_real_training.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from dinosim.sweeps.engine import EngineOptions, run_sweep
from dinosim.sweeps.report import build_report, load_study
from dinosim.sweeps.yaml_spec import load_sweep


def test_random_sweep_values_and_run_cap(tmp_path, write_sweep, expected_value, run_engine, sweep_trials):
    path = write_sweep(tmp_path)
    result = run_engine(path, tmp_path, workers=2)
    ts = sweep_trials(tmp_path)
    assert len(ts) == 6 and result.counts["complete"] == 6
    for t in ts:
        assert t.value == pytest.approx(expected_value(t.user_attrs["params"]))
        argv = t.user_attrs["argv"]
        assert argv[:3] == ["/usr/bin/env", sys.executable, str(tmp_path / "fake_train.py")]
        assert set(argv[argv.index("--override") + 1:]) == {f"{k}={v}" for k, v in t.user_attrs["params"].items()}
    best = max(ts, key=lambda t: t.value)
    assert result.best_value == best.value
    # run_cap is reached: a second invocation starts nothing
    run_engine(path, tmp_path, workers=1)
    assert len(sweep_trials(tmp_path)) == 6


def test_grid_sweep_visits_every_point_once(tmp_path, write_sweep, run_engine, sweep_trials):
    path = write_sweep(tmp_path, method="grid", run_cap=20, params={
        "ppo.learning_rate": {"values": [1e-5, 1e-4, 1e-3]}, "ppo.ent_coef": {"values": [0.0, 0.01]},
        "fake.evals": {"value": 2}})
    result = run_engine(path, tmp_path, workers=2)
    ts = sweep_trials(tmp_path)
    points = sorted((t.user_attrs["params"]["ppo.learning_rate"], t.user_attrs["params"]["ppo.ent_coef"]) for t in ts)
    assert points == sorted((lr, e) for lr in (1e-5, 1e-4, 1e-3) for e in (0.0, 0.01))
    assert result.best_params["ppo.learning_rate"] == 1e-4 and result.best_params["ppo.ent_coef"] == 0.0


def test_bayes_sweep_with_list_values_and_count(tmp_path, write_sweep, run_engine, sweep_trials):
    path = write_sweep(tmp_path, method="bayes", run_cap=50, params={
        "ppo.policy_kwargs.net_arch": {"values": [[64, 64], [128, 64, 32]]}, "fake.evals": {"value": 2}})
    run_engine(path, tmp_path, workers=1, count=8)
    ts = sweep_trials(tmp_path)
    assert len(ts) == 8 and all(t.state.name == "COMPLETE" for t in ts)
    arches = {json.dumps(t.user_attrs["params"]["ppo.policy_kwargs.net_arch"]) for t in ts}
    assert arches <= {"[64, 64]", "[128, 64, 32]"}
    assert any("ppo.policy_kwargs.net_arch=[128, 64, 32]" in t.user_attrs["argv"] for t in ts) or \
        any("ppo.policy_kwargs.net_arch=[64, 64]" in t.user_attrs["argv"] for t in ts)


def test_hyperband_prunes_and_failures_do_not_stop_sweep(tmp_path, write_sweep, run_engine, sweep_trials):
    path = write_sweep(tmp_path, run_cap=14, params={"fake.mode": {"value": "crash"}, "fake.evals": {"value": 9}},
                       early_terminate={"type": "hyperband", "min_iter": 1, "max_iter": 9, "eta": 3})
    # One worker: whether a trial is pruned depends on which trials have reported at its rung before it, which two
    # workers' interleaving decides (with two, one run in ~10 saw every trial rise above those before it and
    # none pruned). Sequential trials make the pruner's decisions, and this test, deterministic.
    run_engine(path, tmp_path, workers=1)
    ts = sweep_trials(tmp_path)
    states = [t.state.name for t in ts]
    assert len(ts) == 14
    assert "PRUNED" in states, states
    failed = [t for t in ts if t.state.name == "FAIL"]
    assert failed and all(t.user_attrs["params"]["ppo.learning_rate"] > 1e-3 for t in failed)
    assert all("exit code 3" in t.user_attrs["fail_reason"] for t in failed)
    pruned = [t for t in ts if t.state.name == "PRUNED"]
    assert all(len(t.intermediate_values) < 9 for t in pruned)
    for t in pruned:  # the pruned trial's process was stopped: it never wrote all 9 evaluations
        time.sleep(0.2)
        assert (Path(t.user_attrs["trial_dir"]) / "metrics.jsonl").read_text().count("\n") < 9
    assert all(t.user_attrs["params"]["ppo.learning_rate"] <= 1e-3 for t in ts if t.state.name == "COMPLETE")


def test_nan_metric_is_a_failed_trial(tmp_path, write_sweep, run_engine, sweep_trials):
    # a grid, so both a NaN-reporting (lr > 1e-3) and a finite configuration run whatever the thread timing
    path = write_sweep(tmp_path, method="grid", run_cap=6, params={"fake.mode": {"value": "nan"},
                                                                    "ppo.learning_rate": {"values": [1e-4, 1e-2]}})
    run_engine(path, tmp_path, workers=2)
    ts = sweep_trials(tmp_path)
    nan = [t for t in ts if t.user_attrs["params"]["ppo.learning_rate"] > 1e-3]
    assert nan and all(t.state.name == "FAIL" and "non-finite" in t.user_attrs["fail_reason"] for t in nan)
    assert any(t.state.name == "COMPLETE" for t in ts)


def test_constraints_skip_before_running(tmp_path, write_sweep, run_engine, sweep_trials):
    log = tmp_path / "starts.jsonl"
    os.environ["FAKE_LOG"] = str(log)
    try:
        path = write_sweep(tmp_path, run_cap=10, command=[
            "${env}", "${interpreter}", "${program}", "train",
            "--skip-if", "ppo.learning_rate > 1e-3 and ppo.ent_coef > 0.005",
            "--override", "${args_no_hyphens}"])
        run_engine(path, tmp_path, workers=1)
    finally:
        del os.environ["FAKE_LOG"]
    ts = sweep_trials(tmp_path)
    skipped = [t for t in ts if t.user_attrs.get("skipped")]
    assert skipped and all(t.state.name == "PRUNED" for t in skipped)
    assert all(t.user_attrs["params"]["ppo.learning_rate"] > 1e-3 and t.user_attrs["params"]["ppo.ent_coef"] == 0.01
               for t in skipped)
    started = [json.loads(line)["params"] for line in log.read_text().splitlines()]
    assert len(started) == len(ts) - len(skipped)  # skipped trials never started a process


def test_program_reported_skip(tmp_path, write_sweep, run_engine, sweep_trials):
    prog = tmp_path / "skipper.py"
    prog.write_text("import json, os\nopen(os.environ['DINOSIM_TRIAL_METRICS'], 'a').write("
                    "json.dumps({'skipped': True, 'reason': 'skip-if: x > 1'}) + '\\n')\n")
    path = write_sweep(tmp_path, run_cap=2, program=str(prog))
    run_engine(path, tmp_path)
    ts = sweep_trials(tmp_path)
    assert [t.user_attrs["skipped"] for t in ts] == ["skip-if: x > 1"] * 2
    assert all(t.state.name == "PRUNED" for t in ts)


def test_target_stops_sweep(tmp_path, write_sweep, run_engine, sweep_trials):
    path = write_sweep(tmp_path, run_cap=30, metric={"name": "eval/mean_reward", "goal": "maximize", "target": -1e9})
    result = run_engine(path, tmp_path, workers=1)
    assert result.target_reached and len(sweep_trials(tmp_path)) == 1


def test_seeds_average(tmp_path, write_sweep, expected_value, run_engine, sweep_trials):
    path = write_sweep(tmp_path, run_cap=2)
    run_engine(path, tmp_path, seeds=3)
    for t in sweep_trials(tmp_path):
        expected = [expected_value(t.user_attrs["params"]) + s for s in (0, 1, 2)]
        assert t.user_attrs["seed_values"] == pytest.approx(expected)
        assert t.value == pytest.approx(expected_value(t.user_attrs["params"]) + 1)
        assert t.user_attrs["argv-seed2"][-2:] == ["--seed", "2"]


def test_interrupted_sweep_resumes(tmp_path, write_sweep, run_engine, sweep_trials):
    path = write_sweep(tmp_path, run_cap=3)
    log = tmp_path / "starts.jsonl"
    code = ("from pathlib import Path; from dinosim.sweeps.engine import EngineOptions, run_sweep; "
            "from dinosim.sweeps.yaml_spec import load_sweep; "
            f"run_sweep(load_sweep({str(path)!r}), EngineOptions(sweep_dir=Path({str(tmp_path / 'sweepdir')!r}), "
            "poll_interval=0.05, workers=1))")
    env = {**os.environ, "FAKE_SLEEP": "0.5", "FAKE_EVALS": "40", "FAKE_LOG": str(log)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "sweepdir" / "trials" / "0000" / "metrics.jsonl"
    deadline = time.time() + 60
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.1)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert time.time() - t0 < 15  # the engine stops its trial instead of waiting 20 s for it
    child = json.loads(log.read_text().splitlines()[0])["pid"]
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    first = sweep_trials(tmp_path)
    assert len(first) == 1 and first[0].state.name == "FAIL" and first[0].user_attrs.get("interrupted")
    counts = build_report(load_study(tmp_path / "sweepdir"), plots=False).counts
    assert counts["interrupted"] == 1 and counts["failed"] == 0
    # resume: the interrupted configuration runs again, and run_cap counts 3 real trials
    run_engine(path, tmp_path)
    ts = sweep_trials(tmp_path)
    assert len(ts) == 4 and [t.state.name for t in ts[1:]] == ["COMPLETE"] * 3
    assert ts[1].user_attrs["params"] == first[0].user_attrs["params"]
    assert ts[1].user_attrs["requeued_from"] == 0
    run_engine(path, tmp_path)  # nothing left to do, nothing re-queued twice
    assert len(sweep_trials(tmp_path)) == 4


def test_changed_yaml_is_refused(tmp_path, write_sweep, run_engine):
    path = write_sweep(tmp_path, run_cap=1)
    run_engine(path, tmp_path)
    path.write_text(path.read_text().replace("run_cap: 1", "run_cap: 2"))
    from dinosim.errors import ConfigError

    with pytest.raises(ConfigError, match="different YAML"):
        run_engine(path, tmp_path)


def test_rdb_storage_url_and_shared_study(tmp_path, write_sweep, run_engine):
    """--storage URL: two engine invocations (think: two machines) share one study and its run_cap."""
    path = write_sweep(tmp_path, run_cap=5)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    run_engine(path, tmp_path, storage=url, count=2)
    run_engine(path, tmp_path / "other_machine", storage=url, workers=2)
    loaded = optuna.load_study(study_name="fake", storage=url)
    assert len(loaded.trials) == 5 and all(t.state.name == "COMPLETE" for t in loaded.trials)
    assert not (tmp_path / "sweepdir" / "study.journal").exists()


def test_rich_progress_on_a_terminal(tmp_path, write_sweep):
    import io

    from dinosim.sweeps.progress import Progress, RichProgress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    path = write_sweep(tmp_path, run_cap=2)
    spec = load_sweep(path)
    stream = Tty()
    progress = Progress.create(spec, stream)
    assert isinstance(progress, RichProgress)
    run_sweep(spec, EngineOptions(sweep_dir=tmp_path / "sweepdir", poll_interval=0.05), progress)
    out = stream.getvalue()
    assert "trial 1: complete" in out and "done 2" in out
    plain = io.StringIO()
    assert type(Progress.create(spec, plain)) is Progress


def test_a_trial_over_run_cap_does_not_run(tmp_path, write_sweep):
    """Engines sharing a study can both start a trial when one place is left under run_cap; the trial with the
    higher number (Optuna numbers a study's trials densely, across engines) must end unrun and count nowhere."""
    import io

    from dinosim.sweeps.engine import TrialFailed, _Objective
    from dinosim.sweeps.progress import Progress
    from dinosim.sweeps.study import counted_trials, open_study

    spec = load_sweep(write_sweep(tmp_path, run_cap=1))
    sweep_dir = tmp_path / "sweepdir"
    study = open_study(spec, sweep_dir, None)
    other = study.ask()  # the other engine's trial, number 0: it took the last place
    other.set_user_attr("host", "another-machine")
    mine = study.ask()  # number 1, started before this engine saw trial 0 (its budget said 1)
    out = io.StringIO()
    objective = _Objective(spec, EngineOptions(sweep_dir=sweep_dir), sweep_dir, Progress.create(spec, out))
    with pytest.raises(TrialFailed, match="run_cap 1 was reached"):
        objective(mine)
    assert not (sweep_dir / "trials").exists()  # no process ran
    study.tell(mine, state=optuna.trial.TrialState.FAIL)
    study.tell(other, 1.0)
    assert counted_trials(study) == 1
    objective.progress.finished(study.trials[1], spec)
    assert "trial 1: not run: run_cap was reached" in out.getvalue() and "failed 0" in out.getvalue()
    counts = build_report(load_study(sweep_dir), plots=False).counts
    assert counts["complete"] == 1 and counts["over_cap"] == 1 and counts["failed"] == 0
