"""Issue 14 at the command line: own config folders, `config export`, `--device`, output levels, `watch`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dinosim.species import BUILTIN_CONFIGS_DIR, SPECIES

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "stable_baselines3", "wandb", "mujoco")
PROBE = ("import sys\nfrom dinosim.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
         f"    print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n")


def dinosim(*args: str, probe: bool = False, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DINOSIM_CONFIG_DIR", "DISPLAY", "WAYLAND_DISPLAY")}
    command = [sys.executable, "-c", PROBE] if probe else [sys.executable, "-m", "dinosim"]
    return subprocess.run(command + list(args), capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**base, "WANDB_MODE": "disabled", **env})


def one_error_line(proc: subprocess.CompletedProcess, heavy: bool = True) -> str:
    """The single ``error:`` line of a failed probe run (exit 2, no heavy import unless ``heavy`` is False)."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) == 2 and lines[1].startswith("HEAVY:"), proc.stderr
    if heavy:
        assert lines[1] == "HEAVY:"
    return lines[0]


def test_config_export_writes_the_committed_files_once(tmp_path):
    proc = dinosim("config", "export", "--species", "trex", str(tmp_path / "mine"), probe=True)
    assert proc.returncode == 0 and proc.stderr.strip() == "HEAVY:", proc.stderr
    written = sorted(p.name for p in (tmp_path / "mine" / "trex").iterdir())
    assert written == sorted(SPECIES["trex"].stage_files)
    for name in written:
        assert (tmp_path / "mine" / "trex" / name).read_text() == (BUILTIN_CONFIGS_DIR / "trex" / name).read_text()
    assert "--config-dir" in proc.stdout
    error = one_error_line(dinosim("config", "export", "--species", "trex", str(tmp_path / "mine"), probe=True))
    assert "already exists" in error and "--force" in error
    (tmp_path / "mine" / "trex" / written[0]).write_text("edited")
    assert dinosim("config", "export", "--species", "trex", str(tmp_path / "mine"), "--force").returncode == 0
    assert (tmp_path / "mine" / "trex" / written[0]).read_text() != "edited"
    assert dinosim("config", "export", str(tmp_path / "all")).returncode == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(SPECIES)


def _own_configs(tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    shutil.copytree(BUILTIN_CONFIGS_DIR / "trex", mine / "trex")
    path = mine / "trex" / "stage1_balance.toml"
    text = path.read_text()
    assert "[ppo]" in text
    path.write_text(text.replace("[ppo]", "[ppo]\nn_epochs = 7", 1).replace("\nn_epochs = ", "\n#n_epochs = ", 2)
                    .replace("#n_epochs = 7", "n_epochs = 7"))
    return mine


def test_config_dir_option_and_environment_variable_use_own_configs(tmp_path):
    mine = _own_configs(tmp_path)
    args = ("train", "--species", "trex", "--stage", "1", "--dry-run")
    committed = dinosim(*args)
    by_option = dinosim(*args, "--config-dir", str(mine), probe=True)
    by_env = dinosim(*args, DINOSIM_CONFIG_DIR=str(mine))
    assert by_option.returncode == by_env.returncode == committed.returncode == 0, by_option.stderr + by_env.stderr
    assert "n_epochs = 7" in by_option.stdout and "n_epochs = 7" in by_env.stdout
    assert "n_epochs = 7" not in committed.stdout
    assert by_option.stderr.strip() == "HEAVY:"
    error = one_error_line(dinosim("train", "--species", "velociraptor", "--stage", "1", "--dry-run",
                                   "--config-dir", str(mine), probe=True))
    assert "velociraptor/stage1_balance.toml: config file not found" in error


def test_verbose_and_quiet_exclude_each_other():
    assert "exclude each other" in one_error_line(dinosim("train", "--stage", "1", "-v", "-q", probe=True))


def test_cuda_without_a_gpu_is_one_line_before_the_run_folder_exists(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    proc = dinosim("train", "--stage", "1", "--device", "cuda", "--timesteps", "25000", "--run-dir",
                   str(tmp_path / "run"), probe=True)
    error = one_error_line(proc, heavy=False)  # checking CUDA needs torch
    assert "--device cuda" in error and "no CUDA GPU" in error
    assert not (tmp_path / "run").exists()
    if torch.__version__.endswith("+cpu"):  # a CPU-only build is known from its version: the dry run refuses too
        dry = dinosim("train", "--stage", "1", "--device", "cuda", "--dry-run", probe=True)
        assert "CPU-only build" in one_error_line(dry)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["default", "-q", "-v"])
def test_output_levels_of_a_real_run(tmp_path, level, tiny_overrides, dinosim_main, monkeypatch):
    """TINY's stage-1 gate passes its first screening (streak 1/1), then a 4-episode gate check ends the stage.
    -q runs in a subprocess (nothing at all may reach its stderr, warnings included); the other levels run in
    this process (``dinosim_main``), sparing ~5 s of imports each."""
    flags = [] if level == "default" else [level]
    args = ["train", "--species", "velociraptor", "--stage", "1", "--timesteps", "512", "--n-envs", "2",
            "--run-dir", str(tmp_path / "run"), *flags, "--override",
            *[o for o in tiny_overrides if not o.startswith("2.")], "curriculum.gate_episodes=4"]
    if level == "-q":
        proc = dinosim(*args)
    else:
        for name in ("DINOSIM_CONFIG_DIR", "DISPLAY", "WAYLAND_DISPLAY"):  # dinosim()'s environment
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("WANDB_MODE", "disabled")
        proc = subprocess.CompletedProcess(args, *dinosim_main(*args))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    finished = f"run finished: {tmp_path / 'run'} (global step 256)"
    if level == "-q":
        assert lines == [finished] and proc.stderr == ""
        return
    assert lines[0] == f"run folder: {tmp_path / 'run'}"
    assert proc.stderr.startswith("note: stage 1: curriculum.eval_envs = 8 lowered to 4: an evaluation plays at most "
                                  "4 episodes (eval_episodes 2, gate_episodes 4)"), proc.stderr  # as --dry-run notes
    assert lines[-2:] == [finished, lines[-1]] and "gate passed at step 256" in lines[-1]
    evals = [line for line in lines if " eval return " in line or " gate check " in line]
    assert len(evals) == 2, lines
    assert evals[0].startswith("stage 1  step 256  eval return ") and evals[0].endswith("gate streak 1/1")
    assert evals[1].startswith("stage 1  step 256  gate check (4 episodes): return ") and "lower bound" in evals[1]
    assert ("| eval/" in proc.stdout) == (level == "-v")  # SB3's table
    assert json.loads((tmp_path / "run" / "run.json").read_text())["device"] == "cpu"  # PPO's default


def test_eval_lines_of_screenings_and_gate_checks():
    from dinosim.training.console import eval_line

    record = {"stage": 3, "global_step": 20000, "eval/mean_reward": 512.34, "eval/std_reward": 40.1,
              "eval/mean_ep_length": 480.2, "eval/success_rate": 0.667, "eval_kind": "screen"}
    assert eval_line(record, 1, 3) == ("stage 3  step 20,000  eval return 512.3 ± 40.1  length 480  success 0.67  "
                                       "gate streak 1/3")
    gate = {**record, "eval_kind": "gate", "eval/episodes": 100, "eval/return_lb": 500.81, "eval/success_lb": 0.581}
    assert eval_line(gate, 3, 3) == ("stage 3  step 20,000  gate check (100 episodes): return 512.3 ± 40.1 "
                                     "(lower bound 500.8)  length 480  success 0.67 (lower bound 0.58)")
    no_success = {k: v for k, v in record.items() if k != "eval/success_rate"}
    assert "success" not in eval_line(no_success, 0, 2) and eval_line(no_success, 0, 2).endswith("streak 0/2")


def test_watch_without_a_display_points_to_evaluate_gif(tmp_path):
    error = one_error_line(dinosim("watch", str(tmp_path), probe=True))
    assert "no display" in error and f"dinosim evaluate {tmp_path} --gif out.gif" in error
    bad_display = one_error_line(dinosim("watch", str(tmp_path), probe=True, DISPLAY=":9999"))
    assert "cannot open a window on display :9999" in bad_display and "--gif" in bad_display


@pytest.fixture
def xvfb_display(missing_tool):
    if shutil.which("Xvfb") is None:
        missing_tool("Xvfb is not installed: apt-get install xvfb")
    read_end, write_end = os.pipe()  # Xvfb picks a free display number and writes it there once it is ready
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24"],
                              pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as pipe:
            yield f":{pipe.readline().strip()}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_watch_plays_episodes_in_the_real_viewer(run_a, xvfb_display):
    run_dir = run_a
    code = ("from pathlib import Path\nfrom dinosim.tracking.watch import check_display, watch_policy, "
            "watch_stage_dir\nfrom dinosim.training.builders import load_model\n"
            f"run = Path({str(run_dir)!r})\ncheck_display(run)\n"
            "print('played', watch_policy(watch_stage_dir(run, 1), load_model, max_episodes=2, realtime=False))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**env, "DISPLAY": xvfb_display})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("watching velociraptor stage1: ") and lines[-1] == "played 2"
    assert [line.split(":")[0] for line in lines[1:-1]] == ["episode 1", "episode 2"]
