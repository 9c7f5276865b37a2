"""What a `train`/`curriculum` request will do, checked before anything is created (standard library only).

:func:`preflight` is called by the real run (:func:`dinosim.training.runner.run`, before the run folder exists) and
by ``--dry-run``, so both refuse the same requests, whether the request came from the CLI or was built in code: a
step budget too small for a stage (below one PPO rollout, the off-policy ``learning_starts``,
``curriculum.eval_freq``, or shorter than the stage's warm-up, ramp or critic warm-up), a warm-start source of
another species or algorithm, without a model or with a damaged one, a run name that is not a single safe path
component, a ``--run-dir`` that already holds a run or cannot be created. :func:`preview` is the dry run's view
of it: the extra keys of the printed ``[run]`` table.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional

from dinosim.config.checks import network_change, network_of
from dinosim.config.resolve import RunConfig
from dinosim.errors import DinosimError
from dinosim.run_integrity import check_policy_pair
from dinosim.runfolder import (
    BEST_DIR,
    MODEL_FILE,
    RUN_FILE,
    check_run_name,
    planned_run_dir,
    policy_files,
    stage_dirs,
    stage_number,
)
from dinosim.training.request import DEVICES, RunRequest
from dinosim.training.state import read_run_file


class InitSource(NamedTuple):
    """The policy a run warm-starts from: model, its VecNormalize statistics, and the ``[env]`` it was trained on."""

    model: Path
    vecnorm: Optional[Path]
    env: Optional[dict]
    network: Optional[dict] = None  # shape-giving settings of the source stage (dinosim.config.checks.network_of)


@dataclass(frozen=True)
class Preflight:
    """A checked request: where it would write, how long each stage trains, what it warm-starts from."""

    run_dir: Path  # the folder the run would create now (the automatic name holds the start time)
    budgets: dict[int, int]  # stage -> step budget (--timesteps, else the stage's curriculum.timesteps)
    init: Optional[InitSource]
    notes: tuple[str, ...] = ()  # one line per stage: values left out, lowered or without effect (config notes)


def find_init_source(path: Path, algorithm: str, species: Optional[str] = None) -> InitSource:
    """The policy to warm-start from: a run folder's last trained stage (best, else final model) or a stage
    folder's. Raises DinosimError when there is no model, it is damaged, or its algorithm (or, when given,
    species) differs."""
    path = Path(path)
    if (path / RUN_FILE).exists():
        run_dir, candidates = path, list(reversed(stage_dirs(path).values()))
    elif stage_number(path) is not None and (path.parent / RUN_FILE).exists():
        run_dir, candidates = path.parent, [path]
    else:
        raise DinosimError(f"--init-from {path}: not a dinosim run or stage folder (no {RUN_FILE})")
    try:
        run_data = read_run_file(run_dir)
        source = run_data["config"]["run"]
        source_algorithm, source_species = source["algorithm"], source.get("species")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DinosimError(f"--init-from {path}: unreadable {RUN_FILE} ({exc!r})") from None
    if source_algorithm != algorithm:
        raise DinosimError(f"--init-from {path}: it holds a {source_algorithm} model, this run uses {algorithm}")
    if species is not None and source_species != species:
        raise DinosimError(f"--init-from {path}: it holds a {source_species} policy, this run trains a {species}")
    for folder in candidates:
        model, vecnorm = policy_files(folder)
        if model is not None:
            try:
                check_policy_pair(model, vecnorm)  # a damaged file: one line now, not after the run folder exists
            except DinosimError as exc:
                raise DinosimError(f"--init-from {path}: {exc}") from None
            stage_config = run_data["config"].get(folder.name, {})
            network = network_of(stage_config, algorithm) if isinstance(stage_config, dict) else None
            return InitSource(model, vecnorm, stage_config.get("env") if network is not None else None, network)
    raise DinosimError(f"--init-from {path}: no trained model in it ({BEST_DIR}/{MODEL_FILE} or {MODEL_FILE})")


def _check_creatable(folder: Path) -> None:
    """The nearest existing ancestor of ``folder`` must be a writable directory."""
    probe = Path(os.path.abspath(folder))
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise DinosimError(f"cannot create the run folder {folder}: {probe} is not a writable folder")


def check_device_light(device: str) -> None:
    """What can be known about ``--device`` without importing torch: a CPU-only torch build (its version ends in
    ``+cpu``) has no CUDA. The real run also asks torch (:func:`dinosim.training.runner.check_device`)."""
    if device not in DEVICES:
        raise DinosimError(f"--device {device!r}: choose from {', '.join(DEVICES)}")
    if device != "cuda":
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        return
    if torch_version.endswith("+cpu"):
        raise DinosimError(f"--device cuda: torch {torch_version} is a CPU-only build, so it sees no CUDA GPU; use "
                           "--device cpu or auto, or install a CUDA build of torch (README: Set-up)")


def preflight(request: RunRequest, now: Optional[_dt.datetime] = None) -> Preflight:
    """Check ``request`` without creating anything; raises DinosimError (one line) on the first problem."""
    config = request.config
    if request.command not in ("train", "curriculum"):
        raise DinosimError(f"unknown command {request.command!r}")
    if request.command == "train" and len(config.stages) != 1:
        raise DinosimError("train runs exactly one stage; use curriculum for several")
    timesteps = request.timesteps
    if timesteps is not None and (isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1):
        raise DinosimError(f"--timesteps {timesteps!r} must be an integer >= 1")
    if request.name is not None:
        if request.run_dir is not None:
            raise DinosimError("--name names the automatic run folder; it has no effect with --run-dir")
        check_run_name(request.name)
    run_dir = planned_run_dir(config.species, request.name, request.run_dir, now)
    if request.run_dir is not None and (run_dir / RUN_FILE).exists():
        raise DinosimError(f"{run_dir} already holds a run; use `dinosim resume {run_dir}` or another --run-dir")
    _check_creatable(run_dir)
    init = None
    if request.init_from is not None:
        init = find_init_source(request.init_from, config.algorithm, config.species)
    if init is not None and init.network is not None:
        change = network_change(init.network, config.network(config.stages[0]))
        if change is not None:
            raise DinosimError(f"--init-from {request.init_from}: stage {config.stages[0]}'s "
                               f"{config.algorithm}.{change[0]} differs ({change[1]}): the weights cannot be copied; "
                               "use the same network")
    check_device_light(request.device)
    warm_started = {s: _starts_from(config, s, init is not None) != "scratch" for s in config.stages}
    config.check_overrides_take_effect(warm_started)
    budgets = {s: timesteps or config.curriculum(s).timesteps for s in config.stages}
    for stage, budget in budgets.items():  # one PPO rollout, learning_starts, eval_freq, start-of-stage phases
        config.check_budget(stage, budget, warm_started[stage])
    return Preflight(run_dir, budgets, init, tuple(config.notes(warm_started)))


def preview(request: RunRequest, checked: Preflight) -> dict[str, Any]:
    """The dry run's extra ``[run]`` keys: budgets, run folder, warm-start source, gate mode, device and name."""
    out: dict[str, Any] = {
        "command": request.command,
        "budget": {f"stage{s}": b for s, b in checked.budgets.items()},
        "timesteps": request.timesteps,
        "run_dir": str(checked.run_dir),
        "name": request.name,
        "strict_gates": request.strict_gates,
        "device": request.device,
        "gate_mode": "stop when a stage's budget ends before its gate passes" if request.strict_gates
        else "advance to the next stage when the budget ends, gate passed or not",
        "init_from": str(request.init_from) if request.init_from is not None else None,
        "init_model": str(checked.init.model) if checked.init is not None else None,
        "init_vecnorm": str(checked.init.vecnorm) if checked.init is not None and checked.init.vecnorm else None,
        "warm_start": {f"stage{s}": _starts_from(request.config, s, request.init_from is not None)
                       for s in request.config.stages},
    }
    return {k: v for k, v in out.items() if v is not None}


def _starts_from(config: RunConfig, stage: int, init_given: bool) -> str:
    """What ``stage`` starts from: "--init-from" (the run's first stage, when given), "stage K" (an earlier stage,
    :meth:`RunConfig.warm_source`) or "scratch"."""
    if stage == config.stages[0]:
        return "--init-from" if init_given else "scratch"
    source = config.warm_source(stage)
    return "scratch" if source is None else f"stage {source}"
