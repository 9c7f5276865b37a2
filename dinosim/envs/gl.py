"""Choose a headless OpenGL backend for MuJoCo before mujoco is first imported.

``mujoco`` reads ``MUJOCO_GL`` once, at import. Without a display and without a user choice we pick EGL when its
library exists, else OSMesa. ``dinosim.envs`` calls this before importing any module that imports mujoco.
"""

from __future__ import annotations

import ctypes.util
import os


def choose_headless_gl() -> None:
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) to egl/osmesa when unset and there is no display."""
    if "MUJOCO_GL" in os.environ or os.environ.get("DISPLAY"):
        return
    backend = "egl" if ctypes.util.find_library("EGL") or not ctypes.util.find_library("OSMesa") else "osmesa"
    os.environ["MUJOCO_GL"] = backend
    os.environ.setdefault("PYOPENGL_PLATFORM", backend)
