"""The sandbox store: records, field-path updates, filters, namespaces, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd.core.containers import AnyValue, Runtime
from pycontainerd.core.sandboxes import Sandbox
from pycontainerd.errdefs import AlreadyExists, InvalidArgument, NotFound
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.sandboxes import SandboxStore
from pycontainerd.namespaces import RequestContext

CTX = RequestContext(namespace="ns1")
OTHER = RequestContext(namespace="ns2")
SPEC = AnyValue("types.containerd.io/opencontainers/runtime-spec/1/Spec", b'{"ociVersion":"1.1.0"}')


@pytest.fixture
def store(tmp_path: Path) -> SandboxStore:
    return SandboxStore(DB(tmp_path / "meta.db"))


def sandbox(sid: str = "pod1", **kw: object) -> Sandbox:
    kw.setdefault("spec", SPEC)
    return Sandbox(sid, Runtime("io.containerd.runc.v2"), sandboxer="podsandbox", **kw)  # type: ignore[arg-type]


def test_create_get_list_delete(store: SandboxStore) -> None:
    created = store.create(CTX, sandbox(labels={"app": "web"}, extensions={"ext": AnyValue("t", b"v")}))
    assert created.created_at == created.updated_at > 0
    got = store.get(CTX, "pod1")
    assert got.spec == SPEC and got.labels == {"app": "web"} and got.extensions["ext"].value == b"v"
    assert got.sandboxer == "podsandbox"
    with pytest.raises(AlreadyExists):
        store.create(CTX, sandbox())
    store.create(CTX, sandbox("pod2"))
    assert [s.id for s in store.list(CTX)] == ["pod1", "pod2"]
    assert [s.id for s in store.list(CTX, ["labels.app==web"])] == ["pod1"]
    assert [s.id for s in store.list(CTX, ["id==pod2", "sandboxer==nope"])] == ["pod2"]
    assert store.list(OTHER) == [], "namespaces never see each other's sandboxes"
    with pytest.raises(NotFound):
        store.get(OTHER, "pod1")
    store.delete(CTX, "pod1")
    with pytest.raises(NotFound):
        store.delete(CTX, "pod1")
    assert [s.id for s in store.list(CTX)] == ["pod2"]


def test_validation(store: SandboxStore) -> None:
    with pytest.raises(InvalidArgument, match=r"Runtime\.Name"):
        store.create(CTX, Sandbox("pod", Runtime("")))
    with pytest.raises(InvalidArgument, match="sandbox ID"):
        store.create(CTX, sandbox("bad id with spaces"))


def test_update_field_paths(store: SandboxStore) -> None:
    store.create(CTX, sandbox(labels={"a": "1", "b": "2"}))
    updated = store.update(CTX, sandbox(labels={"b": "", "c": "3"}), ["labels.b", "labels.c"])
    assert updated.labels == {"a": "1", "c": "3"}
    new_spec = AnyValue(SPEC.type_url, b'{"ociVersion":"1.2.0"}')
    assert store.update(CTX, sandbox(spec=new_spec), ["spec"]).spec == new_spec
    with pytest.raises(InvalidArgument, match="cannot update"):
        store.update(CTX, sandbox(), ["sandboxer"])
    with pytest.raises(InvalidArgument, match="immutable"):
        store.update(CTX, Sandbox("pod1", Runtime("io.containerd.other.v1")))
    with pytest.raises(NotFound):
        store.update(CTX, sandbox("absent"), ["labels"])
