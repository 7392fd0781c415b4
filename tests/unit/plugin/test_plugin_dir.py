from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pycontainerd.plugin.builtins import PluginLoadError, load_plugin_dir

if TYPE_CHECKING:
    from pathlib import Path


def test_loads_registrations_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text(
        "from pycontainerd.plugin.registration import Registration\n"
        "REGISTRATION = Registration(type='io.example.v1', id='b', init=lambda ctx: 1)\n"
    )
    (tmp_path / "a.py").write_text(
        "from pycontainerd.plugin.registration import Registration\n"
        "REGISTRATIONS = [Registration(type='io.example.v1', id='a1', init=lambda ctx: 1),\n"
        "                 Registration(type='io.example.v1', id='a2', init=lambda ctx: 2)]\n"
    )
    assert [r.id for r in load_plugin_dir(tmp_path)] == ["a1", "a2", "b"]


def test_missing_directory_is_empty(tmp_path: Path) -> None:
    assert load_plugin_dir(tmp_path / "nope") == []


def test_broken_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginLoadError, match=r"bad\.py: RuntimeError: boom"):
        load_plugin_dir(tmp_path)


def test_file_without_registration(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("X = 1\n")
    with pytest.raises(PluginLoadError, match="defines no REGISTRATION"):
        load_plugin_dir(tmp_path)
