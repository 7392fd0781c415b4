"""Fuzz tests: hypothesis-driven bad input for parsers, the layer applier, ttrpc and the gRPC API.

At the end of a session that ran fuzz tests, the number of inputs fed to each target is printed.
"""

from __future__ import annotations

import pytest

from tests.fuzz.budget import ENV, TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    terminalreporter.section(f"fuzzed inputs (set {ENV}=N for N examples per property test)")
    width = max(len(name) for name in TALLY)
    for name, n in sorted(TALLY.items()):
        terminalreporter.write_line(f"{name:<{width}}  {n:>8}")
    terminalreporter.write_line(f"{'total':<{width}}  {sum(TALLY.values()):>8}")
