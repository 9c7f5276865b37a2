"""`sweep validate`'s trial check: run a sample of a sweep's trials the way the agent would, with ``--dry-run``.

For each sampled configuration the sweep ``command`` is rendered exactly as ``wandb agent`` / the offline engine
render it (:func:`dinosim.sweeps.macros.expand_command`), the arguments after the program get ``--dry-run``, and
the CLI runs in this process (the caller passes it in: sweeps sit below the CLI). Any error the trial would hit
before training (a bad value, a combination, a misspelt subcommand, a stage out of range) fails the sweep.

The sample (:func:`sample_configurations`): every parameter at each of its extremes (every value of a categorical,
both ends of a range, quantized like the sweep) while the others take random extremes; all parameters at their low
ends, all at their high ends; and random draws from the ranges. Seeded, so a run is reproducible.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Optional

from dinosim.errors import ConfigError
from dinosim.sweeps.distributions import extreme_values, random_value
from dinosim.sweeps.macros import expand_command

DryRun = Callable[[list[str]], Optional[str]]
"""Runs dinosim's CLI with these arguments in-process; returns the one-line error, or None when it exits 0."""

PROGRAM_NAMES = ("train_sb3.py", "dinosim")  # a command token with this file name is dinosim's command line


def sample_configurations(parameters: dict[str, Any], random_draws: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Configurations to dry-run: each extreme of each parameter, all-low, all-high and ``random_draws`` draws."""
    rng = random.Random(seed)
    extremes = {name: extreme_values(spec) for name, spec in parameters.items()}
    configs = [{n: v[0] for n, v in extremes.items()}, {n: v[-1] for n, v in extremes.items()}]
    for name, values in extremes.items():
        for value in values:
            config = {n: rng.choice(v) for n, v in extremes.items()}
            config[name] = value
            configs.append(config)
    for _ in range(random_draws):
        configs.append({n: random_value(spec, rng) for n, spec in parameters.items()})
    unique: dict[str, dict[str, Any]] = {}
    for config in configs:
        unique.setdefault(repr(sorted(config.items())), config)
    return list(unique.values())


def cli_arguments(argv: list[str], program: Optional[str]) -> Optional[list[str]]:
    """The arguments after dinosim's program in a rendered command, or None when the command does not run dinosim
    (a test program, another script)."""
    for i, token in enumerate(argv):
        name = Path(token).name
        if name in PROGRAM_NAMES or (program and token == program and name.endswith("train_sb3.py")):
            return argv[i + 1:]
        if token == "-m" and i + 1 < len(argv) and argv[i + 1] in ("dinosim", "dinosim.cli"):
            return argv[i + 2:]
    return None


def runs_dinosim(spec: Any) -> bool:
    """Whether the sweep's command runs dinosim's command line (rendered with no parameters)."""
    argv = expand_command(spec.command, {}, spec.program or "", args_json_file="args.json")
    return cli_arguments(argv, spec.program) is not None


def dry_run_trials(spec: Any, dry_run: DryRun, random_draws: int = 20) -> int:
    """Dry-run the sampled trials of ``spec`` (a :class:`~dinosim.sweeps.yaml_spec.SweepSpec`); returns how many
    ran (0 when the command is not dinosim's). Raises ConfigError naming the first failing trial's values."""
    configs = sample_configurations(spec.parameters, random_draws)
    ran = 0
    for params in configs:
        argv = expand_command(spec.command, params, spec.program or "", args_json_file="args.json")
        args = cli_arguments(argv, spec.program)
        if args is None:
            return 0
        error = dry_run(args + ["--dry-run"])
        ran += 1
        if error is not None:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ConfigError(f"{spec.path}: a trial with {shown} would fail: {error}")
    return ran
