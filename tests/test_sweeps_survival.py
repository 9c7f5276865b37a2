"""Sweeps that survive signals and keep secrets: SIGTERM/SIGHUP of the engine stop its trials (requeued once), trials
die with an engine killed outright, storage passwords never printed, bounded --skip-if constraints, damaged
studies answered with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dinosim.sweeps.constraints import MAX_DEPTH, MAX_LENGTH, ConstraintError, parse_constraint
from dinosim.sweeps.storage import redact


def start_engine(path: Path, tmp_path: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "FAKE_SLEEP": "0.5", "FAKE_EVALS": "60", "FAKE_LOG": str(log)}
    return subprocess.Popen([sys.executable, "-m", "dinosim", "sweep", "run", str(path), "--sweep-dir",
                             str(tmp_path / "sweepdir")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_reports(tmp_path: Path, n: int = 2) -> None:
    metrics = tmp_path / "sweepdir" / "trials" / "0000" / "metrics.jsonl"
    deadline = time.time() + 60
    while not (metrics.exists() and metrics.read_text().count("\n") >= n) and time.time() < deadline:
        time.sleep(0.1)
    assert metrics.exists(), "the first trial never reported"


def gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_engine_stops_its_trials_on_sigterm_and_sighup(tmp_path: Path, signum: int, code: int, write_sweep, run_engine,
                                                      sweep_trials) -> None:
    path = write_sweep(tmp_path, run_cap=2)
    log = tmp_path / "starts.jsonl"
    engine = start_engine(path, tmp_path, log)
    wait_for_reports(tmp_path)
    t0 = time.time()
    engine.send_signal(signum)
    out, err = engine.communicate(timeout=60)
    assert engine.returncode == code, err[-2000:]
    assert time.time() - t0 < 15 and "Traceback" not in err  # the trial was stopped, not waited for (30 s)
    child = json.loads(log.read_text().splitlines()[0])["pid"]
    assert gone(child)
    first = sweep_trials(tmp_path)
    assert len(first) == 1 and first[0].user_attrs.get("interrupted")
    run_engine(path, tmp_path)  # the interrupted parameters run again, once
    ts = sweep_trials(tmp_path)
    assert [t.state.name for t in ts[1:]] == ["COMPLETE"] * 2 and ts[1].user_attrs["requeued_from"] == 0
    run_engine(path, tmp_path)
    assert len(sweep_trials(tmp_path)) == 3


def test_trials_die_with_an_engine_killed_outright(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   write_sweep, run_engine, sweep_trials) -> None:
    """kill -9 of the engine: its trial gets SIGTERM from the kernel (PR_SET_PDEATHSIG) instead of training on,
    and the next `sweep run` requeues its parameters once."""
    path = write_sweep(tmp_path, run_cap=2)
    log = tmp_path / "starts.jsonl"
    engine = start_engine(path, tmp_path, log)
    wait_for_reports(tmp_path)
    engine.kill()
    engine.communicate(timeout=30)
    child = json.loads(log.read_text().splitlines()[0])["pid"]
    assert gone(child), "the trial outlived its engine"
    monkeypatch.setenv("FAKE_LOG", str(log))
    run_engine(path, tmp_path)
    ts = sweep_trials(tmp_path)
    assert ts[0].state.name == "FAIL" and ts[0].user_attrs["interrupted"]
    assert ts[1].user_attrs["requeued_from"] == 0 and ts[1].params == ts[0].params
    assert len(log.read_text().splitlines()) == 3  # started: the killed one, then 2 complete


def test_orphan_guard_refuses_a_dead_parent_and_bad_usage() -> None:
    from dinosim.sweeps.orphan_guard import guarded_argv, main

    argv = guarded_argv(["true"], parent=1)
    assert argv[1:5] == ["-m", "dinosim.sweeps.orphan_guard", "1", "--"] and argv[-1] == "true"
    assert main(["x"]) == 2  # usage errors only in this process: a valid call would exec or set PR_SET_PDEATHSIG
    trial = [sys.executable, "-c", "print('ran')"]
    # An engine that died before its trial started: a finished process's PID, never the guard's parent (this
    # process). A fixed PID such as 1 is the parent where pytest runs under PID 1 (a container, a nohup job).
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60)
    refused = subprocess.run(guarded_argv(trial, parent=int(dead.stdout)), capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 143 and refused.stdout == ""
    ok = subprocess.run(guarded_argv(trial, parent=os.getpid()), capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "ran"


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://u:hunter2@db:5432/s") == "postgresql://u:***@db:5432/s"
    assert redact("postgresql://u:p@ss@db/s") == "postgresql://u:***@db/s"
    assert redact("postgresql://db/s?user=u&password=hunter2&x=1") == "postgresql://db/s?user=u&password=***&x=1"
    assert redact("postgresql://u@db/s") == "postgresql://u@db/s" and redact("journal:/a/b") == "journal:/a/b"


def test_storage_password_never_printed(tmp_path: Path, postgres_url: str, write_sweep) -> None:
    """A working database URL with a password (the test server trusts every login, so the password is ignored)."""
    url = postgres_url.replace("dinosim@", "dinosim:hunter2@")
    path = write_sweep(tmp_path, run_cap=1)
    out = subprocess.run([sys.executable, "-m", "dinosim", "sweep", "run", str(path), "--storage", url, "--sweep-dir",
                          str(tmp_path / "sd")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "hunter2" not in out.stdout + out.stderr and "dinosim:***@" in out.stdout
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "sd").rglob("*") if p.is_file())
    assert "hunter2" not in logs
    changed = path.read_text().replace("run_cap: 1", "run_cap: 3")
    path.write_text(changed)
    out = subprocess.run([sys.executable, "-m", "dinosim", "sweep", "run", str(path), "--storage", url, "--sweep-dir",
                          str(tmp_path / "sd")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "different YAML" in out.stderr and "hunter2" not in out.stderr


@pytest.mark.parametrize("text,words", [
    ("ppo.n_epochs ** 10 ** 10 > 0", "too large"),
    ("2 ** 100000 > 1", "too large"),
    ("[0] * 10 ** 9 == []", "sequence of more than"),
    ("(" * 300 + "1" + ")" * 300 + " > 0", "nested"),
    ("-" * 500 + "1 > 0", "nested too deeply"),
    ("not " * 200 + "ppo.n_epochs", "nested too deeply"),
    ("ppo.n_epochs > 1 and " * 60 + "True", "characters; the limit is"),
])
def test_constraints_are_bounded(text: str, words: str) -> None:
    t0 = time.time()
    with pytest.raises(ConstraintError, match=words):
        parse_constraint(text).evaluate({"ppo.n_epochs": 10})
    assert time.time() - t0 < 1.0
    assert len("ppo.n_epochs > 1 and " * 60) > MAX_LENGTH and MAX_DEPTH < 200


def test_reasonable_constraints_still_work() -> None:
    c = parse_constraint("ppo.n_steps * 4 % ppo.batch_size != 0 or ppo.learning_rate ** 2 > 1e-6")
    assert c.evaluate({"ppo.n_steps": 2048, "ppo.batch_size": 64, "ppo.learning_rate": 3e-4}) is False
    assert parse_constraint("2 ** 1000 > 10 ** 300").evaluate({}) is True


def test_skip_if_limit_is_one_line_in_the_cli(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dinosim", "train", "--stage", "1", "--dry-run", "--skip-if",
                          "ppo.n_epochs ** 10 ** 10 > 0"], capture_output=True, text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "too large" in lines[0], out.stderr


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_study_is_one_line(tmp_path: Path, damage: str, write_sweep, run_engine) -> None:
    path = write_sweep(tmp_path, run_cap=2)
    run_engine(path, tmp_path)
    journal = tmp_path / "sweepdir" / "study.journal"
    data = journal.read_bytes()
    journal.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00\xffnot json\n" + data[7:],
                         "empty": b""}[damage])
    for args in (["sweep", "report", str(tmp_path / "sweepdir"), "--no-plots"],
                 ["sweep", "export-best", str(tmp_path / "sweepdir"), "--out", str(tmp_path / "x.toml")]):
        out = subprocess.run([sys.executable, "-m", "dinosim", *args], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
        if out.returncode != 0:
            lines = out.stderr.strip().splitlines()
            assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr


def test_engines_starting_together_requeue_an_interrupted_trial_once(tmp_path: Path) -> None:
    import threading

    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from dinosim.sweeps.study import requeue_interrupted

    journal = str(tmp_path / "study.journal")
    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(journal)))
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    barrier = threading.Barrier(4)

    def engine() -> None:
        mine = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(journal)))
        barrier.wait()
        requeue_interrupted(mine, tmp_path)

    threads = [threading.Thread(target=engine) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["requeued_from"] == 0
