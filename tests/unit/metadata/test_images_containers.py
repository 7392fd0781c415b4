from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd.core.containers import AnyValue, Container, Runtime
from pycontainerd.core.images import Descriptor, Image
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.metadata.containers import ContainerStore
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.images import ImageStore
from pycontainerd.metadata.namespaces import NamespaceStore
from pycontainerd.namespaces import RequestContext

CTX = RequestContext(namespace="ns1")
DIGEST = "sha256:" + "1" * 64
INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
def db(tmp_path: Path) -> DB:
    return DB(tmp_path / "meta.db")


def image(name: str = "docker.io/library/busybox:latest", **kw: object) -> Image:
    return Image(name, Descriptor(INDEX, DIGEST, 123, {"a": "1"}), **kw)  # type: ignore[arg-type]


def test_image_crud_and_events(db: DB) -> None:
    events: list[tuple[str, str]] = []
    store = ImageStore(db, publish=lambda ns, topic, ev: events.append((ns, topic)))
    created = store.create(CTX, image(labels={"x": "1"}))
    assert created.created_at > 0
    assert store.get(CTX, created.name).target == created.target
    with pytest.raises(AlreadyExists, match="image"):
        store.create(CTX, image())
    updated = store.update(CTX, image(labels={"y": "2"}), ["labels.y", "annotations.b"])
    assert updated.labels == {"x": "1", "y": "2"}
    assert updated.target.annotations == {"a": "1"}
    assert updated.created_at == created.created_at
    with pytest.raises(InvalidArgument, match='cannot update "name"'):
        store.update(CTX, image(), ["name"])
    assert [i.name for i in store.list(CTX, ["labels.y==2"])] == [created.name]
    assert store.list(CTX, ["name~=alpine"]) == []
    assert [i.name for i in store.list(CTX, [f"target.digest=={DIGEST}"])] == [created.name]
    with pytest.raises(NotFound, match="has target"):
        store.delete(CTX, created.name, target_digest="sha256:" + "2" * 64)
    store.delete(CTX, created.name)
    with pytest.raises(NotFound):
        store.get(CTX, created.name)
    assert [t for _, t in events] == ["/images/create", "/images/update", "/images/delete"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Image("", Descriptor(INDEX, DIGEST, 1)), "name must not be empty"),
        (Image("x", Descriptor(INDEX, "", 1)), "Target.Digest must be set"),
        (Image("x", Descriptor(INDEX, "sha256:zz", 1)), "invalid"),
        (Image("x", Descriptor("", DIGEST, 1)), "MediaType must be set"),
    ],
)
def test_image_validation(db: DB, bad: Image, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ImageStore(db).create(CTX, bad)


SPEC = AnyValue("types.containerd.io/opencontainers/runtime-spec/1/Spec", b'{"ociVersion":"1.1.0"}')


def container(cid: str = "c1", **kw: object) -> Container:
    base: dict[str, object] = {"runtime": Runtime("io.containerd.runc.v2"), "spec": SPEC, "image": "img"}
    base.update(kw)
    return Container(cid, **base)  # type: ignore[arg-type]


def test_container_crud(db: DB) -> None:
    store = ContainerStore(db)
    ext = {"ext1": AnyValue("x/y", b"\x00\x01")}
    created = store.create(CTX, container(snapshotter="overlayfs", snapshot_key="c1", extensions=ext))
    got = store.get(CTX, "c1")
    assert got.spec == SPEC
    assert got.extensions == ext
    assert got.runtime == Runtime("io.containerd.runc.v2")
    assert got.created_at == created.created_at
    with pytest.raises(AlreadyExists):
        store.create(CTX, container())
    updated = store.update(CTX, container(labels={"k": "v"}, image="img2"), ["labels.k", "image"])
    assert (updated.labels, updated.image, updated.snapshot_key) == ({"k": "v"}, "img2", "c1")
    with pytest.raises(InvalidArgument, match="immutable"):
        store.update(CTX, container(snapshotter="native", snapshot_key="c1"))
    assert [c.id for c in store.list(CTX, ["runtime.name==io.containerd.runc.v2"])] == ["c1"]
    assert [c.id for c in store.list(CTX, ["image==img2", "id==nope"])] == ["c1"]
    ns_store = NamespaceStore(db)
    with pytest.raises(FailedPrecondition, match="containers"):
        ns_store.delete("ns1")
    store.delete(CTX, "c1")
    with pytest.raises(NotFound):
        store.delete(CTX, "c1")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (container("bad..id"), "container.ID"),
        (container(runtime=Runtime("")), "runtime name"),
        (container(spec=None), "Spec must be set"),
        (container(snapshot_key="k"), "Snapshotter must be set"),
    ],
)
def test_container_validation(db: DB, bad: Container, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ContainerStore(db).create(CTX, bad)
