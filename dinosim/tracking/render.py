"""Headless rendering of a policy to a GIF or MP4 (MuJoCo offscreen: ``MUJOCO_GL=egl``, fallback ``osmesa``).

Contract:

* :func:`check_video_path` and :func:`ensure_gl_backend` run before anything heavy and raise
  :class:`~dinosim.errors.DinosimError` with what to do (bad suffix, missing folder, no MP4 encoder, no GL).
  ``MUJOCO_GL`` is read by ``mujoco`` when it is first imported, so call :func:`ensure_gl_backend` before
  importing ``mujoco`` or ``dinosim.envs`` in a process that renders.
* :func:`render_episodes` plays ``episodes`` full episodes of ``model`` in one env made by ``env_factory``
  (created with ``render_mode="rgb_array"``; dinosim envs film with a camera that tracks the animal), normalising
  observations with the frozen ``vec_normalize`` statistics, and writes the frames (the reset frame, then one
  per step) up to ``max_frames``. It returns a :class:`RenderResult` with the frame count, frame size and the
  episodes' returns, lengths, success flags and reward-component sums.
* :func:`render_best_policy` does the same for a stage folder's best model (for W&B videos and README GIFs); the
  caller passes the model loader (``dinosim.training.builders.load_model``), so this module never imports training.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from dinosim.errors import DinosimError
from dinosim.runfolder import BEST_DIR, MODEL_FILE, RUN_FILE, STAGE_CONFIG_FILE, policy_files, read_json, stage_number

VIDEO_SUFFIXES = (".gif", ".mp4")
GL_BACKENDS = ("egl", "osmesa")
_PROBE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>')\n"
    "r = mujoco.Renderer(m, 8, 8)\n"
    "d = mujoco.MjData(m)\n"
    "mujoco.mj_forward(m, d)\n"
    "r.update_scene(d)\n"
    "r.render()\n"
)
_gl_checked: Optional[str] = None


@dataclass
class RenderResult:
    """What :func:`render_episodes` wrote."""

    path: Path
    frames: int
    width: int
    height: int
    fps: int
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    successes: list[Optional[bool]] = field(default_factory=list)  # last step's info["is_success"] (None: n/a)
    component_sums: list[dict[str, float]] = field(default_factory=list)  # per episode: reward_<term> summed
    frames_capped: bool = False  # max_frames was reached before the last episode ended


def check_video_path(path: Path) -> Path:
    """``path`` if it is a writable .gif or .mp4 target (and an MP4 encoder is importable for .mp4)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise DinosimError(f"{path}: unsupported video type {suffix or '(none)'}; use .gif or .mp4")
    if not path.parent.is_dir():
        raise DinosimError(f"{path.parent}: no such folder for the video")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401  (ships an ffmpeg binary in its wheel)
        except ImportError:
            raise DinosimError(
                f"{path}: writing .mp4 needs an ffmpeg encoder; `pip install imageio-ffmpeg`, or write a .gif"
            ) from None
    return path


def preferred_video_suffix() -> str:
    """".mp4" when an MP4 encoder (imageio-ffmpeg) is installed, else ".gif" (e.g. for W&B stage videos)."""
    import importlib.util

    return ".mp4" if importlib.util.find_spec("imageio_ffmpeg") is not None else ".gif"


def ensure_gl_backend() -> str:
    """Choose a headless MuJoCo GL backend and return the one in use ("egl" or "osmesa"; a user's own choice,
    e.g. "glfw" with a display, is kept).

    A ``MUJOCO_GL`` already set is kept when it works. Otherwise EGL is tried, then OSMesa, each in a short
    subprocess (a failed GL initialisation can not be undone in-process), and ``MUJOCO_GL`` /
    ``PYOPENGL_PLATFORM`` are set for this process. Raises :class:`DinosimError` when none works, or when
    ``mujoco`` was already imported without a headless backend.
    """
    global _gl_checked
    if _gl_checked is not None:
        return _gl_checked
    current = os.environ.get("MUJOCO_GL", "").lower()
    if "mujoco" in sys.modules:
        if current in GL_BACKENDS or os.environ.get("DISPLAY"):
            _gl_checked = current or "glfw"
            return _gl_checked
        raise DinosimError(
            "mujoco was imported before a headless GL backend was chosen; set MUJOCO_GL=egl (or osmesa) "
            "in the environment"
        )
    candidates = (current,) if current else GL_BACKENDS
    errors = []
    for backend in candidates:
        problem = _probe(backend)
        if problem is None:
            os.environ["MUJOCO_GL"] = backend
            if backend in GL_BACKENDS:
                os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            _gl_checked = backend
            return backend
        errors.append(f"{backend}: {problem}")
    hint = ("install a headless GL library (Debian: apt-get install libegl1, or libosmesa6 for MUJOCO_GL=osmesa)"
            if not current else f"MUJOCO_GL={current} does not work here; unset it or use egl/osmesa")
    raise DinosimError(f"no headless OpenGL backend for rendering ({'; '.join(errors)}); {hint}")


def render_episodes(
    model: Any,
    vec_normalize: Any,
    env_factory: Callable[[], Any],
    path: Path,
    episodes: int = 1,
    deterministic: bool = True,
    fps: Optional[int] = None,
    max_frames: int = 600,
    seed: Optional[int] = 0,
    width: Optional[int] = None,
    frame_every: int = 1,
) -> RenderResult:
    """Play ``episodes`` complete episodes of ``model``; write their first ``max_frames`` frames to ``path``.

    ``vec_normalize``: the stage's ``VecNormalize`` (or None); only its observation statistics are used, never
    updated. ``env_factory()`` must return a Gymnasium env whose ``render()`` gives an RGB array. Episode ``i``
    is reset with ``seed + i`` (unseeded when ``seed`` is None). Every episode is played to its end, so the
    returned metrics are those of ``episodes`` full episodes (:meth:`RenderResult.eval_result`); frames are
    taken (reset frame, then one per step) only until ``max_frames``, which bounds memory: GIF frames are kept
    quantised (1 byte a pixel) until the file is written, MP4 frames are streamed.
    ``width``: scale frames to this width (aspect kept, even height) before writing, e.g. for small README GIFs.
    ``frame_every``: keep the frame of every N-th step only (and each reset frame); smaller files.
    ``fps``: playback rate (default: the env's ``metadata["render_fps"] / frame_every``, i.e. real time). In a GIF,
    Pillow stores a run of identical frames as one frame with the summed duration, so a GIF may hold fewer frames
    than :attr:`RenderResult.frames` while its playback time is still ``frames / fps``.
    """
    path = check_video_path(path)
    if episodes < 1 or max_frames < 1 or frame_every < 1 or (fps is not None and fps < 1):
        raise DinosimError("episodes, max_frames, frame_every and fps must be at least 1")
    ensure_gl_backend()
    import numpy as np

    from dinosim.envs.rewards import INFO_PREFIX

    env = env_factory()
    if fps is None:
        fps = max(1, int(round((env.metadata.get("render_fps") or 30) / frame_every)))
    sink = _FrameSink(path, fps, width)
    result = RenderResult(path=path, frames=0, width=0, height=0, fps=fps)
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=None if seed is None else seed + episode)
            if sink.count < max_frames:
                sink.add(_frame(env, first=episode == 0))
            total, length, sums, done, info = 0.0, 0, {}, False, {}
            while not done:
                policy_obs = vec_normalize.normalize_obs(obs) if vec_normalize is not None else obs
                action, _ = model.predict(policy_obs, deterministic=deterministic)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                length += 1
                for key, value in info.items():
                    if key.startswith(INFO_PREFIX) and np.isscalar(value):
                        term = key[len(INFO_PREFIX):]
                        sums[term] = sums.get(term, 0.0) + float(value)
                done = bool(terminated or truncated)
                if length % frame_every:
                    continue
                if sink.count < max_frames:
                    sink.add(_frame(env))
                else:
                    result.frames_capped = True
            success = info.get("is_success")
            result.episode_returns.append(total)
            result.episode_lengths.append(length)
            result.successes.append(None if success is None else bool(success))
            result.component_sums.append(sums)
    finally:
        env.close()
        sink.close()
    result.frames, result.height, result.width = sink.count, sink.height, sink.width
    return result


def render_best_policy(
    stage_dir: Path,
    path: Path,
    *,
    load_model: Callable[[str, Path], Any],
    episodes: int = 1,
    deterministic: bool = True,
    fps: Optional[int] = None,
    max_frames: int = 300,
    seed: Optional[int] = 0,
    width: Optional[int] = None,
    frame_every: int = 1,
    prefer: str = "best",
) -> RenderResult:
    """Render the best model of a stage folder (``best/``, else the final ``model.zip``) to ``path``.

    ``load_model(algorithm, model_path)`` returns the policy (``dinosim.training.builders.load_model``).

    ``prefer="final"`` renders the stage's final ``model.zip`` first instead (``best/`` is chosen by mean eval
    return, which in a behaviour stage can favour surviving over succeeding).

    Reads the stage's ``config.toml`` for species, algorithm and env kwargs. Raises :class:`DinosimError` for a
    folder that is not a trained stage, a bad video path or no GL backend, before loading torch.
    """
    stage_dir = Path(stage_dir)
    path = check_video_path(path)
    model_path, vecnorm_path = find_policy_files(stage_dir, prefer)
    species, algorithm, env_kwargs = stage_env_spec(stage_dir)
    ensure_gl_backend()
    import pickle

    from dinosim.envs import make_env
    from dinosim.run_integrity import check_policy_pair, loading

    check_policy_pair(model_path, vecnorm_path)  # a damaged best/ pair: one line naming the file
    model = load_model(algorithm, model_path)
    vec_normalize = None
    if vecnorm_path is not None:
        with loading(vecnorm_path, "normalisation file"), open(vecnorm_path, "rb") as fh:
            vec_normalize = pickle.load(fh)

    def factory() -> Any:
        return make_env(species, env_kwargs, seed=seed, render_mode="rgb_array")

    return render_episodes(model, vec_normalize, factory, path, episodes=episodes, deterministic=deterministic,
                           fps=fps, max_frames=max_frames, seed=seed, width=width, frame_every=frame_every)


def find_policy_files(stage_dir: Path, prefer: str = "best") -> tuple[Path, Optional[Path]]:
    """:func:`dinosim.runfolder.policy_files` of a stage folder, or a :class:`DinosimError` saying what to do."""
    stage_dir = Path(stage_dir)
    model, vecnorm = policy_files(stage_dir, prefer)  # checks ``prefer`` first
    if not stage_dir.is_dir():
        raise DinosimError(f"{stage_dir}: no such stage folder; train the stage first")
    if model is None:
        raise DinosimError(f"{stage_dir} has no trained model ({BEST_DIR}/ or {MODEL_FILE}); "
                           "train or resume the stage first")
    return model, vecnorm


def stage_env_spec(stage_dir: Path) -> tuple[str, str, dict[str, Any]]:
    """(species, algorithm, env kwargs) of a stage: its ``config.toml`` (``[run]``, ``[env]`` or ``[stageN.env]``),
    else the run's ``run.json`` (``config.run`` and ``config.stageN.env``)."""
    from dinosim.config.loader import loads_toml

    stage_dir = Path(stage_dir)
    stage = stage_number(stage_dir)
    config: dict[str, Any] = {}
    if (stage_dir / STAGE_CONFIG_FILE).exists():
        config = loads_toml((stage_dir / STAGE_CONFIG_FILE).read_text())
    run_file = stage_dir.parent / RUN_FILE
    run_config = read_json(run_file).get("config", {}) if run_file.exists() else {}
    run = dict(config.get("run") or run_config.get("run") or {})
    stage_table = (config.get(f"stage{stage}") or run_config.get(f"stage{stage}") or {}) if stage else {}
    env_kwargs = dict(config.get("env") or stage_table.get("env") or {})
    species, algorithm = run.get("species"), run.get("algorithm", "ppo")
    if not species:
        raise DinosimError(f"{stage_dir}: no species in config.toml or run.json; is this a dinosim stage folder?")
    return str(species), str(algorithm), env_kwargs


class _FrameSink:
    """Frames to a GIF (Pillow; quantised as they arrive, to the first frame's palette, to keep memory and file
    small) or an MP4 (imageio-ffmpeg, streamed)."""

    def __init__(self, path: Path, fps: int, width: Optional[int] = None) -> None:
        self.path, self.fps, self.target_width = path, fps, width
        self.count = self.width = self.height = 0
        self._gif_frames: list[Any] = []
        self._writer: Any = None

    def add(self, frame: Any) -> None:
        if self.target_width and frame.shape[1] != self.target_width:
            import numpy as np
            from PIL import Image

            height = max(2, 2 * round(frame.shape[0] * self.target_width / frame.shape[1] / 2))
            frame = np.asarray(Image.fromarray(frame).resize((self.target_width, height), Image.Resampling.LANCZOS))
        if self.count == 0:
            self.height, self.width = int(frame.shape[0]), int(frame.shape[1])
        elif frame.shape[:2] != (self.height, self.width):
            raise RuntimeError(f"frame size changed from {(self.height, self.width)} to {frame.shape[:2]}")
        if self.path.suffix.lower() == ".gif":
            from PIL import Image

            image = Image.fromarray(frame)
            if self._gif_frames:  # one palette (the first frame's) for all: smaller diffs between frames
                self._gif_frames.append(image.quantize(palette=self._gif_frames[0], dither=Image.Dither.NONE))
            else:
                self._gif_frames.append(image.quantize(colors=255, dither=Image.Dither.NONE))
        else:
            if self._writer is None:
                import imageio.v2 as imageio

                self._writer = imageio.get_writer(self.path, fps=self.fps, codec="libx264", quality=7,
                                                  macro_block_size=2, pixelformat="yuv420p")
            self._writer.append_data(frame)
        self.count += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        elif self._gif_frames:
            first, rest = self._gif_frames[0], self._gif_frames[1:]
            # optimize: Pillow stores only the changed part of each frame (identical frames merge, durations add up)
            first.save(self.path, save_all=True, append_images=rest, duration=max(20, round(1000 / self.fps)),
                       loop=0, optimize=True)


def _frame(env: Any, first: bool = False) -> Any:
    """The env's current RGB frame; on the very first frame, a GL failure becomes a :class:`DinosimError`."""
    import numpy as np

    try:
        frame = env.render()
    except Exception as exc:  # a GL context that fails only when first used (e.g. EGL without a device)
        if not first:
            raise
        backend = os.environ.get("MUJOCO_GL", "(unset)")
        raise DinosimError(
            f"rendering failed with MUJOCO_GL={backend}: {type(exc).__name__}: {str(exc)[:120]}; try "
            "MUJOCO_GL=osmesa (apt-get install libosmesa6) or MUJOCO_GL=egl (apt-get install libegl1)"
        ) from None
    if frame is None:
        raise DinosimError("the env returned no frame; it must be made with render_mode='rgb_array'")
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise DinosimError(f"the env rendered an array of shape {frame.shape}, not an RGB image")
    return np.ascontiguousarray(frame[:, :, :3], dtype=np.uint8)


def _probe(backend: str) -> Optional[str]:
    """None when MuJoCo renders with ``backend`` in a subprocess, else the last line of its error."""
    env = {**os.environ, "MUJOCO_GL": backend}
    if backend in GL_BACKENDS:
        env["PYOPENGL_PLATFORM"] = backend
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "timed out"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else f"exit code {proc.returncode}"
