"""Shared fixtures of the test suite (test modules never import each other; they ask for these by name).

* ``checkout_root``: the repository checkout.
* ``dinosim_cli(*args, timeout=600)``: run ``python -m dinosim ARGS`` from the checkout (W&B disabled).
* ``run_a`` / ``tiny_runs``: REAL tiny 2-stage velociraptor curricula, trained once per session (run A; runs A
  and B).
* ``started_run``: a run folder as ``curriculum`` leaves it before its first log line.
* ``summary_line("text")``: a line in pytest's terminal summary (figures a test measured).
* ``sweep_program``, ``write_sweep(tmp_path, **overrides)``, ``expected_value(params, n_evals=6)``: a tiny fake
  training program for the sweep engine whose metric is a known function of its parameters.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

# Tiny but real: 2 envs, 64-step rollouts, an evaluation every 256 steps, 60-step episodes. Every gate value is
# set here (not taken from the committed configs). Stage 1 passes its gate on the first evaluation
# (required_consecutive=1, low bars) so stage 2 starts early; stage 2's bar is
# unreachable and it has a success-rate gate, so both kinds of gate segments exist.
TINY = [
    "ppo.n_steps=64", "ppo.batch_size=64", "ppo.n_epochs=1", "ppo.policy_kwargs.net_arch=[16,16]",
    "curriculum.eval_freq=256", "curriculum.eval_episodes=2", "curriculum.save_freq=512",
    "env.max_episode_steps=60", "curriculum.min_avg_episode_length=0.0",
    "1.curriculum.min_avg_reward=-1000.0", "1.curriculum.required_consecutive=1",
    "2.curriculum.min_avg_reward=1000.0", "2.curriculum.min_success_rate=0.5", "curriculum.gate_episodes=2",
    "2.env.task=strike",  # a success-rate gate needs a task that reports success
]
RUNS = {"A": [], "B": ["env.alive_bonus=0.5", "--seed", "1"]}


_AGENT_ENV = ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH")


@pytest.fixture(autouse=True)
def _no_wandb_agent_env_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that leaves W&B agent variables in ``os.environ`` makes every later run believe it is a sweep trial."""
    before = {k: os.environ.get(k) for k in _AGENT_ENV}
    yield
    after = {k: os.environ.get(k) for k in _AGENT_ENV}
    if after != before:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        pytest.fail(f"{request.node.nodeid} left W&B agent variables in os.environ: {after}", pytrace=False)


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "dinosim", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)


def _make_tiny_run(base: Path, name: str) -> Path:
    """``base/runs/velociraptor/<name>``, trained once per test session (reused when already finished)."""
    run_dir = base / "runs" / "velociraptor" / name
    summary = run_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("status") == "finished":
        return run_dir
    extra = [a for a in RUNS[name] if "=" in a]
    options = [a for a in RUNS[name] if "=" not in a]
    proc = _cli("curriculum", "--species", "velociraptor", "--stages", "1-2", "--timesteps", "768", "--n-envs", "2",
                "--run-dir", str(run_dir), "--no-progress", *options, "--override", *TINY, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp() / "tracking"
    return {name: _make_tiny_run(base, name) for name in RUNS}


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """The overrides of the tiny tracking runs (``run_a``/``tiny_runs``)."""
    return list(TINY)


@pytest.fixture(scope="session")
def run_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_tiny_run(tmp_path_factory.getbasetemp() / "tracking", "A")


@pytest.fixture(scope="session")
def checkout_root() -> Path:
    """The repository checkout (the folder holding pyproject.toml)."""
    return ROOT


@pytest.fixture(scope="session")
def dinosim_cli() -> Callable[..., subprocess.CompletedProcess]:
    return _cli


@pytest.fixture
def started_run(tmp_path: Path) -> Path:
    """A run folder as `curriculum` leaves it before its first log line: summary.json, run.json, stage1/."""
    run = tmp_path / "runs" / "velociraptor" / "fresh"
    (run / "stage1").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "running", "stages": {"1": {"status": "running"}}}))
    return run


PROGRAM = textwrap.dedent('''
    import json, math, os, sys, time
    args = sys.argv[1:]
    assert args[0] == "train", args
    params = {}
    rest = args[args.index("--override") + 1:]
    if "--seed" in rest:  # the engine's --seeds appends "--seed K"
        params["seed"] = rest.pop(rest.index("--seed") + 1)
        rest.remove("--seed")
    for tok in rest:
        key, _, value = tok.partition("=")
        params[key] = value
    lr = float(params["ppo.learning_rate"])
    ent = float(params.get("ppo.ent_coef", "0"))
    seed = int(params.get("seed", "0"))
    mode = params.get("fake.mode", "ok")
    if mode == "crash" and lr > 1e-3:
        sys.exit(3)
    path = os.environ["DINOSIM_TRIAL_METRICS"]
    with open(os.environ.get("FAKE_LOG", os.devnull), "a") as log:
        log.write(json.dumps({"pid": os.getpid(), "start": time.time(), "params": params}) + "\\n")
    n_evals = int(os.environ.get("FAKE_EVALS", params.get("fake.evals", "6")))
    for i in range(1, n_evals + 1):
        quality = -abs(math.log10(lr) + 4.0)          # best at lr = 1e-4
        value = 10 * quality + i - 100 * ent + seed
        if mode == "nan" and lr > 1e-3 and i == 2:
            value = float("nan")
        with open(path, "a") as f:
            f.write(json.dumps({"global_step": 64 * i, "stage": 1, "eval/mean_reward": value}) + "\\n")
        time.sleep(float(os.environ.get("FAKE_SLEEP", params.get("fake.sleep", "0.05"))))
''')


def _write_sweep(tmp_path: Path, **overrides) -> Path:
    prog = tmp_path / "fake_train.py"
    prog.write_text(PROGRAM)
    cfg = {
        "method": "random",
        "metric": {"name": "eval/mean_reward", "goal": "maximize"},
        "run_cap": 6,
        "program": str(prog),
        "command": ["${env}", "${interpreter}", "${program}", "train", "--override", "${args_no_hyphens}"],
        "parameters": {
            "ppo.learning_rate": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
            "ppo.ent_coef": {"values": [0.0, 0.01]},
        },
    }
    for key, value in overrides.items():
        if key == "params":
            cfg["parameters"].update(value)
        else:
            cfg[key] = value
    path = tmp_path / f"{overrides.get('name', 'fake')}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _expected_value(params: dict, n_evals: int = 6) -> float:
    return 10 * -abs(math.log10(params["ppo.learning_rate"]) + 4.0) + n_evals - 100 * params["ppo.ent_coef"]


@pytest.fixture(scope="session")
def sweep_program() -> str:
    return PROGRAM


@pytest.fixture(scope="session")
def write_sweep() -> Callable[..., Path]:
    return _write_sweep


@pytest.fixture(scope="session")
def expected_value() -> Callable[..., float]:
    return _expected_value


_SUMMARY: list[str] = []


@pytest.fixture
def summary_line():
    """``summary_line("text")`` prints "text" in the terminal summary at the end of the test session."""
    return _SUMMARY.append


def pytest_terminal_summary(terminalreporter) -> None:
    if _SUMMARY:
        terminalreporter.section("dinosim figures")
        for line in _SUMMARY:
            terminalreporter.write_line(line)


# -- a throw-away PostgreSQL server (test_sweeps_postgres, test_sweeps_survival) ------------------------------------
def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if isinstance(found, list):
        return found[-1] if found else None
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="dinosim-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the package's `postgres` user
        shutil.chown(root, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run(as_owner + [initdb, "-D", str(data), "-A", "trust", "-U", "dinosim", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(as_owner + [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://dinosim@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_owner + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()``: a free TCP port on the loopback interface."""
    return _free_port
