"""`dinosim sweep ...`: run W&B sweep YAMLs offline with Optuna, report on them, export the winner.

Module-level imports are click and the standard library only; the sweep code (optuna, matplotlib, tomlkit) is
imported when a command runs. Bad input raises DinosimError (one line, exit 2, printed by `dinosim.cli.main`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from dinosim.errors import ConfigError


@click.group()
def sweep() -> None:
    """Hyperparameter sweeps: the same YAML runs under `wandb agent` or offline here."""


@sweep.command("run")
@click.argument("yaml_path", metavar="SWEEP.yaml", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Trials this invocation runs [default: until run_cap / the grid / the target].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Trials run in parallel.")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage shared by many machines, e.g. postgresql://user@host/db "
                   "[default: journal file in runs/sweeps/<yaml-stem>/].")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Score each configuration by its mean over this many seeds (--seed 0..M-1 appended to its command).")
@click.option("--sweep-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder of the study and trial logs [default: $DINOSIM_RUNS_DIR or runs, /sweeps/<yaml-stem>].")
@click.option("--sampler-seed", type=int, default=None, help="Seed of the Optuna sampler (reproducible sampling).")
def run_cmd(yaml_path: Path, count: Optional[int], workers: int, storage: Optional[str], seeds: int,
            sweep_dir: Optional[Path], sampler_seed: Optional[int]) -> int:
    """Run (or resume) SWEEP.yaml with Optuna: grid/random/bayes, hyperband pruning, --skip-if constraints."""
    from dinosim.cli.dryrun import dry_run_error
    from dinosim.sweeps.dry_runs import dry_run_trials
    from dinosim.sweeps.engine import EngineOptions, run_sweep
    from dinosim.sweeps.keys import check_keys, check_metric
    from dinosim.sweeps.yaml_spec import load_sweep

    root = click.get_current_context().find_root().command  # the `dinosim` group, run in-process for dry runs

    spec = load_sweep(yaml_path)
    check_keys(spec)
    check_metric(spec)
    try:  # the extremes, as `sweep validate` does, in seconds; a failing trial is worth a warning, not a refusal
        dry_run_trials(spec, lambda args: dry_run_error(root, args), random_draws=0)
    except ConfigError as exc:
        click.echo(f"warning: {exc} (`dinosim sweep validate` checks the whole sample)", err=True)
    result = run_sweep(spec, EngineOptions(count=count, workers=workers, storage=storage, seeds=seeds,
                                           sweep_dir=sweep_dir, sampler_seed=sampler_seed))
    if result.best_value is not None:
        click.echo(f"best {spec.metric} = {result.best_value:.6g} with "
                   + ", ".join(f"{k}={v}" for k, v in (result.best_params or {}).items()))
    if result.target_reached:
        click.echo(f"target {spec.metric} {'>=' if spec.goal == 'maximize' else '<='} {spec.target} reached")
    click.echo(f"study {result.study_name} in {result.storage}")
    return 0


@sweep.command("validate")
@click.argument("yaml_paths", metavar="SWEEP.yaml...", nargs=-1, required=True,
                type=click.Path(path_type=Path, dir_okay=False))
@click.option("--random-trials", type=click.IntRange(min=0), default=20, show_default=True,
              help="Random configurations dry-run per sweep, besides the extremes of every parameter.")
def validate_cmd(yaml_paths: tuple[Path, ...], random_trials: int) -> int:
    """Check sweep YAMLs against W&B's sweep schema, the offline engine, the config keys and the logged metrics,
    then dry-run a sample of trials as the agent would run them (every extreme of every parameter included)."""
    from dinosim.cli.dryrun import dry_run_error
    from dinosim.sweeps.dry_runs import dry_run_trials
    from dinosim.sweeps.keys import check_keys, check_metric
    from dinosim.sweeps.yaml_spec import load_sweep

    root = click.get_current_context().find_root().command  # the `dinosim` group, run in-process for dry runs

    for path in yaml_paths:
        spec = load_sweep(path)
        check_keys(spec)
        check_metric(spec)
        trials = dry_run_trials(spec, lambda args: dry_run_error(root, args), random_trials)
        size = f", {spec.grid_size} grid points" if spec.grid_size else ""
        ran = f", {trials} trials dry-run" if trials else ", trials not dry-run (the command does not run dinosim)"
        click.echo(f"{path}: ok ({spec.method}, {len(spec.parameters)} parameters{size}, "
                   f"{len(spec.constraints)} constraints{ran})")
    return 0


@sweep.command("report")
@click.argument("sweep_path", metavar="SWEEP", type=click.Path(path_type=Path, exists=True))
@click.option("--top", "top_k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder of the PNGs and report.json [default: <sweep folder>/report].")
@click.option("--storage", default=None, metavar="URL")
@click.option("--sweep-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--no-plots", is_flag=True, help="Text and report.json only.")
def report_cmd(sweep_path: Path, top_k: int, out: Optional[Path], storage: Optional[str],
               sweep_dir: Optional[Path], no_plots: bool) -> int:
    """Top trials, parameter importance and plots of SWEEP (a sweep YAML or its sweep folder)."""
    from dinosim.sweeps.report import build_report, load_study

    loaded = load_study(sweep_path, storage, sweep_dir)
    click.echo(build_report(loaded, top_k, out, plots=not no_plots).to_text())
    return 0


@sweep.command("export-best")
@click.argument("sweep_path", metavar="SWEEP", type=click.Path(path_type=Path, exists=True))
@click.option("--to", "to", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Stage TOML to edit in place [default: the species' committed stage files].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write edited copies here instead (a .toml file, or a folder when several stages change).")
@click.option("--storage", default=None, metavar="URL")
@click.option("--sweep-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
def export_best_cmd(sweep_path: Path, to: Optional[Path], out: Optional[Path], storage: Optional[str],
                    sweep_dir: Optional[Path]) -> int:
    """Write the best trial's values into the stage TOML(s), each changed line commented with sweep and score."""
    from dinosim.sweeps.export import export_best
    from dinosim.sweeps.report import load_study

    changes = export_best(load_study(sweep_path, storage, sweep_dir), to=to, out=out)
    if not changes:
        click.echo("nothing to change: the files already hold the best values")
    for c in changes:
        click.echo(f"{c.file}: {c.key} = {c.new!r} (was {c.old!r})")
    return 0
