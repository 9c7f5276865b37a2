"""`train`, `curriculum`, `resume`, `evaluate` and `audit`: validate everything, then call the training code.

Training modules (torch, SB3) are imported only after the config validated and only when not ``--dry-run``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

import click

from dinosim.config.overrides import extract_override_tokens, split_run_overrides
from dinosim.config.resolve import ALGORITHMS, DEFAULT_VEC_ENV, VEC_ENVS, RunConfig, resolve_run
from dinosim.config.toml_writer import dumps
from dinosim.errors import DinosimError
from dinosim.species import CONFIG_DIR_ENV, CONFIGS_DIR, SPECIES, STAGES
from dinosim.training.preflight import preflight, preview
from dinosim.training.request import (
    DEVICES,
    NORMAL,
    OFF_POLICY_DEVICE,
    ON_POLICY_DEVICE,
    QUIET,
    VERBOSE,
    RunRequest,
    WandbOptions,
    default_device,
)

DEFAULT_N_ENVS = 4  # 4 envs in the training process: see the README's "Defaults chosen by measurement"


class OverrideCommand(click.Command):
    """A command that accepts overrides anywhere: ``--override K=V [K=V ...]`` (repeatable) and ``--sec.key=V``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        overrides, rest = extract_override_tokens(args)
        ctx.meta["dinosim.overrides"] = overrides
        return super().parse_args(ctx, rest)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        with formatter.section("Overrides"):
            formatter.write_text(
                "--override section.key=value [more ...] (repeatable), N.section.key=value or "
                "stageN.section.key=value for one stage, or --section.key=value. Values are TOML or Python "
                "literals (3, 2e-4, true, [256, 256], \"text\"); anything else is a string. "
                "`dinosim config keys` lists the keys."
            )


def parse_stages(text: str) -> tuple[int, ...]:
    """``"1-3"`` -> (1, 2, 3); ``"2"`` -> (2,); ``"1,3"`` -> (1, 3)."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if match:
        first, last = int(match.group(1)), int(match.group(2))
        if first > last:
            raise DinosimError(f"--stages {text!r}: first stage is after the last")
        stages = tuple(range(first, last + 1))
    elif re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", text):
        stages = tuple(int(s) for s in text.split(","))
        if list(stages) != sorted(set(stages)):
            raise DinosimError(f"--stages {text!r}: list stages once each, in increasing order")
    else:
        raise DinosimError(f"--stages {text!r}: expected a range like 1-3 or a list like 1,2")
    for stage in stages:
        if stage not in STAGES:
            raise DinosimError(f"--stages {text!r}: stage {stage} is out of range ({STAGES[0]}-{STAGES[-1]})")
    return stages


def _output_options(func: Any) -> Any:
    """``-v/--verbose`` and ``-q/--quiet``: the terminal output level (see :mod:`dinosim.training.console`)."""
    func = click.option("-q", "--quiet", is_flag=True,
                        help="Print nothing but errors and the final summary line.")(func)
    return click.option("-v", "--verbose", is_flag=True,
                        help="Also print SB3's table of training statistics at every log step.")(func)


def output_level(verbose: bool, quiet: bool) -> int:
    """The output level of ``-v``/``-q`` (default: progress bar and one line per evaluation)."""
    if verbose and quiet:
        raise DinosimError("-v/--verbose and -q/--quiet exclude each other")
    return VERBOSE if verbose else QUIET if quiet else NORMAL


def _run_options(func: Any) -> Any:
    options = [
        click.option("--species", type=click.Choice(sorted(SPECIES)), default="velociraptor", show_default=True),
        click.option("--algorithm", type=click.Choice(ALGORITHMS), default="ppo", show_default=True),
        click.option("--timesteps", type=click.IntRange(min=1), default=None,
                     help="Steps per stage [default: the stage's curriculum.timesteps]."),
        click.option("--n-envs", type=click.IntRange(min=1), default=DEFAULT_N_ENVS, show_default=True,
                     help="Parallel training environments."),
        click.option("--vec-env", type=click.Choice(VEC_ENVS), default=DEFAULT_VEC_ENV, show_default=True,
                     help="dummy: one process, envs one after the other; threads: one process, the envs' physics on "
                          "the usable cores at once (same results); subproc: one process per env."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", type=click.Choice(DEVICES), default=None,
                     help=f"Torch device [default: {ON_POLICY_DEVICE} for ppo, {OFF_POLICY_DEVICE} for sac, tqc "
                          "and crossq]; auto uses a CUDA GPU when torch sees one."),
        click.option("--config-dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
                     help=f"Folder of <species>/stage*.toml files to use instead of the committed configs "
                          f"[default: ${CONFIG_DIR_ENV} if set, else the committed configs]; "
                          "`dinosim config export DIR` writes a copy to start from."),
        click.option("--run-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Run folder [default: runs/<species>/<YYYYmmdd-HHMMSS>[-NAME]]."),
        click.option("--name", default=None, help="Suffix of the run folder's name."),
        click.option("--init-from", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
                     help="Warm-start the first stage from a stage folder, or a run folder's last trained stage "
                          "(its best model, else its final one)."),
        click.option("--strict-gates", is_flag=True, help="Stop when a stage's budget ends before its gate passes."),
        click.option("--skip-if", "skip_if", multiple=True, metavar="EXPR",
                     help='Skip the run (exit 0) when EXPR holds, '
                          'e.g. "ppo.learning_rate > 5e-4 and ppo.n_epochs > 8".'),
        click.option("--dry-run", is_flag=True, help="Print the resolved config as TOML and exit."),
        click.option("--progress/--no-progress", default=True, show_default=True,
                     help="Progress bar on a TTY (plain progress lines otherwise)."),
        click.option("--wandb", "use_wandb", is_flag=True, help="Log to Weights & Biases (offline without login)."),
        click.option("--wandb-project", default="dinosim", show_default=True),
        click.option("--wandb-group", default=None),
        click.option("--wandb-tags", default="", help="Comma-separated tags."),
    ]
    func = _output_options(func)  # listed last in --help
    for option in reversed(options):
        func = option(func)
    return func


def _start(ctx: click.Context, command: str, stages: tuple[int, ...], opts: dict[str, Any]) -> int:
    run_settings, overrides = split_run_overrides(ctx.meta.get("dinosim.overrides", []))
    if "seed" in run_settings and ctx.get_parameter_source("seed") is click.core.ParameterSource.COMMANDLINE:
        raise DinosimError(f"--seed {opts['seed']} and the override seed={run_settings['seed']} both set the seed; "
                           "give one of them")
    opts = {**opts, **run_settings}
    output = output_level(opts["verbose"], opts["quiet"])
    config = resolve_run(
        opts["species"], opts["algorithm"], stages, overrides,
        seed=opts["seed"], n_envs=opts["n_envs"], vec_env=opts["vec_env"],
        config_dir=opts["config_dir"] or CONFIGS_DIR,
    )
    wandb = WandbOptions(
        enabled=opts["use_wandb"] or bool(os.environ.get("WANDB_SWEEP_ID")),
        project=opts["wandb_project"], group=opts["wandb_group"],
        tags=tuple(t.strip() for t in opts["wandb_tags"].split(",") if t.strip()),
    )
    request = RunRequest(
        command=command, config=config, timesteps=opts["timesteps"], run_dir=opts["run_dir"], name=opts["name"],
        init_from=opts["init_from"], strict_gates=opts["strict_gates"], progress=opts["progress"],
        argv=list(sys.argv), wandb=wandb, output=output, device=opts["device"] or default_device(config.algorithm),
    )
    checked = preflight(request)
    skip_reason = _skip_reason(config, opts["skip_if"], record=not opts["dry_run"])
    if opts["dry_run"]:
        data = config.to_dict()
        data["run"].update(preview(request, checked))
        click.echo(dumps(data), nl=False)
        for note in checked.notes:  # the real run prints them on stderr
            click.echo(f"# note: {note}")
        if skip_reason:
            click.echo(f"# would be skipped: {skip_reason}")
        return 0
    if skip_reason:
        click.echo(f"skipped: {skip_reason}")
        return 0
    from dinosim.training.runner import run

    return run(request)


def _skip_reason(config: RunConfig, expressions: tuple[str, ...], *, record: bool) -> Optional[str]:
    """The first ``--skip-if`` expression that holds for ``config`` (``skip-if: EXPR``), or None.

    With ``record`` the skip is also recorded for the offline sweep engine and W&B (see ``enforce_skip_if``).
    """
    if not expressions:
        return None
    from dinosim.config.flatten import flatten_config
    from dinosim.sweeps.constraints import enforce_skip_if, first_violated, parse_constraint

    if record:
        return enforce_skip_if(expressions, config)
    hit = first_violated([parse_constraint(e) for e in expressions], flatten_config(config))
    return f"skip-if: {hit.text}" if hit is not None else None


@click.command(cls=OverrideCommand)
@click.option("--stage", type=click.IntRange(STAGES[0], STAGES[-1]), required=True, help="Stage to train.")
@_run_options
@click.pass_context
def train(ctx: click.Context, stage: int, **opts: Any) -> int:
    """Train one stage of one species."""
    return _start(ctx, "train", (stage,), opts)


@click.command(cls=OverrideCommand)
@click.option("--stages", "stages_text", default="1-3", show_default=True,
              help="Stages to run in order: a range (1-3, 2-3) or a list (1,3: skips stage 2).")
@_run_options
@click.pass_context
def curriculum(ctx: click.Context, stages_text: str, **opts: Any) -> int:
    """Run the stages in order, advancing when a stage's gate passes (or its budget ends)."""
    return _start(ctx, "curriculum", parse_stages(stages_text), opts)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on a TTY (plain progress lines otherwise).")
@_output_options
def resume(run_dir: Path, progress: bool, verbose: bool, quiet: bool) -> int:
    """Continue an interrupted `train` or `curriculum` run from its last checkpoint (same config and device)."""
    output = output_level(verbose, quiet)
    from dinosim.training.runner import resume as resume_run

    return resume_run(run_dir, progress=progress, output=output)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--stage", type=click.IntRange(STAGES[0], STAGES[-1]), default=None,
              help="Stage to evaluate [default: the last trained stage].")
@click.option("--episodes", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--deterministic/--stochastic", default=None,
              help="Mean actions, or actions sampled as in training [default: as the stage's gates judged "
                   "it, curriculum.eval_deterministic].")
@click.option("--model", "which", default="auto", show_default=True, callback=lambda c, p, v: _model_choice(v),
              help="best, final, or the global step of a checkpoint [auto: best, else final, else newest checkpoint].")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Episode k is reset with seed+k [default: the run's held-out test seeds, never used in training "
                   "or gates].")
@click.option("--n-envs", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Episodes played side by side (one batched policy call per step); results do not depend on it.")
@click.option("--gif", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also render the episodes (up to 3) to this .gif (or .mp4).")
@click.option("--gif-width", type=click.IntRange(32, 1920), default=320, show_default=True,
              help="Width of the rendered frames in pixels (the aspect ratio is kept).")
@click.option("--gif-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Keep every N-th step as a frame (smaller files; playback stays real-time).")
def evaluate(run_dir: Path, stage: Optional[int], episodes: int, deterministic: Optional[bool], which: str,
             seed: Optional[int], n_envs: int, gif: Optional[Path], gif_width: int, gif_every: int) -> int:
    """Evaluate a run's policy on held-out seeds: return, length, success rate and every reward component."""
    from dinosim.training.evaluate_run import evaluate as evaluate_run

    return evaluate_run(run_dir, stage, episodes, deterministic, gif, gif_width, gif_every, model=which, seed=seed,
                        n_envs=n_envs)


def _model_choice(value: str) -> str:
    if value in ("auto", "best", "final") or value.isdigit():
        return value
    raise click.BadParameter(f"{value!r}: use best, final, auto or a checkpoint's global step")


@click.command()
@click.option("--species", type=click.Choice(sorted(SPECIES)), default=None, help="[default: all]")
@click.option("--stage", type=click.IntRange(STAGES[0], STAGES[-1]), default=None, help="[default: all]")
@click.option("--episodes", type=click.IntRange(min=1), default=20, show_default=True,
              help="Episodes per policy and seed.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
def audit(species: Optional[str], stage: Optional[int], episodes: int, seeds: str) -> int:
    """Check that trivial policies pass no stage gate: zero action, random, and the best one-joint constant
    ("statue") policy (exit 1 if one does)."""
    try:
        seed_list = tuple(int(s) for s in seeds.split(","))
    except ValueError:
        raise DinosimError(f"--seeds {seeds!r}: expected comma-separated integers") from None
    if any(s < 0 for s in seed_list):
        raise DinosimError(f"--seeds {seeds!r}: seeds must be >= 0")
    species_list = [species] if species else list(SPECIES)
    stages = [stage] if stage else list(STAGES)
    configs = {s: resolve_run(s, "ppo", stages) for s in species_list}
    from dinosim.envs.audit import format_audit_table, run_audit

    rows = []
    for name, config in configs.items():
        for st in stages:
            rows += run_audit(name, st, config.env_kwargs(st), config.curriculum(st), episodes=episodes,
                              seeds=seed_list)
    click.echo(format_audit_table(rows))  # ends with "N of M trivial policies pass their gate"
    return 1 if any(r.passed for r in rows) else 0
