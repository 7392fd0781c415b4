"""Images, snapshots and containers with the real ctr: import, run, export, mount, GC."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.tools.busybox import ImageInfo, build_image
from tests.support.daemon import DaemonProcess, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "images-test"
REF = "docker.io/library/busybox:test"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return build_image(tmp_path_factory.mktemp("img") / "busybox.tar", ref=REF, extra_layers=2, files_per_layer=50)


@pytest.fixture
def daemon(image: ImageInfo) -> Iterator[DaemonProcess]:
    # These tests make snapshots with ctr, which holds them by no lease: automatic collections
    # (after the import's lease goes, after each rm) could take them mid-test, here as in
    # containerd. Collections happen only when a test asks (rm --sync, gc collect).
    no_auto_gc = (
        '[plugins."io.containerd.gc.v1.scheduler"]\ndeletion_threshold = 1000000\nmutation_threshold = 1000000\n'
        'startup_delay = "1h"\n'
    )
    with running_daemon(extra_config=no_auto_gc) as d:
        d.ctr("images", "import", str(image.path), namespace=NS)
        yield d


def snapshot_keys(d: DaemonProcess) -> dict[str, str]:
    lines = d.ctr("snapshots", "ls", namespace=NS).stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[-1] for line in lines}


def test_import_check_and_unpack(daemon: DaemonProcess, image: ImageInfo) -> None:
    assert REF in daemon.ctr("images", "ls", "-q", namespace=NS).stdout.split()
    check = daemon.ctr("images", "check", namespace=NS).stdout
    assert "complete (4/4)" in check and "true" in check.splitlines()[1]
    committed = [k for k, kind in snapshot_keys(daemon).items() if kind == "Committed"]
    assert len(committed) == 3, "one committed snapshot per layer, keyed by chain ID"


def test_run_from_image_with_both_shims(daemon: DaemonProcess) -> None:
    for runtime in ("io.containerd.runc.v2", "io.containerd.pyrunc.v2"):
        out = daemon.ctr(
            "run", "--rm", "--runtime", runtime, REF, "t1", "sh", "-c", "cat /etc/passwd | head -1", namespace=NS
        )
        assert out.stdout.strip() == "root:x:0:0:root:/root:/bin/sh"
    data = daemon.ctr("run", "--rm", REF, "t2", "ls", "/data", namespace=NS).stdout.split()
    assert data == ["layer0", "layer1"]


def test_tag_export_reimport(daemon: DaemonProcess, image: ImageInfo, tmp_path: Path) -> None:
    daemon.ctr("images", "tag", REF, "docker.io/library/busybox:copy", namespace=NS)
    out = tmp_path / "export.tar"
    daemon.ctr("images", "export", str(out), REF, namespace=NS)
    with tarfile.open(out) as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        blobs = {n.split("/")[-1] for n in tf.getnames() if n.startswith("blobs/sha256/")}
    assert index["manifests"][0]["digest"] == image.manifest_digest
    assert {d.split(":")[1] for d in image.layer_digests} <= blobs
    daemon.ctr("images", "import", str(out), namespace="other-ns")
    assert REF in daemon.ctr("images", "ls", "-q", namespace="other-ns").stdout.split()


def test_mount_shows_rootfs(daemon: DaemonProcess, tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    daemon.ctr("images", "mount", REF, str(target), namespace=NS)
    try:
        assert (target / "bin" / "busybox").exists()
        assert sorted(p.name for p in (target / "data").iterdir()) == ["layer0", "layer1"]
    finally:
        daemon.ctr("images", "unmount", "--rm", str(target), namespace=NS)
    assert not (target / "bin").exists()


def test_snapshots_and_containers_commands(daemon: DaemonProcess, tmp_path: Path) -> None:
    parent = next(k for k, kind in snapshot_keys(daemon).items() if kind == "Committed")
    daemon.ctr("snapshots", "prepare", "work", parent, namespace=NS)
    daemon.ctr("snapshots", "commit", "work-done", "work", namespace=NS)
    daemon.ctr("snapshots", "view", "look", "work-done", namespace=NS)
    info = json.loads(daemon.ctr("snapshots", "info", "look", namespace=NS).stdout)
    assert info["Kind"] == "View" and info["Parent"] == "work-done"
    assert "work-done" in daemon.ctr("snapshots", "tree", namespace=NS).stdout
    assert "look" in daemon.ctr("snapshots", "usage", namespace=NS).stdout
    removed = daemon.ctr("snapshots", "rm", "work-done", namespace=NS, check=False)
    assert removed.returncode != 0 and "child" in removed.stderr
    daemon.ctr("snapshots", "rm", "look", namespace=NS)
    daemon.ctr("snapshots", "rm", "work-done", namespace=NS)

    daemon.ctr("containers", "create", REF, "c1", "sh", namespace=NS)
    daemon.ctr("containers", "label", "c1", "team=a", namespace=NS)
    info = json.loads(daemon.ctr("containers", "info", "c1", namespace=NS).stdout)
    assert info["Labels"]["team"] == "a" and info["Image"] == REF
    assert "c1" in daemon.ctr("containers", "ls", "-q", namespace=NS).stdout.split()
    daemon.ctr("containers", "rm", "c1", namespace=NS)


def test_gc_removes_snapshots_of_deleted_image_only(daemon: DaemonProcess, image: ImageInfo) -> None:
    daemon.ctr("containers", "create", REF, "keeper", "sh", namespace=NS)
    committed_before = {k for k, kind in snapshot_keys(daemon).items() if kind == "Committed"}
    daemon.ctr("images", "rm", "--sync", REF, namespace=NS)
    # The container's snapshot keeps its whole parent chain alive.
    assert {k for k, kind in snapshot_keys(daemon).items() if kind == "Committed"} == committed_before
    daemon.ctr("containers", "rm", "keeper", namespace=NS)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from pycontainerd.cli.main import main; raise SystemExit(main())",
            "-a",
            str(daemon.address),
            "gc",
            "collect",
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert snapshot_keys(daemon) == {}
    overlay = daemon.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    assert not any(overlay.iterdir()) if overlay.exists() else True


def docker_save_from_layout(layout: Path, dest: Path, tag: str) -> None:
    """Re-pack an OCI layout tar in `docker save` form (manifest.json, config, layer.tar dirs)."""
    import gzip

    with tarfile.open(layout) as src, tarfile.open(dest, "w") as out:

        def blob(digest: str) -> bytes:
            return src.extractfile("blobs/sha256/" + digest.split(":")[1]).read()  # type: ignore[union-attr]

        index = json.loads(src.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))

        config_name = manifest["config"]["digest"].split(":")[1] + ".json"
        add(config_name, blob(manifest["config"]["digest"]))
        layers = []
        for i, layer in enumerate(manifest["layers"]):
            name = f"layer{i}/layer.tar"
            add(name, gzip.decompress(blob(layer["digest"])))
            layers.append(name)
        add("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": layers}]).encode())


def test_import_docker_save_tar(daemon: DaemonProcess, image: ImageInfo, tmp_path: Path) -> None:
    archive = tmp_path / "docker-save.tar"
    docker_save_from_layout(image.path, archive, "example.com/saved:1")
    daemon.ctr("images", "import", str(archive), namespace="docker-ns")
    assert "example.com/saved:1" in daemon.ctr("images", "ls", "-q", namespace="docker-ns").stdout
    out = daemon.ctr("run", "--rm", "example.com/saved:1", "d1", "echo", "from docker save", namespace="docker-ns")
    assert out.stdout.strip() == "from docker save"
