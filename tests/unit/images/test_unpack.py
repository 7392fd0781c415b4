"""The image model and unpacker over the real stores (native snapshotter, local content)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from pycontainerd.content.local.store import LocalStore
from pycontainerd.core.images import Descriptor
from pycontainerd.errdefs import NotFound, Unimplemented
from pycontainerd.images.manifest import OCI_INDEX, chain_ids, manifests
from pycontainerd.images.platforms import Platform, host_platform, matches, parse
from pycontainerd.images.unpack import unpack
from pycontainerd.metadata.content import ContentStore
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.snapshots import NamespacedSnapshotter
from pycontainerd.namespaces import RequestContext
from pycontainerd.snapshots.native import NativeSnapshotter
from pycontainerd.tools.busybox import build_image

CTX = RequestContext(namespace="img")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def stores(tmp_path: Path) -> tuple[ContentStore, NamespacedSnapshotter]:
    db = DB(tmp_path / "meta.db")
    content = ContentStore(db, LocalStore(tmp_path / "content"))
    snapshotter = NamespacedSnapshotter("native", db, NativeSnapshotter(tmp_path / "native"))
    return content, snapshotter


def ingest(content: ContentStore, data: bytes) -> str:
    digest = sha(data)
    writer = content.writer(CTX, f"ref-{digest}", total=len(data), expected=digest)
    writer.write(data)
    writer.commit(len(data), digest)
    writer.close()
    return digest


def load_layout(content: ContentStore, archive: Path) -> Descriptor:
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            if member.name.startswith("blobs/sha256/") and member.isfile():
                data = tf.extractfile(member).read()  # type: ignore[union-attr]
                ingest(content, data)
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    m = index["manifests"][0]
    return Descriptor(m["mediaType"], m["digest"], m["size"])


def reader(content: ContentStore) -> object:
    return lambda digest: content.read_at(CTX, digest, 0, -1)


@pytest.mark.root
def test_unpack_chain_and_labels(tmp_path: Path, stores: tuple[ContentStore, NamespacedSnapshotter]) -> None:
    content, snapshotter = stores
    image = build_image(tmp_path / "img.tar", extra_layers=2, files_per_layer=10)
    target = load_layout(content, image.path)
    (found,) = manifests(reader(content), target)  # type: ignore[arg-type]
    top = asyncio.run(unpack(CTX, content, snapshotter, found))
    chain = chain_ids(found.diff_ids)
    assert top == chain[-1]
    infos = {i.name: i for i in snapshotter.list(CTX)}
    assert set(infos) == set(chain), "only committed chain snapshots remain (no extract- leftovers)"
    assert infos[chain[1]].parent == chain[0]
    config_labels = content.info(CTX, found.config_descriptor.digest).labels
    assert config_labels["containerd.io/gc.ref.snapshot.native"] == top
    for layer, diff_id in zip(found.layers, found.diff_ids, strict=True):
        assert content.info(CTX, layer.digest).labels["containerd.io/uncompressed"] == diff_id
    view = snapshotter.view(CTX, "look", top)
    root = Path(view[0].source)
    assert (root / "bin" / "busybox").exists() and (root / "data" / "layer1").is_dir()
    assert asyncio.run(unpack(CTX, content, snapshotter, found)) == top, "a second unpack reuses the chain"


def test_index_platform_selection(stores: tuple[ContentStore, NamespacedSnapshotter]) -> None:
    content, _ = stores

    def manifest_for(arch: str) -> dict[str, object]:
        config = json.dumps(
            {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": ingest(content, config),
                    "size": len(config),
                },
                "layers": [],
            }
        ).encode()
        return {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": ingest(content, manifest),
            "size": len(manifest),
            "platform": {"os": "linux", "architecture": arch},
        }

    entries = [manifest_for("s390x"), manifest_for(host_platform().architecture)]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    target = Descriptor(OCI_INDEX, ingest(content, index), len(index))
    (chosen,) = manifests(reader(content), target)  # type: ignore[arg-type]
    assert chosen.platform.architecture == host_platform().architecture
    assert len(manifests(reader(content), target, all_platforms=True)) == 2  # type: ignore[arg-type]
    assert manifests(reader(content), target, parse("linux/s390x"))[0].platform.architecture == "s390x"  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="no match for platform"):
        manifests(reader(content), target, Platform("linux", "riscv64"))  # type: ignore[arg-type]


def test_schema1_is_refused(stores: tuple[ContentStore, NamespacedSnapshotter]) -> None:
    content, _ = stores
    doc = json.dumps({"schemaVersion": 1, "name": "old/image", "fsLayers": []}).encode()
    target = Descriptor("application/vnd.docker.distribution.manifest.v1+prettyjws", ingest(content, doc), len(doc))
    with pytest.raises(Unimplemented, match="Schema 1 is no longer supported"):
        manifests(reader(content), target)  # type: ignore[arg-type]


def test_platform_parsing_and_matching() -> None:
    assert parse("linux/arm64") == Platform("linux", "arm64", "v8")
    assert parse("linux/arm/v7") == Platform("linux", "arm", "v7")
    assert parse("aarch64") == Platform("linux", "arm64", "v8")
    assert matches(Platform("linux", "amd64"), {"os": "linux", "architecture": "amd64"})
    assert not matches(Platform("linux", "amd64"), {"os": "linux", "architecture": "arm64"})
    assert matches(Platform("linux", "arm64", "v8"), {"os": "linux", "architecture": "aarch64"})
    assert chain_ids(["sha256:a"]) == ["sha256:a"]
    assert chain_ids(["sha256:a", "sha256:b"])[1] == sha(b"sha256:a sha256:b")
