"""The busybox image builder: a valid, deterministic OCI layout tar."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from pycontainerd.tools.busybox import BUSYBOX, build_image, go_arch


def read(tf: tarfile.TarFile, name: str) -> bytes:
    member = tf.extractfile(name)
    assert member is not None
    return member.read()


def test_layout_is_consistent(tmp_path: Path) -> None:
    info = build_image(tmp_path / "img.tar", ref="example.com/busybox:1", extra_layers=1, files_per_layer=20)
    with tarfile.open(info.path) as tf:
        names = set(tf.getnames())
        assert {"oci-layout", "index.json"} <= names
        index = json.loads(read(tf, "index.json"))
        entry = index["manifests"][0]
        assert entry["annotations"]["io.containerd.image.name"] == "example.com/busybox:1"
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1"
        manifest_bytes = read(tf, "blobs/sha256/" + entry["digest"].split(":")[1])
        assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == entry["digest"] == info.manifest_digest
        manifest = json.loads(manifest_bytes)
        config = json.loads(read(tf, "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))
        assert config["architecture"] == go_arch() and config["os"] == "linux"
        diff_ids = []
        for layer in manifest["layers"]:
            blob = read(tf, "blobs/sha256/" + layer["digest"].split(":")[1])
            assert len(blob) == layer["size"]
            plain = gzip.decompress(blob)
            diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
        assert diff_ids == config["rootfs"]["diff_ids"] == list(info.diff_ids)
        with tarfile.open(
            fileobj=io.BytesIO(gzip.decompress(read(tf, "blobs/sha256/" + info.layer_digests[0].split(":")[1])))
        ) as layer_tf:
            assert read(layer_tf, "bin/busybox") == BUSYBOX.read_bytes()
            assert layer_tf.getmember("bin/sh").linkname == "busybox"
            assert layer_tf.getmember("tmp").mode == 0o1777


def test_deterministic(tmp_path: Path) -> None:
    a = build_image(tmp_path / "a.tar")
    b = build_image(tmp_path / "b.tar")
    assert a.manifest_digest == b.manifest_digest
    assert a.path.read_bytes() == b.path.read_bytes()
