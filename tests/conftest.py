"""Shared pytest configuration: markers that need root skip cleanly without it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_dirs() -> set[Path]:
    """Top-level directories of every cgroup v1 controller (runc makes one per namespace)."""
    if not CGROUP_ROOT.is_dir():
        return set()
    return {d for ctrl in CGROUP_ROOT.iterdir() if ctrl.is_dir() for d in ctrl.iterdir() if d.is_dir()}


@pytest.fixture(scope="session", autouse=True)
def empty_cgroups_cleanup() -> Iterator[None]:
    """After the session, remove the empty per-namespace cgroups that runs of runc created (runc
    removes a container's cgroup, not its parent), whether a unit or an integration test ran it."""
    before = _cgroup_dirs()
    yield
    for directory in sorted(_cgroup_dirs() - before, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # only if empty: never touch a cgroup still in use


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip_root = pytest.mark.skip(reason="needs root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip_root)
