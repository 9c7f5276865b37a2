"""`dinosim watch`: play a trained policy live in MuJoCo's passive viewer (``mujoco.viewer.launch_passive``).

Contract: :func:`check_display` and :func:`watch_stage_dir` raise :class:`DinosimError` (one line) for a machine
without a display, a folder that is not a run, or a stage without a trained model, before torch or MuJoCo is
imported. The viewer shows the env's own ``MjModel``/``MjData``; the policy acts at the env's control rate and the
loop sleeps to keep it real time, resetting after each episode until the viewer window is closed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from dinosim.errors import DinosimError
from dinosim.tracking.render import find_policy_files, stage_env_spec

STAGE_PREFIX = "stage"


def has_display() -> bool:
    """A window can open: always on macOS/Windows; on Linux when $DISPLAY (X11) or $WAYLAND_DISPLAY is set."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def check_display(run_dir: Path) -> None:
    """Raise DinosimError pointing to ``evaluate --gif`` when no window can open: no display, or GLFW (the
    viewer's window library) fails to initialise on it (MuJoCo's viewer would otherwise end the process)."""
    hint = f"render to a file instead: dinosim evaluate {run_dir} --gif out.gif"
    if not has_display():
        raise DinosimError(f"no display ($DISPLAY is unset), so the viewer cannot open; {hint}")
    try:
        import glfw
    except ImportError:  # pragma: no cover - a mujoco dependency; let the viewer report it
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = glfw.init()
    if not opened:
        where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "this machine"
        raise DinosimError(f"cannot open a window on display {where} (GLFW failed to initialise); {hint}")
    glfw.terminate()


def watch_stage_dir(run_dir: Path, stage: Optional[int]) -> Path:
    """The stage folder to watch: ``stage`` of ``run_dir`` or, by default, its last stage with a trained model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not (run_dir / "run.json").exists():
        raise DinosimError(f"{run_dir}: not a dinosim run folder (no run.json)")
    if stage is not None:
        folder = run_dir / f"{STAGE_PREFIX}{stage}"
        find_policy_files(folder)  # raises when the stage has no model
        return folder
    folders = sorted((p for p in run_dir.glob(f"{STAGE_PREFIX}*") if p.name[len(STAGE_PREFIX):].isdigit()),
                     key=lambda p: int(p.name[len(STAGE_PREFIX):]), reverse=True)
    for folder in folders:
        try:
            find_policy_files(folder)
            return folder
        except DinosimError:
            continue
    raise DinosimError(f"{run_dir}: no stage has a trained model yet; train or resume it first")


def watch_policy(stage_dir: Path, load_model: Callable[[str, Path], Any], *, deterministic: bool = True,
                 launch: Optional[Callable[..., Any]] = None, max_episodes: Optional[int] = None,
                 realtime: bool = True) -> int:
    """Play the stage's best policy (see ``find_policy_files``) in ``launch`` (default
    ``mujoco.viewer.launch_passive``) until the window closes or ``max_episodes`` ended; print one line per
    episode (return, length, success). ``load_model(algorithm, path)`` loads an SB3 model. Returns the episodes
    played to their end."""
    import pickle

    model_path, vecnorm_path = find_policy_files(stage_dir)
    species, algorithm, env_kwargs = stage_env_spec(stage_dir)
    from dinosim.envs import make_env

    if launch is None:
        import mujoco.viewer

        launch = mujoco.viewer.launch_passive
    policy = load_model(algorithm, model_path)
    vec_normalize = None
    if vecnorm_path is not None:
        with open(vecnorm_path, "rb") as fh:
            vec_normalize = pickle.load(fh)
    env = make_env(species, env_kwargs, seed=0)
    raw, finished = env.unwrapped, 0
    print(f"watching {species} {stage_dir.name}: {model_path} (close the viewer window to stop)", flush=True)
    before = set(threading.enumerate())
    try:
        with _joined_on_exit(before), launch(raw.model, raw.data) as viewer:
            obs, _ = env.reset(seed=0)
            total, length = 0.0, 0
            while viewer.is_running() and (max_episodes is None or finished < max_episodes):
                started = time.perf_counter()
                policy_obs = vec_normalize.normalize_obs(obs) if vec_normalize is not None else obs
                action, _ = policy.predict(policy_obs, deterministic=deterministic)
                obs, reward, terminated, truncated, info = env.step(action)
                total, length = total + float(reward), length + 1
                viewer.sync()
                if terminated or truncated:
                    finished += 1
                    success = info.get("is_success")
                    print(f"episode {finished}: return {total:.1f}, length {length}"
                          + ("" if success is None else f", success {'yes' if success else 'no'}"), flush=True)
                    obs, _ = env.reset(seed=finished)
                    total, length = 0.0, 0
                if realtime:
                    time.sleep(max(0.0, raw.dt - (time.perf_counter() - started)))
    finally:
        env.close()
    return finished


@contextmanager
def _joined_on_exit(before: set[threading.Thread], timeout: float = 10.0) -> Iterator[None]:
    """Wait for the threads started inside the block (the passive viewer's daemon GUI thread) to end after it:
    closing the viewer only requests an exit, and an interpreter that ends while that thread still tears down
    its GL context crashes (segfault measured with mujoco 4.0 under Xvfb)."""
    try:
        yield
    finally:
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout)
