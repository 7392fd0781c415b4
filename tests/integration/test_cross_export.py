"""Images move between pycontainerd and the real containerd with identical digests."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from pycontainerd.tools.busybox import build_image
from tests.support.daemon import running_daemon
from tests.support.real_containerd import real_containerd

pytestmark = [pytest.mark.integration, pytest.mark.root]

REF = "docker.io/library/busybox:cross"


def ctr(sock: Path, *args: str) -> str:
    result = subprocess.run(
        ["ctr", "-a", str(sock), "-n", "cross", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def layer_digests(archive: Path) -> tuple[str, list[str]]:
    with tarfile.open(archive) as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.load(tf.extractfile("blobs/sha256/" + manifest_digest.split(":")[1]))  # type: ignore[arg-type]
    return manifest_digest, [layer["digest"] for layer in manifest["layers"]]


def test_export_from_containerd_import_here_and_back(tmp_path: Path) -> None:
    source = build_image(tmp_path / "src.tar", ref=REF, extra_layers=1, files_per_layer=30)
    from_containerd = tmp_path / "from-containerd.tar"
    from_us = tmp_path / "from-pycontainerd.tar"
    with real_containerd() as real:
        ctr(real, "images", "import", str(source.path))
        ctr(real, "images", "export", str(from_containerd), REF)
    with running_daemon() as ours:
        ctr(ours.address, "images", "import", str(from_containerd))
        assert "hello" in ctr(ours.address, "run", "--rm", REF, "x", "echo", "hello")
        ctr(ours.address, "images", "export", str(from_us), REF)
    with real_containerd() as real:
        ctr(real, "images", "import", str(from_us))
        assert "back" in ctr(real, "run", "--rm", REF, "y", "echo", "back")
    assert (
        layer_digests(from_containerd) == layer_digests(from_us) == (source.manifest_digest, list(source.layer_digests))
    )
