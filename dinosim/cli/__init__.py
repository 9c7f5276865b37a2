"""The `dinosim` command line. Click commands only: parse, call into the package, report errors.

Errors in user input (:class:`dinosim.errors.DinosimError`, click usage errors) print one line on stderr and exit
with code 2. Importing this package imports no torch, Stable-Baselines3 or wandb.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

import click

from dinosim import __version__
from dinosim.cli.config_cmds import config
from dinosim.cli.results_cmds import diagnose, plot, summary
from dinosim.cli.run_cmds import audit, curriculum, evaluate, resume, train
from dinosim.cli.sweep_cmds import sweep
from dinosim.cli.watch_cmd import watch
from dinosim.errors import DinosimError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dinosim")
def cli() -> None:
    """Train MuJoCo dinosaurs through a balance -> locomotion -> behaviour curriculum with Stable-Baselines3.

    Override any config value with --override section.key=value (all stages) or N.section.key=value /
    stageN.section.key=value (stage N only). Run `dinosim config keys` for every valid key.
    """


for _command in (train, curriculum, resume, evaluate, watch, audit, plot, summary, diagnose, config, sweep):
    cli.add_command(_command)


def dry_run_error(args: Sequence[str]) -> Optional[str]:
    """:func:`dinosim.cli.dryrun.dry_run_error` of the ``dinosim`` command group."""
    from dinosim.cli.dryrun import dry_run_error as run_in_process

    return run_in_process(cli, args)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of the console script and of `scripts/train_sb3.py`."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="dinosim", standalone_mode=False)
    except DinosimError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # Ctrl-C (130), or SIGTERM (143) / SIGHUP (129) of a sweep
        from dinosim.training.stop_signals import exit_code_for

        click.echo("aborted", err=True)
        sys.exit(exit_code_for(exc))
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
