"""tests.support.images: the busybox OCI image layout is consistent, complete and deterministic."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.support.images import (
    APPLETS,
    BUSYBOX,
    DEFAULT_REF,
    ImageInfo,
    build_busybox_oci_tar,
    build_image_layout_dir,
    go_arch,
)

pytestmark = pytest.mark.skipif(not BUSYBOX.is_file(), reason="needs busybox-static (/bin/busybox)")


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _read_tar(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    with tarfile.open(path) as tf:
        for member in tf.getmembers():
            assert member.mtime == 0
            assert (member.uid, member.gid) == (0, 0)
            if member.isfile():
                fh = tf.extractfile(member)
                assert fh is not None
                files[member.name] = fh.read()
    return files


def _blob(files: dict[str, bytes], digest: str) -> bytes:
    algo, hexdigest = digest.split(":", 1)
    return files[f"blobs/{algo}/{hexdigest}"]


def _check_layout(files: dict[str, bytes], info: ImageInfo) -> tarfile.TarFile:
    """Check every digest and cross-reference; return the opened layer tar."""
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/"):
            assert name == "blobs/sha256/" + hashlib.sha256(data).hexdigest()

    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2
    [desc] = index["manifests"]
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["digest"] == info.manifest_digest
    assert desc["annotations"] == {
        "io.containerd.image.name": info.ref,
        "org.opencontainers.image.ref.name": info.ref.rsplit(":", 1)[1],
    }

    manifest_bytes = _blob(files, info.manifest_digest)
    assert desc["size"] == len(manifest_bytes) == info.manifest_size
    manifest = json.loads(manifest_bytes)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"] == {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": info.config_digest,
        "size": info.config_size,
    }
    assert manifest["layers"] == [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": info.layer_digest,
            "size": info.layer_size,
        }
    ]

    config_bytes = _blob(files, info.config_digest)
    assert _sha(config_bytes) == info.config_digest and len(config_bytes) == info.config_size
    config = json.loads(config_bytes)
    assert config["architecture"] == info.arch
    assert config["os"] == "linux"
    assert config["rootfs"] == {"type": "layers", "diff_ids": [info.diff_id]}
    assert config["config"]["Cmd"] == ["sh"]
    assert any(e.startswith("PATH=") and "/bin" in e for e in config["config"]["Env"])

    layer_gz = _blob(files, info.layer_digest)
    assert len(layer_gz) == info.layer_size
    layer = gzip.decompress(layer_gz)
    assert _sha(layer) == info.diff_id and len(layer) == info.diff_size
    # gzip header: no name, mtime 0.
    assert layer_gz[3] == 0 and layer_gz[4:8] == b"\0\0\0\0"
    return tarfile.open(fileobj=io.BytesIO(layer))


def test_tar_is_a_consistent_oci_layout(tmp_path: Path) -> None:
    dest = tmp_path / "busybox.tar"
    info = build_busybox_oci_tar(dest)
    assert info.path == dest and info.ref == DEFAULT_REF and info.arch == go_arch()
    assert len(list((_read_tar(dest)).keys())) == 5  # oci-layout, index.json, three blobs

    with _check_layout(_read_tar(dest), info) as layer:
        members = {m.name: m for m in layer.getmembers()}
        names = [m.name for m in layer.getmembers()]
    assert names == sorted(names, key=lambda n: n.split("/"))
    busybox = members["bin/busybox"]
    assert busybox.isfile() and busybox.mode == 0o755 and busybox.size == BUSYBOX.stat().st_size
    for applet in APPLETS:
        link = members[f"bin/{applet}"]
        assert link.issym() and link.linkname == "busybox"
    assert {"sh", "ls", "cat", "echo", "sleep", "true", "id", "grep"} <= set(APPLETS)
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["etc/passwd"].isfile() and members["etc/group"].isfile()
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())


def test_layer_carries_busybox_bytes(tmp_path: Path) -> None:
    info = build_busybox_oci_tar(tmp_path / "b.tar")
    with _check_layout(_read_tar(info.path), info) as layer:
        fh = layer.extractfile("bin/busybox")
        assert fh is not None
        assert fh.read() == BUSYBOX.read_bytes()
        passwd = layer.extractfile("etc/passwd")
        assert passwd is not None
        assert passwd.read().startswith(b"root:x:0:0:")


def test_same_inputs_same_digests(tmp_path: Path) -> None:
    a = build_busybox_oci_tar(tmp_path / "a.tar")
    b = build_busybox_oci_tar(tmp_path / "b.tar")
    assert a.manifest_digest == b.manifest_digest
    assert (a.path.read_bytes()) == (b.path.read_bytes())
    c = build_busybox_oci_tar(tmp_path / "c.tar", ref="example.com/x/busybox:v1")
    assert c.manifest_digest == a.manifest_digest  # the name lives in index.json only
    assert c.path.read_bytes() != a.path.read_bytes()


def test_extra_files_and_arch_change_the_image(tmp_path: Path) -> None:
    base = build_busybox_oci_tar(tmp_path / "base.tar")
    extra = {"etc/hostname": b"box\n", "/opt/app/run.sh": b"#!/bin/sh\necho hi\n"}
    info = build_busybox_oci_tar(tmp_path / "extra.tar", extra_files=extra, arch="arm64")
    assert info.arch == "arm64"
    assert info.layer_digest != base.layer_digest and info.manifest_digest != base.manifest_digest
    with _check_layout(_read_tar(info.path), info) as layer:
        members = {m.name: m for m in layer.getmembers()}
        fh = layer.extractfile("etc/hostname")
        assert fh is not None and fh.read() == b"box\n"
    assert members["opt"].isdir() and members["opt/app"].isdir()
    assert members["opt/app/run.sh"].mode == 0o755 and members["etc/hostname"].mode == 0o644
    reordered = dict(reversed(extra.items()))
    again = build_busybox_oci_tar(tmp_path / "again.tar", extra_files=reordered, arch="arm64")
    assert again.manifest_digest == info.manifest_digest


@pytest.mark.parametrize("bad", ["", "/", "../x", "a/../../x", "tmp", "bin/busybox/x"])
def test_bad_extra_paths_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="extra file"):
        build_busybox_oci_tar(tmp_path / "x.tar", extra_files={bad: b"x"})


def test_layout_dir_matches_tar(tmp_path: Path) -> None:
    tar_info = build_busybox_oci_tar(tmp_path / "img.tar")
    dir_info = build_image_layout_dir(tmp_path / "layout")
    assert dir_info.manifest_digest == tar_info.manifest_digest
    root = dir_info.path
    on_disk = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert on_disk == _read_tar(tar_info.path)
    _check_layout(on_disk, dir_info).close()


@pytest.mark.parametrize(
    ("machine", "expected"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("i686", "386"), ("mips", "mips")]
)
def test_go_arch(machine: str, expected: str) -> None:
    assert go_arch(machine) == expected
