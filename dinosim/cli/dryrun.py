"""Run a dinosim command line in this process and report the one-line error it would print (for dry runs)."""

from __future__ import annotations

import contextlib
import io
from typing import Optional, Sequence

import click

from dinosim.errors import DinosimError


def dry_run_error(root: click.Command, args: Sequence[str]) -> Optional[str]:
    """Run ``root`` with ``args`` in this process (output discarded): the one-line error it would print, or None
    when it would exit 0. ``sweep validate`` dry-runs sweep trials with it."""
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            result = root.main(args=list(args), prog_name="dinosim", standalone_mode=False)
    except DinosimError as exc:
        return str(exc)
    except click.exceptions.Exit as exc:
        return None if exc.exit_code == 0 else f"exit code {exc.exit_code}"
    except click.ClickException as exc:
        return exc.format_message()
    return None if result in (None, 0) else f"exit code {result}"
