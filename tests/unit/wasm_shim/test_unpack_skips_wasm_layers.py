"""Unpacking an OCI wasm image: the module layer stays content, the filesystem layers make the rootfs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pycontainerd.images.manifest import chain_ids, manifests
from pycontainerd.images.unpack import is_layer_type, unpack
from pycontainerd.tools.wasm import build_wasm_image
from tests.unit.images.test_unpack import CTX, load_layout, reader, stores

__all__ = ["stores"]  # the fixture, shared with the unpacker's own tests


def test_layer_types_are_containerds() -> None:
    assert is_layer_type("application/vnd.oci.image.layer.v1.tar+gzip")
    assert is_layer_type("application/vnd.oci.image.layer.v1.tar+zstd+encrypted")
    assert is_layer_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
    assert is_layer_type("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
    assert not is_layer_type("application/wasm")
    assert not is_layer_type("application/vnd.bytecodealliance.wasm.component.layer.v0+wasm")


@pytest.mark.root
def test_unpack_leaves_the_wasm_layer_out(tmp_path: Path, stores) -> None:  # type: ignore[no-untyped-def]
    content, snapshotter = stores
    image = build_wasm_image(tmp_path / "w.tar", layout="layer")
    (found,) = manifests(reader(content), load_layout(content, image.path))  # type: ignore[arg-type]
    assert len(found.layers) == 2 and len(found.diff_ids) == 1
    top = asyncio.run(unpack(CTX, content, snapshotter, found))
    assert top == chain_ids(found.diff_ids)[-1]
    assert [i.name for i in snapshotter.list(CTX)] == [top]
    wasm = found.layers[1]
    assert "containerd.io/uncompressed" not in content.info(CTX, wasm.digest).labels
