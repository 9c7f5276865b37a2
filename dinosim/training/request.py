"""What the CLI asks the training code to do: a plain, import-light description of one `train`/`curriculum` call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from dinosim.config.resolve import RunConfig

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")  # torch devices `--device` accepts; auto: cuda when available
ON_POLICY_DEVICE = "cpu"  # PPO with small MLPs: the GPU waits on the CPU-bound env steps (SB3 recommends the CPU)
OFF_POLICY_DEVICE = "auto"  # SAC/TQC/CrossQ do many gradient steps per env step: a GPU helps when there is one
QUIET, NORMAL, VERBOSE = 0, 1, 2  # terminal output levels: -q, default, -v


def default_device(algorithm: str) -> str:
    """``--device`` when not given: cpu for PPO, auto for the off-policy algorithms."""
    return ON_POLICY_DEVICE if algorithm == "ppo" else OFF_POLICY_DEVICE


@dataclass
class WandbOptions:
    """W&B settings from the command line; ``enabled`` is also set when running under `wandb agent`."""

    enabled: bool = False
    project: str = "dinosim"
    group: Optional[str] = None
    tags: tuple[str, ...] = ()


@dataclass
class RunRequest:
    """One `train` (a single stage) or `curriculum` (several stages in order) invocation, fully validated."""

    command: str  # "train" or "curriculum"
    config: "RunConfig"  # resolved and validated config of every stage that runs
    timesteps: Optional[int] = None  # overrides curriculum.timesteps of every stage when set
    run_dir: Optional[Path] = None  # explicit run folder; default runs/<species>/<YYYYmmdd-HHMMSS>[-NAME]
    name: Optional[str] = None
    init_from: Optional[Path] = None  # a previous run folder (or stage folder) to warm-start from
    strict_gates: bool = False  # stop when a stage's budget runs out before its gate passes
    progress: bool = True  # rich progress bar on a TTY, plain lines otherwise
    output: int = NORMAL  # QUIET: errors and the final summary line; NORMAL: + progress, one line per evaluation;
    # VERBOSE: + SB3's tables
    device: str = "cpu"  # torch device of the model, one of DEVICES (see default_device)
    argv: list[str] = field(default_factory=list)  # the command line, recorded in config.toml
    wandb: WandbOptions = field(default_factory=WandbOptions)
