"""Expand a sweep ``command`` the way ``wandb agent`` does, so the offline engine runs the same processes.

Rules (read from wandb 0.31 ``wandb/wandb_agent.py`` ``Agent._command_run`` and
``wandb/sdk/launch/sweeps/utils.py`` ``create_sweep_command``/``create_sweep_command_args``):

* ``${envvar:NAME}`` anywhere inside a token is replaced by the environment variable NAME (left as ``NAME`` if unset);
* a token that is exactly ``${macro}`` is replaced by a list of tokens; an unknown macro expands to nothing;
  any other token is passed through ``str()``;
* each parameter value is rendered with ``str()``: ``--name=value`` (``${args}``), ``name=value``
  (``${args_no_hyphens}``), ``--name value`` (``${args_no_equals}``), ``--name`` / omitted for booleans
  (``${args_no_boolean_flags}``), ``+name=value`` / ``++name=value`` (hydra), one JSON object (``${args_json}``),
  ``${args_json_file}`` = path of a file holding that JSON;
* ``${env}`` is ``/usr/bin/env`` (not on Windows), ``${interpreter}`` is ``python``, ``${program}`` the YAML's program.

The offline engine passes its own interpreter (``sys.executable``) instead of ``python`` so the trial runs in the same
environment; everything else is identical.
"""

from __future__ import annotations

import json
import os
import platform
import re
from typing import Any, Mapping, Optional, Sequence

DEFAULT_SWEEP_COMMAND: tuple[str, ...] = ("${env}", "${interpreter}", "${program}", "${args}")
_ENVVAR = re.compile(r"\$\{envvar\:([A-Z0-9_]*)\}")


def expand_envvars(command: Sequence[Any], environ: Optional[Mapping[str, str]] = None) -> list[Any]:
    """Replace ``${envvar:NAME}`` inside tokens (non-string tokens are left as they are, like wandb)."""
    env = os.environ if environ is None else environ
    out: list[Any] = []
    for chunk in command:
        if isinstance(chunk, str) and _ENVVAR.search(chunk):
            for m in list(_ENVVAR.finditer(chunk))[::-1]:
                chunk = f"{chunk[: m.start()]}{env.get(m.group(1), m.group(1))}{chunk[m.end():]}"
        out.append(chunk)
    return out


def command_args(params: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every argument-list macro for one run's parameter values (insertion order kept)."""
    flags: list[str] = []
    no_hyphens: list[str] = []
    no_equals: list[str] = []
    no_booleans: list[str] = []
    hydra_append: list[str] = []
    hydra_override: list[str] = []
    as_dict: dict[str, Any] = {}
    for name, value in params.items():
        flag = f"{name}={value}"
        flags.append("--" + flag)
        no_hyphens.append(flag)
        no_equals += [f"--{name}", str(value)]
        hydra_append.append("+" + flag)
        hydra_override.append("++" + flag)
        if isinstance(value, bool):
            if value:
                no_booleans.append("--" + name)
        else:
            no_booleans.append("--" + flag)
        as_dict[name] = value
    return {
        "args": flags,
        "args_no_equals": no_equals,
        "args_no_hyphens": no_hyphens,
        "args_no_boolean_flags": no_booleans,
        "args_json": [json.dumps(as_dict)],
        "args_append_hydra": hydra_append,
        "args_override_hydra": hydra_override,
    }


def expand_command(
    command: Optional[Sequence[Any]],
    params: Mapping[str, Any],
    program: str,
    interpreter: str = "python",
    env: Optional[str] = None,
    args_json_file: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> list[str]:
    """The argv ``wandb agent`` would run for ``params`` (with ``interpreter``/``env`` as given).

    ``env`` defaults to ``/usr/bin/env`` except on Windows (no ``${env}`` tokens there). When the command uses
    ``${args_json_file}`` the caller must write ``json.dumps(params)`` to ``args_json_file``.
    """
    tokens = expand_envvars(list(command) if command else list(DEFAULT_SWEEP_COMMAND), environ)
    macros: dict[str, list[str]] = dict(command_args(params))
    macros["interpreter"] = [interpreter]
    macros["program"] = [program]
    if args_json_file is not None:
        macros["args_json_file"] = [args_json_file]
    if env is not None:
        macros["env"] = [env]
    elif platform.system() != "Windows":
        macros["env"] = ["/usr/bin/env"]
    argv: list[str] = []
    for tok in tokens:
        s = str(tok)
        if s.startswith("${") and s.endswith("}"):
            argv += macros.get(s[2:-1]) or []
        else:
            argv.append(s)
    return argv


def option_values(command: Sequence[Any], option: str) -> list[str]:
    """Values of ``option`` in a command template: ``[--skip-if, EXPR]`` and ``--skip-if=EXPR`` forms."""
    values: list[str] = []
    toks = [str(t) for t in command]
    for i, tok in enumerate(toks):
        if tok == option and i + 1 < len(toks):
            values.append(toks[i + 1])
        elif tok.startswith(option + "="):
            values.append(tok[len(option) + 1 :])
    return values
