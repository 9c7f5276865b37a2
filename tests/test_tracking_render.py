"""Headless rendering (MuJoCo offscreen GL) of the REAL tiny run's policies to GIF/MP4, read back from disk."""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dinosim.errors import DinosimError
from dinosim.tracking.render import check_video_path, render_best_policy, render_episodes
from dinosim.training.builders import load_model
from dinosim.training.evaluation import EvalResult

GIF_FPS = 25  # 40 ms a frame: a whole number of GIF centiseconds


def gif_frames(path: Path) -> tuple[int, tuple[int, int], int]:
    """(frames stored, (width, height), total duration in ms) of a GIF, read with Pillow."""
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(image)]
        return image.n_frames, image.size, sum(durations)


def test_best_policy_gif_has_the_rendered_frames_at_the_requested_size(run_a, tmp_path):
    out = tmp_path / "stage1.gif"
    result = render_best_policy(run_a / "stage1", out, load_model=load_model, episodes=2, max_frames=12, width=160,
                                fps=GIF_FPS)
    full = sum(length + 1 for length in result.episode_lengths)  # reset frame + one per step, per episode
    assert len(result.episode_lengths) == 2 and all(n > 0 for n in result.episode_lengths)
    assert result.frames == min(12, full) and result.frames_capped == (full > 12)
    assert (result.width, result.height) == (160, 120)  # the env films 640x480; scaled, aspect kept

    stored, size, duration = gif_frames(out)
    assert size == (160, 120)
    assert duration == result.frames * 1000 // GIF_FPS  # identical frames may merge, playback time may not change
    assert 2 <= stored <= result.frames
    import imageio.v3 as iio

    pixels = iio.imread(out, index=None)
    assert pixels.shape[0] == stored and pixels.shape[1:3] == (120, 160)
    assert pixels[0].std() > 5  # a scene, not a blank frame
    # The env's reward is the sum of its reward_<term> components; the render tallies both per episode.
    for total, sums in zip(result.episode_returns, result.component_sums):
        assert total == pytest.approx(sum(sums.values()), abs=1e-6)


def _load_stage(stage_dir: Path):
    from dinosim.envs import make_env

    model = load_model("ppo", stage_dir / "best" / "model.zip")
    with open(stage_dir / "best" / "vecnormalize.pkl", "rb") as fh:
        vec_normalize = pickle.load(fh)
    import tomllib

    env_kwargs = tomllib.loads((stage_dir / "config.toml").read_text())["env"]
    return model, vec_normalize, lambda: make_env("velociraptor", env_kwargs, render_mode="rgb_array")


def test_render_episodes_plays_full_episodes_and_caps_only_frames(run_a, tmp_path):
    model, vec_normalize, factory = _load_stage(run_a / "stage2")
    first = render_episodes(model, vec_normalize, factory, tmp_path / "a.gif", episodes=3, deterministic=True,
                            fps=GIF_FPS, max_frames=5, seed=7, width=80)
    assert first.frames == 5 and first.frames_capped
    assert len(first.episode_lengths) == 3 and sum(first.episode_lengths) > 5  # metrics cover whole episodes
    again = render_episodes(model, vec_normalize, factory, tmp_path / "b.gif", episodes=3, deterministic=True,
                            fps=GIF_FPS, max_frames=5, seed=7, width=80)
    assert again.episode_returns == pytest.approx(first.episode_returns)  # seeded resets + deterministic policy
    strided = render_episodes(model, vec_normalize, factory, tmp_path / "c.gif", episodes=3, deterministic=True,
                              max_frames=10_000, seed=7, width=80, frame_every=10)
    assert strided.episode_lengths == first.episode_lengths
    assert strided.frames == sum(1 + n // 10 for n in first.episode_lengths) and not strided.frames_capped
    metrics = EvalResult(returns=first.episode_returns, lengths=first.episode_lengths, successes=first.successes,
                         components=first.component_sums).metrics()
    assert metrics["eval/mean_ep_length"] == pytest.approx(sum(first.episode_lengths) / 3)
    assert metrics["eval/success_rate"] is not None  # the tiny run's stage 2 has a target (a success gate)
    assert "eval/reward/alive" in metrics


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None,
                    reason="imageio-ffmpeg (MP4 encoder) not installed")
def test_mp4_holds_exactly_the_rendered_frames(run_a, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "stage1.mp4"
    result = render_best_policy(run_a / "stage1", out, load_model=load_model, episodes=1, max_frames=8, width=160,
                                fps=GIF_FPS)
    frames = iio.imread(out, index=None)
    assert frames.shape == (result.frames, 120, 160, 3)


def test_bad_paths_and_untrained_stage_are_dinosim_errors(run_a, tmp_path):
    with pytest.raises(DinosimError, match="use .gif or .mp4"):
        check_video_path(tmp_path / "x.avi")
    with pytest.raises(DinosimError, match="no such folder"):
        check_video_path(tmp_path / "missing" / "x.gif")
    with pytest.raises(DinosimError, match="train the stage first"):
        render_best_policy(run_a / "stage3", tmp_path / "x.gif", load_model=load_model)
    with pytest.raises(DinosimError, match="use 'best' or 'final'"):
        render_best_policy(run_a / "stage1", tmp_path / "x.gif", load_model=load_model, prefer="newest")
    (tmp_path / "stage1").mkdir()
    with pytest.raises(DinosimError, match="has no trained model"):
        render_best_policy(tmp_path / "stage1", tmp_path / "x.gif", load_model=load_model)


@pytest.mark.parametrize("backend", ["", "nonsense"])
def test_gl_backend_choice_in_a_fresh_process(backend):
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    if backend:
        env["MUJOCO_GL"] = backend
    code = ("from dinosim.errors import DinosimError\nfrom dinosim.tracking.render import ensure_gl_backend\n"
            "try:\n    print(ensure_gl_backend())\nexcept DinosimError as exc:\n    print('error:', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    if backend:
        assert proc.stdout.startswith("error: ") and "MUJOCO_GL=nonsense does not work" in proc.stdout
    else:
        assert proc.stdout.strip() in ("egl", "osmesa")


def test_cli_evaluate_gif_prints_metrics_and_writes_the_gif(run_a, tmp_path, dinosim_cli):
    """One rendering run with both GIF options: frames are its cost (software GL films ~0.25 s a frame here)."""
    out = tmp_path / "eval.gif"
    proc = dinosim_cli("evaluate", str(run_a), "--stage", "1", "--episodes", "1", "--gif", str(out),
                       "--gif-width", "96", "--gif-every", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "return" in proc.stdout and "reward components" in proc.stdout
    length = int(float(re.search(r"episode length\s+([\d.]+)", proc.stdout).group(1)))
    assert f"wrote {1 + length // 4} frames to {out}" in proc.stdout  # the reset frame, then every 4th step
    stored, size, _ = gif_frames(out)
    assert size == (96, 72) and 2 <= stored <= 1 + length // 4
    bad = dinosim_cli("evaluate", str(run_a), "--gif", str(tmp_path / "eval.avi"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize("backend,library", [("egl", "EGL"), ("osmesa", "OSMesa")])
def test_each_headless_backend_renders_the_scene(backend, library, tmp_path, missing_tool):
    """MUJOCO_GL=egl and =osmesa both film the standing raptor (`.ci/run` installs libegl1 and libosmesa6)."""
    import ctypes.util

    if ctypes.util.find_library(library) is None:
        missing_tool(f"lib{library} is not installed: .ci/run installs it")
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY")}, "MUJOCO_GL": backend}
    out = tmp_path / f"{backend}.npy"
    code = ("import numpy as np\nfrom dinosim.envs import make_env\n"
            "env = make_env('velociraptor', {}, render_mode='rgb_array')\nenv.reset(seed=0)\n"
            f"np.save({str(out)!r}, env.render())\nenv.close()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import numpy as np

    frame = np.load(out)
    assert frame.shape == (480, 640, 3) and frame.std() > 5
