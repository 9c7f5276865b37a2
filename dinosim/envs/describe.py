"""Model facts for the docs, computed from the MJCF models and env classes (never typed by hand).

``python -m dinosim.envs.describe`` prints the markdown table used in ``docs/envs.md``;
``tests/test_envs_docs.py`` checks that the committed table matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from dinosim.envs.factory import make_env
from dinosim.species import SPECIES


@dataclass(frozen=True)
class ModelSummary:
    """Facts about one species' model and env."""

    species: str
    mass_kg: float
    length_m: float  # nose to tail tip along x at the home pose
    standing_height_m: float  # torso (root) height at the home pose
    head_height_m: float  # highest head/skull geom centre at the home pose
    dof: int  # model nv (6 for the free root + hinge joints)
    actuators: int
    obs_size: int
    action_size: int
    timestep_s: float
    frame_skip: int
    control_hz: float


def summarize(species: str) -> ModelSummary:
    """Compute the :class:`ModelSummary` of one species by building its env and measuring the home pose."""
    env = make_env(species, {"task": SPECIES[species].behaviour, "reset_noise_scale": 0.0})
    env.reset(seed=0)
    u = env.unwrapped
    m, d = u.model, u.data
    mujoco.mj_forward(m, d)
    torso = m.body("torso").id
    animal = [g for g in range(m.ngeom) if m.geom_bodyid[g] != 0 and m.geom_bodyid[g] != u._target_body]
    # Extent along x: geom centres plus their bounding radius (conservative for capsules/ellipsoids).
    xs = [d.geom_xpos[g][0] for g in animal]
    rb = [m.geom_rbound[g] for g in animal]
    length = max(x + r for x, r in zip(xs, rb)) - min(x - r for x, r in zip(xs, rb))
    heads = [g for g in animal if m.geom(g).name in ("head", "skull")]
    summary = ModelSummary(
        species=species,
        mass_kg=float(m.body_subtreemass[torso]),
        length_m=float(length),
        standing_height_m=u.standing_height,
        head_height_m=float(max(d.geom_xpos[g][2] for g in heads)),
        dof=int(m.nv),
        actuators=int(m.nu),
        obs_size=int(np.prod(env.observation_space.shape)),
        action_size=int(np.prod(env.action_space.shape)),
        timestep_s=float(m.opt.timestep),
        frame_skip=int(u.frame_skip),
        control_hz=float(1.0 / u.dt),
    )
    env.close()
    return summary


def markdown_table() -> str:
    """The model table of ``docs/envs.md``."""
    rows = [summarize(s) for s in SPECIES]
    header = (
        "| species | mass (kg) | length (m) | torso height (m) | head height (m) | DoF (nv) | actuators "
        "| obs size | action size | timestep (s) | frame_skip | control (Hz) |"
    )
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r.species} | {r.mass_kg:.1f} | {r.length_m:.2f} | {r.standing_height_m:.2f} | {r.head_height_m:.2f} "
            f"| {r.dof} | {r.actuators} | {r.obs_size} | {r.action_size} | {r.timestep_s:g} | {r.frame_skip} "
            f"| {r.control_hz:g} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
