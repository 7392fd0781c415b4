"""The parts of netns handling that need no privileges (the rest is in tests/integration/test_cni.py)."""

from __future__ import annotations

from pathlib import Path

from pycontainerd.cni.netns import NetNSEntry, is_netns, list_netns, remove_netns


def test_is_netns() -> None:
    assert is_netns("/proc/self/ns/net")
    assert not is_netns("/proc/self/ns/mnt")
    assert not is_netns("/etc/hostname")
    assert not is_netns("/nonexistent")


def test_list_and_remove_leftovers(tmp_path: Path) -> None:
    assert list_netns(tmp_path / "missing") == []
    (tmp_path / "cni-b").touch()
    (tmp_path / "cni-a").touch()
    (tmp_path / "other").touch()
    assert list_netns(tmp_path) == [
        NetNSEntry(str(tmp_path / "cni-a"), False),
        NetNSEntry(str(tmp_path / "cni-b"), False),
    ]
    remove_netns(tmp_path / "cni-a")
    remove_netns(tmp_path / "cni-a")
    remove_netns(tmp_path / "never-existed")
    assert [e.path for e in list_netns(tmp_path)] == [str(tmp_path / "cni-b")]
