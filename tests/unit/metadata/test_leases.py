from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd.core.leases import Resource
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.leases import LeaseStore, attach
from pycontainerd.namespaces import RequestContext

CTX = RequestContext(namespace="ns1")


@pytest.fixture
def store(tmp_path: Path) -> LeaseStore:
    return LeaseStore(DB(tmp_path / "meta.db"))


def test_create_list_delete(store: LeaseStore) -> None:
    store.create(CTX, "l1", {"containerd.io/gc.expire": "2030-01-01T00:00:00Z"})
    store.create(CTX, "l2")
    assert [lease.id for lease in store.list(CTX)] == ["l1", "l2"]
    assert [lease.id for lease in store.list(CTX, ["id==l2"])] == ["l2"]
    assert [lease.id for lease in store.list(CTX, ['labels."containerd.io/gc.expire"'])] == ["l1"]
    with pytest.raises(AlreadyExists, match='lease "l1"'):
        store.create(CTX, "l1")
    store.delete(CTX, "l1")
    with pytest.raises(NotFound):
        store.delete(CTX, "l1")


def test_namespaces_are_separate(store: LeaseStore) -> None:
    store.create(CTX, "l1")
    other = RequestContext(namespace="ns2")
    assert store.list(other) == []
    store.create(other, "l1")
    with pytest.raises(FailedPrecondition):
        store.list(RequestContext())


def test_resources(store: LeaseStore) -> None:
    store.create(CTX, "l1")
    store.add_resource(CTX, "l1", Resource("sha256:" + "a" * 64, "content"))
    store.add_resource(CTX, "l1", Resource("key1", "snapshots/overlayfs"))
    assert store.list_resources(CTX, "l1") == [
        Resource("sha256:" + "a" * 64, "content"),
        Resource("key1", "snapshots/overlayfs"),
    ]
    store.delete_resource(CTX, "l1", Resource("key1", "snapshots/overlayfs"))
    assert len(store.list_resources(CTX, "l1")) == 1
    with pytest.raises(InvalidArgument, match="unsupported resource type"):
        store.add_resource(CTX, "l1", Resource("x", "bogus"))
    with pytest.raises(NotFound):
        store.add_resource(CTX, "nope", Resource("x", "content"))


def test_attach_needs_existing_lease(tmp_path: Path) -> None:
    db = DB(tmp_path / "meta.db")
    with db.write() as tx, pytest.raises(NotFound, match="does not exist"):
        attach(tx, RequestContext("ns1", lease="ghost"), "ns1", "content", "x")
