"""The snapshot metastore on its own: no mounts, no root."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.core.snapshots import Info, Kind, Usage
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.snapshots.storage import (
    SCHEMA_VERSION,
    MetaStore,
    Snapshot,
    disk_usage,
    remove_orphans,
    remove_snapshot,
)


@pytest.fixture
def ms(tmp_path: Path) -> Iterator[MetaStore]:
    store = MetaStore(tmp_path / "metadata.db")
    yield store
    store.close()


def chain(ms: MetaStore, n: int) -> list[str]:
    names, parent = [], ""
    for i in range(n):
        with ms.write() as tx:
            tx.create(Kind.ACTIVE, f"a{i}", parent)
            tx.commit(f"a{i}", f"c{i}", Usage(i, i))
        parent = f"c{i}"
        names.append(parent)
    return names


def test_pragmas_and_schema(ms: MetaStore, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "metadata.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "metadata.db")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(FailedPrecondition, match="newer"):
        MetaStore(tmp_path / "metadata.db")


def test_parent_chain_is_closest_first(ms: MetaStore) -> None:
    chain(ms, 5)
    with ms.write() as tx:
        s = tx.create(Kind.VIEW, "v", "c4")
        assert s == Snapshot(6, Kind.VIEW, (5, 4, 3, 2, 1))
        assert tx.snapshot("v") == s
        with pytest.raises(FailedPrecondition):
            tx.snapshot("c4")
        assert tx.get("c3").usage == Usage(3, 3)


def test_ids_are_never_reused(ms: MetaStore) -> None:
    with ms.write() as tx:
        first = tx.create(Kind.ACTIVE, "a").id
        tx.remove("a")
        assert tx.create(Kind.ACTIVE, "a").id == first + 1


def test_failed_call_rolls_back(ms: MetaStore) -> None:
    def failing_call() -> None:
        with ms.write() as tx:
            tx.create(Kind.ACTIVE, "a")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing_call()
    with ms.read() as tx:
        assert tx.walk() == []


def test_argument_errors(ms: MetaStore) -> None:
    chain(ms, 1)
    with ms.write() as tx:
        with pytest.raises(InvalidArgument):
            tx.create(Kind.COMMITTED, "x")
        with pytest.raises(InvalidArgument):
            tx.create(Kind.ACTIVE, "")
        tx.create(Kind.ACTIVE, "a")
        with pytest.raises(InvalidArgument):
            tx.commit("a", "", Usage())
        with pytest.raises(AlreadyExists):
            tx.commit("a", "c0", Usage())
        with pytest.raises(NotFound):
            tx.remove("nope")
        with pytest.raises(InvalidArgument):
            tx.update(Info("a", Kind.ACTIVE), ["labels", "parent"])


def test_labels_empty_values_unset(ms: MetaStore) -> None:
    with ms.write() as tx:
        tx.create(Kind.ACTIVE, "a", labels={"keep": "1", "empty": ""})
        assert tx.get("a").info.labels == {"keep": "1"}
        info = tx.update(Info("a", Kind.ACTIVE, labels={"keep": "", "new": "2"}), ["labels.keep", "labels.new"])
        assert info.labels == {"new": "2"}


def test_closed_store(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "metadata.db")
    store.close()
    store.close()
    with pytest.raises(FailedPrecondition, match="closed"), store.read():
        pass


def test_remove_snapshot_and_orphans(ms: MetaStore, tmp_path: Path) -> None:
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    chain(ms, 2)
    (snaps / "1" / "fs").mkdir(parents=True)
    (snaps / "2" / "fs").mkdir(parents=True)
    with pytest.raises(FailedPrecondition):
        remove_snapshot(ms, "c0", snaps)
    assert sorted(os.listdir(snaps)) == ["1", "2"]
    remove_snapshot(ms, "c1", snaps)
    assert os.listdir(snaps) == ["1"]
    (snaps / "removing-9").mkdir()
    (snaps / "new-x").mkdir()
    assert sorted(remove_orphans(ms, snaps)) == ["new-x", "removing-9"]
    assert os.listdir(snaps) == ["1"]


def test_disk_usage_counts_inodes_once(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"x" * 5000)
    os.link(root / "d" / "f", root / "g")
    os.symlink("/etc", root / "s")  # not followed
    usage = disk_usage(str(root))
    assert usage.inodes == 4
    blocks = sum(p.lstat().st_blocks for p in (root, root / "d", root / "d" / "f", root / "s"))
    assert usage.size == blocks * 512
