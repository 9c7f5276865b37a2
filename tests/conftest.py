"""Shared fixtures of the test suite (test modules never import each other; they ask for these by name).

Every test fails when it leaves W&B agent variables (``WANDB_SWEEP_ID``, ``WANDB_RUN_ID``, ...) in ``os.environ``
(autouse): later runs would believe they are sweep trials.

The command line and the machine:

* ``checkout_root``: the repository checkout.
* ``dinosim_cli(*args, timeout=600)``: run ``python -m dinosim ARGS`` from the checkout (W&B disabled); returns the
  finished process.
* ``dinosim_popen(*args, env=None)``: start ``python -m dinosim ARGS`` (pipes for stdout/stderr, ``env`` added to
  ours); returns the running process.
* ``dinosim_main(*args)``: run ``dinosim ARGS`` in this process (heavy imports are paid once for all calls);
  returns (exit code, stdout, stderr). ``dinosim_main_quiet(*args, **env)``: the same for session- and
  module-scoped fixtures (W&B disabled, ``env`` set while it runs).
* ``wait_for_file(folder, glob, proc, timeout=120)``: the first file matching ``glob`` in ``folder`` once it exists;
  fails when ``proc`` ends first.
* ``lock_holder(run_dir)``: a context manager: another process holding ``run_dir``'s run lock while inside.
* ``missing_tool("message")``: a test that needs a program or package this machine lacks: skipped locally, failed
  under ``CI`` (``.ci/run`` installs them all).
* ``summary_line("text")``: a line in pytest's terminal summary (figures a test measured).

Real tiny training (velociraptor, 2 envs, 64-step rollouts, 16-unit nets):

* ``tiny``: the kit for tests that train: ``.overrides`` (an evaluation and a checkpoint every 256 steps,
  gates that never pass), ``.n_envs``, ``.run(run_dir, stages, overrides, timesteps, **request)`` (a run in this
  process; returns (exit code, summary.json)), ``.assert_interrupted(proc, signum, run_dir)`` (a stop signal was
  checkpointed like Ctrl-C), ``.assert_every_file_loads(run_dir)``.
* ``run_a`` / ``tiny_runs``: REAL tiny 2-stage curricula made by ``dinosim curriculum`` (in this process), trained
  once per session (run A; runs A and B); ``tiny_overrides``: their overrides (stage 1 passes its gate at once).
* ``started_run``: a run folder as ``curriculum`` leaves it before its first log line.

Synthetic (written, not trained) run folders:

* ``ev(step, ret, length, rate=None, **components)``: one metrics.jsonl eval record.
* ``make_run(root, name, {stage: [records]}, ...)``: a run folder like ``train``/``curriculum`` writes.
* ``balance_evals(length=490, alive=490, n=4, ret=None, **components)``: eval records of a standing animal.

Sweeps:

* ``sweep_program``, ``write_sweep(tmp_path, **overrides)``, ``expected_value(params, n_evals=6)``: a tiny fake
  training program for the sweep engine whose metric is a known function of its parameters.
* ``run_engine(path, tmp_path, **options)``: the offline engine on a sweep YAML, sweep folder ``tmp_path/sweepdir``;
  ``sweep_trials(tmp_path, name="fake")``: the trials of that folder's study.
* ``postgres_url``: a throw-away PostgreSQL server (module scope); ``free_port()``: a free loopback TCP port.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import math
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


# -- hygiene -----------------------------------------------------------------------------------------------------------
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


_SUMMARY: list[str] = []


@pytest.fixture
def summary_line() -> Callable[[str], None]:
    """``summary_line("text")`` prints "text" in the terminal summary at the end of the test session."""
    return _SUMMARY.append


def pytest_terminal_summary(terminalreporter) -> None:
    if _SUMMARY:
        terminalreporter.section("dinosim figures")
        for line in _SUMMARY:
            terminalreporter.write_line(line)


# -- the command line and the machine ----------------------------------------------------------------------------------
def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "dinosim", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)


def _popen(*args: str, env: Optional[dict] = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dinosim", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _wait_for_file(folder: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120.0) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted(folder.glob(pattern)) if folder.exists() else []
        if found:
            return found[0]
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended ({proc.returncode}) before {pattern} appeared:\n{out[-2000:]}\n{err}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{pattern} did not appear in {timeout}s")


@contextlib.contextmanager
def _lock_holder(run_dir: Path) -> Iterator[subprocess.Popen]:
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from dinosim.run_lock import lock_run_dir
        lock = lock_run_dir(Path({str(run_dir)!r}))
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def _missing_tool(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def checkout_root() -> Path:
    """The repository checkout (the folder holding pyproject.toml)."""
    return ROOT


@pytest.fixture(scope="session")
def dinosim_cli() -> Callable[..., subprocess.CompletedProcess]:
    return _cli


@pytest.fixture(scope="session")
def dinosim_popen() -> Callable[..., subprocess.Popen]:
    return _popen


def _exit_code_of_main(args: list[str]) -> int:
    """``dinosim ARGS`` through :func:`dinosim.cli.main` in this process; its exit code."""
    from dinosim.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


@pytest.fixture
def dinosim_main(capsys: pytest.CaptureFixture) -> Callable[..., tuple[int, str, str]]:
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = _exit_code_of_main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def dinosim_main_quiet() -> Callable[..., tuple[int, str, str]]:
    """``dinosim_main`` for session- and module-scoped fixtures: ``run(*args, **env)`` (W&B disabled, ``env`` set
    while it runs); returns (exit code, stdout, stderr)."""
    return _main_in_process


@pytest.fixture(scope="session")
def wait_for_file() -> Callable[..., Path]:
    return _wait_for_file


@pytest.fixture(scope="session")
def lock_holder() -> Callable[[Path], contextlib.AbstractContextManager[subprocess.Popen]]:
    return _lock_holder


@pytest.fixture(scope="session")
def missing_tool() -> Callable[[str], None]:
    return _missing_tool


# -- real tiny training ------------------------------------------------------------------------------------------------
class TinyTraining:
    """Real training at toy size: 2 envs (a rollout is 64 x 2 = 128 steps), 16-unit nets, 50-step episodes, an
    evaluation of 2 episodes and a checkpoint every 256 steps (2 kept), gates that never pass, no critic warm-up."""

    n_envs = 2
    _OVERRIDES = (
        "ppo.n_steps=64", "ppo.batch_size=64", "ppo.n_epochs=1", "ppo.policy_kwargs.net_arch=[16,16]",
        "env.max_episode_steps=50", "curriculum.min_avg_episode_length=0", "curriculum.eval_freq=256",
        "curriculum.eval_episodes=2",
        "curriculum.save_freq=256", "curriculum.keep_checkpoints=2", "curriculum.required_consecutive=100",
        "curriculum.critic_warmup_timesteps=0",  # the stage files' 25k would outlast a tiny budget (refused)
    )

    @property
    def overrides(self) -> list[str]:
        """The tiny config as ``--override`` arguments (a new list each time)."""
        return list(self._OVERRIDES)

    def run(self, run_dir: Path, stages: list[int], overrides: list[str], timesteps: int,
            **request: Any) -> tuple[int, dict]:
        """A velociraptor run of ``stages`` in this process (``train`` for one stage, else ``curriculum``) with
        these overrides after :attr:`overrides`; ``hooks`` (default: no stdout) and other ``RunRequest`` fields as
        keywords. Returns (exit code, the run's summary.json)."""
        from dinosim.config.resolve import resolve_run
        from dinosim.training.curriculum import RunHooks
        from dinosim.training.request import RunRequest
        from dinosim.training.runner import run

        hooks = request.pop("hooks", None) or RunHooks(log_stdout=False)
        config = resolve_run("velociraptor", "ppo", stages, self.overrides + overrides, n_envs=self.n_envs)
        code = run(RunRequest(command="curriculum" if len(stages) > 1 else "train", config=config,
                              timesteps=timesteps, run_dir=run_dir, progress=False, **request), hooks=hooks)
        return code, json.loads((run_dir / "summary.json").read_text())

    def assert_interrupted(self, proc: subprocess.Popen, signum: int, run_dir: Path) -> tuple[str, int]:
        """``proc`` (a ``dinosim_popen`` train/resume of ``run_dir``, sent ``signum``) ended like Ctrl-C: exit
        128 + signum, "interrupted (<signal>)" and the resume command on stderr, the run marked interrupted and
        checkpointed at the signal itself, every run file loadable. Returns (stdout, the checkpoint's step)."""
        # A process that does not exit is a failure with its output, not pytest's bare TimeoutExpired (CI once saw a
        # signalled subproc run hang at exit: fixed by InterruptSafeSubprocVecEnv, tested in test_training_units).
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"still running {exc.timeout} s after {signal.Signals(signum).name}:\n"
                                 f"{out[-2000:]}\n{err[-3000:]}") from None
        assert proc.returncode == 128 + signum, err[-3000:]
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        assert f"interrupted ({name})" in err and f"dinosim resume {run_dir}" in err, err[-3000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        newest = max(int(p.stem.split("_")[1]) for p in (run_dir / "stage1" / "checkpoints").glob("*.json"))
        assert newest == summary["global_step"]  # the signal itself was checkpointed
        self.assert_every_file_loads(run_dir)
        return out, newest

    @staticmethod
    def assert_every_file_loads(run_dir: Path) -> None:
        """Every run file parses: .zip as a PPO model, .pkl as a VecNormalize, .json/.jsonl, .npz, .toml."""
        import numpy as np
        import tomllib
        from stable_baselines3 import PPO

        counts = {".zip": 0, ".pkl": 0, ".json": 0, ".npz": 0}
        for path in run_dir.rglob("*"):
            if not path.is_file():
                continue
            if path.suffix == ".zip":
                PPO.load(str(path), device="cpu")
            elif path.suffix == ".pkl":
                with open(path, "rb") as fh:
                    assert pickle.load(fh).obs_rms is not None
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                for line in path.read_text().splitlines():
                    json.loads(line)
            elif path.suffix == ".npz":
                with np.load(path) as data:
                    assert len(data["timesteps"]) == len(data["results"])
            elif path.suffix == ".toml":
                tomllib.loads(path.read_text())
            counts[path.suffix] = counts.get(path.suffix, 0) + 1
        assert counts[".zip"] and counts[".pkl"] and counts[".json"] and counts[".npz"], counts
        from dinosim.run_integrity import check_policy_pair
        from dinosim.runfolder import pair_meta_file

        for model in run_dir.rglob("*model.zip"):  # best/, final and checkpoints all carry their checksums
            assert pair_meta_file(model).exists(), model
            check_policy_pair(model, model.with_name(model.name.replace("model.zip", "vecnormalize.pkl")))


@pytest.fixture(scope="session")
def tiny() -> TinyTraining:
    return TinyTraining()


# Tiny but real runs for the tracking tests: 2 envs, 64-step rollouts, an evaluation every 256 steps, 60-step
# episodes. Every gate value is set here (not taken from the committed configs). Stage 1 passes its gate on the first
# evaluation (required_consecutive=1, low bars) so stage 2 starts early; stage 2's bar is unreachable and it has a
# success-rate gate, so both kinds of gate segments exist.
TRACKING_TINY = [
    "ppo.n_steps=64", "ppo.batch_size=64", "ppo.n_epochs=1", "ppo.policy_kwargs.net_arch=[16,16]",
    "curriculum.eval_freq=256", "curriculum.eval_episodes=2", "curriculum.save_freq=512",
    "env.max_episode_steps=60", "curriculum.min_avg_episode_length=0.0",
    "1.curriculum.min_avg_reward=-1000.0", "1.curriculum.required_consecutive=1",
    "2.curriculum.min_avg_reward=1000.0", "2.curriculum.min_success_rate=0.5", "curriculum.gate_episodes=2",
    "2.env.task=strike",  # a success-rate gate needs a task that reports success
    "curriculum.critic_warmup_timesteps=0",  # stage 2's 25k from its file would outlast the budget (refused)
]
RUNS = {"A": [], "B": ["env.alive_bonus=0.5", "--seed", "1"]}


def _make_tiny_run(base: Path, name: str) -> Path:
    """``base/runs/velociraptor/<name>``, trained once per test session (reused when already finished)."""
    run_dir = base / "runs" / "velociraptor" / name
    summary = run_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("status") == "finished":
        return run_dir
    extra = [a for a in RUNS[name] if "=" in a]
    options = [a for a in RUNS[name] if "=" not in a]
    code, _, err = _main_in_process("curriculum", "--species", "velociraptor", "--stages", "1-2", "--timesteps",
                                    "768", "--n-envs", "2", "--run-dir", str(run_dir), "--no-progress", *options,
                                    "--override", *TRACKING_TINY, *extra)
    assert code == 0, err[-3000:]
    return run_dir


def _main_in_process(*args: str, **env: str) -> tuple[int, str, str]:
    """``dinosim ARGS`` in this process with W&B disabled and ``env`` set (a subprocess would pay ~5 s of
    torch/SB3/MuJoCo imports for a run of ~1 s); returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for name, value in {"WANDB_MODE": "disabled", **env}.items():
            mp.setenv(name, value)
        code = _exit_code_of_main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp() / "tracking"
    return {name: _make_tiny_run(base, name) for name in RUNS}


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """The overrides of the tiny tracking runs (``run_a``/``tiny_runs``)."""
    return list(TRACKING_TINY)


@pytest.fixture(scope="session")
def run_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_tiny_run(tmp_path_factory.getbasetemp() / "tracking", "A")


@pytest.fixture
def started_run(tmp_path: Path) -> Path:
    """A run folder as `curriculum` leaves it before its first log line: summary.json, run.json, stage1/."""
    run = tmp_path / "runs" / "velociraptor" / "fresh"
    (run / "stage1").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "running", "stages": {"1": {"status": "running"}}}))
    return run


# -- synthetic run folders -----------------------------------------------------------------------------------------
def _ev(step: int, ret: float, length: float, rate: Optional[float] = None, **components: float) -> dict:
    """One metrics.jsonl record (``rate``: success rate); ``components`` are per-episode sums of reward terms."""
    return {"global_step": step, "eval/mean_reward": ret, "eval/mean_ep_length": length,
            "eval/success_rate": rate, **{f"eval/reward/{k}": v for k, v in components.items()}}


def _make_run(root: Path, name: str, stages: dict[int, list[dict]], species: str = "velociraptor",
              overrides: tuple[str, ...] = (), algorithm: str = "ppo", entries: Optional[dict] = None,
              status: str = "finished", message: Optional[str] = None, n_envs: int = 4,
              timesteps: Optional[int] = None) -> Path:
    """A run folder like `train`/`curriculum` writes: stageN/config.toml (the real resolved config), summary.json,
    metrics.jsonl. ``stages``: {stage: eval records}; stages follow each other in global steps."""
    from dinosim.config.resolve import RunConfig, resolve_run
    from dinosim.config.toml_writer import dumps

    run = root / species / name
    config = resolve_run(species, algorithm, tuple(stages), overrides, n_envs=n_envs)
    lines, summary_stages, start = [], {}, 0
    for n, records in stages.items():
        folder = run / f"stage{n}"
        folder.mkdir(parents=True)
        data: dict[str, Any] = {"run": {"species": species, "algorithm": algorithm, "stage": n,
                                        "stages": list(stages), "n_envs": n_envs, "timesteps": timesteps}}
        data.update(RunConfig.to_dict(config)[f"stage{n}"])
        (folder / "config.toml").write_text(dumps(data))
        shifted = [{**r, "global_step": start + r["global_step"], "stage": n} for r in records]
        lines += shifted
        used = max((r["global_step"] for r in records), default=0)
        entry = {"stage": n, "status": "finished", "budget": timesteps or config.curriculum(n).timesteps,
                 "start_step": start, "timesteps_used": used, "gate_passed": False}
        entry.update((entries or {}).get(n, {}))
        summary_stages[str(n)] = entry
        start += used
    (run / "summary.json").write_text(json.dumps({"status": status, "message": message, "species": species,
                                                  "algorithm": algorithm, "stages": summary_stages}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def _balance_evals(length: float = 490, alive: float = 490, n: int = 4, ret: Optional[float] = None,
                   **extra: float) -> list[dict]:
    return [_ev(25000 * (i + 1), ret if ret is not None else 560 + 10 * i, length, alive=alive, posture=200, **extra)
            for i in range(n)]


@pytest.fixture(scope="session")
def ev() -> Callable[..., dict]:
    return _ev


@pytest.fixture(scope="session")
def make_run() -> Callable[..., Path]:
    return _make_run


@pytest.fixture(scope="session")
def balance_evals() -> Callable[..., list[dict]]:
    return _balance_evals


# -- sweeps ------------------------------------------------------------------------------------------------------------
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


def _run_engine(path: Path, tmp_path: Path, **options: Any) -> Any:
    from dinosim.sweeps.engine import EngineOptions, run_sweep
    from dinosim.sweeps.yaml_spec import load_sweep

    engine_options = EngineOptions(sweep_dir=tmp_path / "sweepdir", poll_interval=0.05, sampler_seed=0, **options)
    return run_sweep(load_sweep(path), engine_options)


def _sweep_trials(tmp_path: Path, name: str = "fake") -> list:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "sweepdir" / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


@pytest.fixture(scope="session")
def sweep_program() -> str:
    return PROGRAM


@pytest.fixture(scope="session")
def write_sweep() -> Callable[..., Path]:
    return _write_sweep


@pytest.fixture(scope="session")
def expected_value() -> Callable[..., float]:
    return _expected_value


@pytest.fixture(scope="session")
def run_engine() -> Callable[..., Any]:
    return _run_engine


@pytest.fixture(scope="session")
def sweep_trials() -> Callable[..., list]:
    return _sweep_trials


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
        _missing_tool("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
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
