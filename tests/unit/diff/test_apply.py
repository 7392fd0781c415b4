from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from pycontainerd.core.snapshots import Mount
from pycontainerd.diff.apply import apply_layer, direct_target
from pycontainerd.errdefs import FailedPrecondition


def layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"hello from a layer\n"
        info = tarfile.TarInfo("etc/motd")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("media_type", "compress"),
    [
        ("application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", gzip.compress),
        ("application/vnd.oci.image.layer.v1.tar+zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
        ("application/vnd.oci.image.layer.v1.tar", lambda b: b),
        ("application/octet-stream", gzip.compress),  # detected by magic bytes
    ],
)
def test_apply_onto_bind_mount(tmp_path: Path, media_type: str, compress: object) -> None:
    raw = layer_tar()
    blob = tmp_path / "blob"
    blob.write_bytes(compress(raw))  # type: ignore[operator]
    target = tmp_path / "fs"
    target.mkdir()
    applied = apply_layer(blob, media_type, [Mount("bind", str(target), ("rbind", "rw"))])
    assert applied.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert applied.size == len(raw)
    assert applied.media_type == "application/vnd.oci.image.layer.v1.tar"
    assert (target / "etc/motd").read_text() == "hello from a layer\n"


def test_direct_targets() -> None:
    assert direct_target([Mount("bind", "/x", ("rbind", "rw"))]) == (
        "/x",
        direct_target([Mount("bind", "/x", ("rw",))])[1],
    )  # type: ignore[index]
    target, opts = direct_target([Mount("overlay", "overlay", ("lowerdir=/l", "upperdir=/u", "workdir=/w"))])  # type: ignore[misc]
    assert target == "/u"
    assert opts.whiteouts == "overlay"
    with pytest.raises(FailedPrecondition):
        direct_target([Mount("bind", "/x", ("rbind", "ro"))])
    with pytest.raises(FailedPrecondition):
        direct_target([Mount("overlay", "overlay", ("lowerdir=/a:/b",))])
    assert direct_target([Mount("tmpfs", "tmpfs")]) is None
