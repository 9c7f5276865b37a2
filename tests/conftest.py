"""Shared test helpers: ``summary_line`` adds a line to pytest's terminal summary (figures a test measured)."""

from __future__ import annotations

import pytest

_SUMMARY: list[str] = []


@pytest.fixture
def summary_line():
    """``summary_line("text")`` prints "text" in the terminal summary at the end of the test session."""
    return _SUMMARY.append


def pytest_terminal_summary(terminalreporter) -> None:
    if _SUMMARY:
        terminalreporter.section("dinosim figures")
        for line in _SUMMARY:
            terminalreporter.write_line(line)
