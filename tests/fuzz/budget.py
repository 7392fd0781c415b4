"""Example budgets and a tally of fuzzed inputs, shared by every fuzz test.

Each property test asks :func:`examples` for its number of examples: the default keeps the whole
fuzz suite to a minute or two in CI; ``PYCONTAINERD_FUZZ_EXAMPLES=N`` runs every property test
with ``N`` examples instead (a soak, e.g. ``N=5000`` overnight). Every input a test feeds to the
code under test is counted with :func:`count` under a target name, and the totals are printed at
the end of the session (see ``conftest.py``).
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

ENV = "PYCONTAINERD_FUZZ_EXAMPLES"

TALLY: Counter[str] = Counter()
"""Target name -> inputs fed to it during this session."""


def examples(default: int) -> int:
    """The number of examples a property test runs: ``default`` unless :data:`ENV` is set."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return default
    try:
        chosen = int(value)
    except ValueError:
        raise ValueError(f"{ENV} must be an integer, got {value!r}") from None
    if chosen < 1:
        raise ValueError(f"{ENV} must be at least 1, got {chosen}")
    return chosen


def fuzz_settings(default: int) -> settings:
    """Hypothesis settings for a fuzz test: ``default`` examples (see :func:`examples`), no deadline
    (the daemon's timing varies under load), no example database written into the checkout."""
    return settings(
        max_examples=examples(default),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def count(target: str, n: int = 1) -> None:
    """Record ``n`` more inputs fed to ``target``."""
    TALLY[target] += n
