"""The docs match the program: every subcommand's rendered `--help` against the README's command table and option
lists, and every `dinosim ...` command line quoted in the README, docs/ and the CHANGELOG."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dinosim.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
        for p in [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]}
# -v, --gif-width after a space, [, (, /, |, comma or backtick; not --ppo.learning_rate=..., not runs/*-name
OPTION = re.compile(r"(?<![^\s\[(/|,`])--?[a-zA-Z][\w-]*(?![\w.])")
HELP = {"-h", "--help"}
SHARED_TITLE = "Options of `train` and `curriculum`:"


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    out: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out.update(_commands(command, path + (name,)))
        else:
            out[path + (name,)] = command
    return out


COMMANDS = _commands()


def render_help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="dinosim", terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def help_options(path: tuple[str, ...]) -> set[str]:
    """Options a command's rendered help defines: the first column of its "Options:" section, plus --override
    when it has the "Overrides:" section."""
    text = render_help(path)
    section = text.split("\nOptions:\n", 1)[1].split("\n\n", 1)[0]
    names = {o for line in section.splitlines() if re.match(r"^ {2}-", line)
             for o in OPTION.findall(re.split(r"\s{2,}", line.strip(), maxsplit=1)[0])}
    return (names - HELP) | ({"--override"} if "\nOverrides:\n" in text else set())


def _path_of(words: list[str]) -> tuple[str, ...]:
    """The command path at the start of ``words`` (after `dinosim`): ``["sweep", "run", "X.yaml"]`` -> (sweep, run)."""
    path: tuple[str, ...] = ()
    for word in words:
        if not any(p[: len(path) + 1] == path + (word,) for p in COMMANDS):
            break
        path += (word,)
    return path


def readme_rows() -> dict[tuple[str, ...], set[str]]:
    """The README's command table: command path -> options its first cell lists."""
    rows: dict[tuple[str, ...], set[str]] = {}
    for cell in re.findall(r"^\| `dinosim ([^`]*)`", README, re.MULTILINE):
        rows[_path_of(cell.split())] = set(OPTION.findall(cell))
    return rows


def shared_options() -> set[str]:
    start = README.index(SHARED_TITLE) + len(SHARED_TITLE)
    return set(OPTION.findall(README[start: README.index("\n\n", start)]))


def test_every_command_has_a_row_in_the_readme_table():
    assert sorted(readme_rows()) == sorted(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_readme_lists_exactly_the_options_of_the_help(path):
    documented = readme_rows()[path] | (shared_options() if path in (("train",), ("curriculum",)) else set())
    defined = help_options(path)
    assert sorted(defined - documented) == [], "options missing from the README"
    assert sorted(documented - defined) == [], "options in the README that the command does not have"


def _quoted_command_lines() -> list[tuple[str, str]]:
    """(file, command line) for every inline code span and code-block line that starts with `dinosim `."""
    found = []
    for name, text in DOCS.items():
        spans = re.findall(r"`(dinosim [^`\n]+)`", text)
        lines = re.findall(r"^\s*(dinosim [^\n]+)$", text, re.MULTILINE)
        found += [(name, s) for s in spans + lines]
    return found


def test_command_lines_quoted_in_the_docs_use_existing_options():
    problems = []
    for name, line in _quoted_command_lines():
        words = line.split()[1:]
        for variant in words[0].split("|") if words else [""]:  # `dinosim train|curriculum --wandb`
            path = _path_of([variant, *words[1:]])
            if path not in COMMANDS:
                continue  # `dinosim sweep ...`, `dinosim` alone: no single command
            unknown = sorted(set(OPTION.findall(" ".join(words[len(path):]))) - help_options(path) - HELP)
            if unknown:
                problems.append(f"{name}: `{line}` ({' '.join(path)} has no {', '.join(unknown)})")
    assert problems == []


def test_help_texts_fixed_in_issue_14():
    assert "1,3" in render_help(("curriculum",))  # --stages takes a list as well as a range
    audit = render_help(("audit",))
    assert all(word in audit for word in ("zero", "random", "statue"))  # the three baselines it runs
