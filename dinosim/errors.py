"""Errors that the CLI reports as one line on stderr with exit code 2 (bad input, caught before heavy work)."""

from __future__ import annotations


class DinosimError(Exception):
    """Bad input from the user: a config file, an override, a command-line value or a run folder.

    The CLI prints ``error: <message>`` on one line and exits with code 2; no traceback.
    """


class ConfigError(DinosimError):
    """A TOML file, an override or a resolved value that does not validate."""


class InvalidValue(ConfigError, ValueError):
    """A value that breaks its consumer's rule (see :mod:`dinosim.config.rules`). It is also a ``ValueError`` so
    that code building an env directly (``gymnasium.make``) sees the usual exception type."""
