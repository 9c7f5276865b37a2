"""Load a species' MJCF model and precompute everything the env needs per step (ids, ranges, sensors, home state).

Contact signals come from MuJoCo itself: at load time a ``contact`` sensor (``data="found"``) is added for every
non-foot body geom against the floor (a fall) and for every effector geom against the target (a strike / bite).
MuJoCo evaluates them inside ``mj_step``, so the env reads every contact fact, with the foot touch sensors of the
MJCF, from one ``sensordata`` slice instead of scanning ``data.contact`` in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
FOUND = 1  # contact sensor data bit: number of matching contacts found (capped at ``num``)


@dataclass
class LoadedModel:
    """A compiled model plus the index arrays the env uses on every step.

    Sensor layout (``sensordata``): ``[0, n_feet)`` foot touch forces, ``[n_feet, fall_end)`` fall contacts,
    ``[fall_end, hit_end)`` effector-target contacts.
    """

    model: mujoco.MjModel
    torso: int  # body id
    target_body: int
    target_geom: int
    mocap: int  # mocap index of the target body
    act_qpos: np.ndarray  # qpos address of each actuated joint, in actuator order (a permutation of 7..7+nu)
    act_qvel: np.ndarray  # dof address of each actuated joint (a permutation of 6..6+nu)
    ctrl_lo: np.ndarray  # joint range, per actuator (rad)
    ctrl_hi: np.ndarray
    home: np.ndarray  # home joint angles, per actuator (rad)
    tail_dofs: np.ndarray
    effectors: np.ndarray  # geom ids
    n_feet: int
    fall_end: int
    hit_end: int
    qpos_home: np.ndarray  # full home qpos with the lowest foot on the floor
    standing_height: float  # root height of the home pose (m)


def _can_collide(m: mujoco.MjModel, g1: int, g2: int) -> bool:
    return bool(m.geom_contype[g1] & m.geom_conaffinity[g2] or m.geom_contype[g2] & m.geom_conaffinity[g1])


def _add_contact_sensor(spec: mujoco.MjSpec, name: str, geom1: str, geom2: str) -> None:
    sensor = spec.add_sensor(
        name=name,
        type=mujoco.mjtSensor.mjSENS_CONTACT,
        objtype=mujoco.mjtObj.mjOBJ_GEOM,
        objname=geom1,
        reftype=mujoco.mjtObj.mjOBJ_GEOM,
        refname=geom2,
    )
    sensor.intprm[0] = FOUND  # data: found
    sensor.intprm[1] = 0  # reduce: none
    sensor.intprm[2] = 1  # num: one slot is enough for "any contact"


def load_model(
    xml_file: str,
    home_pose: dict[str, float],
    foot_geoms: tuple[str, ...],
    effector_geoms: tuple[str, ...],
    tail_joints: tuple[str, ...],
) -> LoadedModel:
    """Compile ``assets/<xml_file>`` with the contact sensors described in the module docstring.

    The MJCF must define: a ``floor`` geom, a ``torso`` root body with a free joint, a mocap ``target`` body with a
    ``target`` geom, one touch sensor per foot named like the foot geom, and position actuators on hinge joints.
    """
    plain = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / xml_file))
    if [plain.sensor(i).name for i in range(plain.nsensor)] != list(foot_geoms):
        raise ValueError(f"{xml_file}: the only sensors must be the foot touch sensors {foot_geoms}, in order")
    floor, target = plain.geom("floor").id, plain.geom("target").id
    feet = {plain.geom(n).id for n in foot_geoms}
    fall_geoms = [
        g for g in range(plain.ngeom)
        if plain.geom_bodyid[g] not in (0, plain.geom_bodyid[target]) and g not in feet
        and _can_collide(plain, g, floor)
    ]  # fmt: skip
    hit_geoms = [plain.geom(n).id for n in effector_geoms if _can_collide(plain, plain.geom(n).id, target)]
    spec = mujoco.MjSpec.from_file(str(ASSETS_DIR / xml_file))
    for g in fall_geoms:
        _add_contact_sensor(spec, f"fall_{plain.geom(g).name}", "floor", plain.geom(g).name)
    for g in hit_geoms:
        _add_contact_sensor(spec, f"hit_{plain.geom(g).name}", plain.geom(g).name, "target")
    m = spec.compile()

    joints = m.actuator_trnid[:, 0]
    home = np.zeros(m.nu)
    for name, angle in home_pose.items():
        home[list(joints).index(m.joint(name).id)] = angle
    act_qpos = np.array([m.jnt_qposadr[j] for j in joints])
    act_qvel = np.array([m.jnt_dofadr[j] for j in joints])
    if sorted(act_qpos) != list(range(7, 7 + m.nu)) or sorted(act_qvel) != list(range(6, 6 + m.nu)):
        raise ValueError(f"{xml_file}: every joint except the root free joint must carry exactly one actuator")
    target_body = m.body("target").id

    # Home state: home joint angles, root lowered until the lowest foot rests on the floor.
    d = mujoco.MjData(m)
    d.qpos[act_qpos] = home
    mujoco.mj_kinematics(m, d)
    lowest = min(d.geom_xpos[m.geom(n).id][2] - _half_height(m, d, m.geom(n).id) for n in foot_geoms)
    d.qpos[2] -= lowest - 0.001

    n_feet = len(foot_geoms)
    return LoadedModel(
        model=m,
        torso=m.body("torso").id,
        target_body=target_body,
        target_geom=m.geom("target").id,
        mocap=int(m.body_mocapid[target_body]),
        act_qpos=act_qpos,
        act_qvel=act_qvel,
        ctrl_lo=m.jnt_range[joints, 0].copy(),
        ctrl_hi=m.jnt_range[joints, 1].copy(),
        home=home,
        tail_dofs=np.array([m.jnt_dofadr[m.joint(n).id] for n in tail_joints], dtype=int),
        effectors=np.array([m.geom(n).id for n in effector_geoms], dtype=int),
        n_feet=n_feet,
        fall_end=n_feet + len(fall_geoms),
        hit_end=n_feet + len(fall_geoms) + len(hit_geoms),
        qpos_home=d.qpos.copy(),
        standing_height=float(d.qpos[2]),
    )


def _half_height(m: mujoco.MjModel, d: mujoco.MjData, g: int) -> float:
    """Vertical half extent of a box / capsule / cylinder / sphere geom in its current orientation."""
    size = m.geom_size[g]
    rot = d.geom_xmat[g].reshape(3, 3)
    kind = int(m.geom_type[g])
    if kind == int(mujoco.mjtGeom.mjGEOM_BOX):
        return float(np.abs(rot[2]) @ size)
    if kind == int(mujoco.mjtGeom.mjGEOM_CAPSULE):
        return float(abs(rot[2, 2]) * size[1] + size[0])
    if kind == int(mujoco.mjtGeom.mjGEOM_CYLINDER):
        return float(abs(rot[2, 2]) * size[1] + size[0] * np.sqrt(max(0.0, 1.0 - rot[2, 2] ** 2)))
    if kind == int(mujoco.mjtGeom.mjGEOM_SPHERE):
        return float(size[0])
    raise ValueError(f"foot geom {m.geom(g).name}: unsupported geom type {kind}")
