from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.namespaces import Namespace, NamespaceStore
from pycontainerd.metadata.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def events() -> list[tuple[str, Namespace]]:
    return []


@pytest.fixture
def store(tmp_path: Path, events: list[tuple[str, Namespace]]) -> NamespaceStore:
    return NamespaceStore(DB(tmp_path / "meta.db"), on_event=lambda a, ns: events.append((a, ns)))


def test_create_get_list(store: NamespaceStore, events: list[tuple[str, Namespace]]) -> None:
    store.create("b", {"x": "1"})
    store.create("a")
    assert store.get("b") == Namespace("b", {"x": "1"})
    assert [ns.name for ns in store.list()] == ["a", "b"]
    assert [a for a, _ in events] == ["create", "create"]


def test_create_twice_and_invalid(store: NamespaceStore) -> None:
    store.create("a")
    with pytest.raises(AlreadyExists, match='namespace "a"'):
        store.create("a")
    with pytest.raises(InvalidArgument, match="must match"):
        store.create("bad..name")
    with pytest.raises(InvalidArgument, match="maximum size"):
        store.create("big", {"k": "v" * 5000})


def test_get_missing(store: NamespaceStore) -> None:
    with pytest.raises(NotFound):
        store.get("nope")


def test_update_by_fieldpath(store: NamespaceStore) -> None:
    store.create("a", {"keep": "1", "drop": "2"})
    ns = store.update("a", {"new": "3"}, ["labels.new", "labels.drop"])
    assert ns.labels == {"keep": "1", "new": "3"}
    assert store.update("a", {"only": "x"}).labels == {"only": "x"}
    with pytest.raises(InvalidArgument, match='cannot update "name" field'):
        store.update("a", {}, ["name"])
    assert store.get("a").labels == {"only": "x"}, "a failed update changes nothing"


def test_update_creates_missing_namespace_like_containerd(store: NamespaceStore) -> None:
    store.update("fresh", {"a": "b"}, ["labels.a"])
    assert store.get("fresh").labels == {"a": "b"}


def test_delete_empty_and_missing(store: NamespaceStore, events: list[tuple[str, Namespace]]) -> None:
    store.create("a", {"x": "y"})
    store.delete("a")
    assert store.list() == []
    assert events[-1][0] == "delete"
    with pytest.raises(NotFound):
        store.delete("a")


def test_delete_refuses_non_empty(tmp_path: Path) -> None:
    db = DB(tmp_path / "meta.db")
    store = NamespaceStore(db)
    store.create("a")
    with db.write() as tx:
        tx.execute("INSERT INTO images VALUES ('a', 'img', 'm', 'sha256:x', 1, '{}', 0, 0)")
        tx.execute("INSERT INTO snapshots VALUES ('a', 'overlayfs', 'k', 'b', '', 1, 0, 0)")
    with pytest.raises(FailedPrecondition, match='still has images, snapshots on "overlayfs" snapshotter'):
        store.delete("a")
    assert store.get("a").name == "a"


def test_failed_transaction_publishes_nothing(store: NamespaceStore, events: list[tuple[str, Namespace]]) -> None:
    store.create("a")
    events.clear()
    with pytest.raises(InvalidArgument):
        store.update("a", {"k": "v" * 5000}, ["labels.k"])
    assert events == []


def test_persistence_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    NamespaceStore(DB(path)).create("keep", {"l": "v"})
    db = DB(path)
    assert db.schema_version == SCHEMA_VERSION
    assert NamespaceStore(db).get("keep").labels == {"l": "v"}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    DB(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(FailedPrecondition, match="newer"):
        DB(path)
