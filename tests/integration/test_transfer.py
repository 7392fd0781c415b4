"""The Transfer and Streaming services, driven by our Python client: import, export, tag.

What the transfers leave behind is checked with Debian's real ctr (images, content labels,
snapshots), and the exported archive is imported again by ctr itself.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.api.containerd.types.transfer import imagestore_pb2, progress_pb2
from pycontainerd.api.pycontainerd.types.transfer.v1 import snapshot_pb2
from pycontainerd.client.transfer import Client, platform_to_pb
from pycontainerd.images.manifest import chain_ids
from pycontainerd.images.platforms import host_platform
from pycontainerd.tools.busybox import ImageInfo, build_image
from tests.support.daemon import DaemonProcess, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "transfer-test"
REF = "docker.io/library/busybox:transfer"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return build_image(tmp_path_factory.mktemp("img") / "busybox.tar", ref=REF, extra_layers=2, files_per_layer=30)


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon() as d:
        yield d


async def _import(d: DaemonProcess, path: Path, store: imagestore_pb2.ImageStore) -> list[progress_pb2.Progress]:
    events: list[progress_pb2.Progress] = []
    client = Client(str(d.address), NS)
    try:
        with path.open("rb") as fh:
            await client.import_archive(fh, store, events.append)
    finally:
        await client.close()
    return events


def unpacking_store(**kwargs: object) -> imagestore_pb2.ImageStore:
    store = imagestore_pb2.ImageStore(**kwargs)  # type: ignore[arg-type]
    store.unpacks.add(platform=platform_to_pb(host_platform()), snapshotter="overlayfs")
    return store


def test_import_stream_names_unpacks_and_labels(daemon: DaemonProcess, image: ImageInfo) -> None:
    store = unpacking_store(
        extra_references=[imagestore_pb2.ImageReference(name="import-test", is_prefix=True, allow_overwrite=True)],
        platforms=[platform_to_pb(host_platform())],
    )
    events = asyncio.run(_import(daemon, image.path, store))
    kinds = [e.event for e in events]
    assert kinds[0] == "Importing" and kinds[-1] == "Completed import", kinds
    assert any(e.event == "saved" and e.name == REF for e in events), kinds
    assert kinds.count("extracted") == len(image.layer_digests)

    listing = daemon.ctr("images", "ls", "-q", namespace=NS).stdout.split()
    assert listing == [REF]
    check = daemon.ctr("images", "check", namespace=NS).stdout
    assert "complete" in check, check
    # The manifest keeps its config and layers for the GC; layers know their diff IDs.
    labels = daemon.ctr("content", "ls", namespace=NS).stdout
    assert f"containerd.io/gc.ref.content.config={image.config_digest}" in labels
    assert f"containerd.io/uncompressed={image.diff_ids[0]}" in labels
    snapshots = daemon.ctr("snapshots", "ls", namespace=NS).stdout
    for chain in chain_ids(image.diff_ids):
        assert chain in snapshots
    # No temporary lease is left holding anything.
    assert daemon.ctr("leases", "ls", "-q", namespace=NS).stdout.strip() == ""


def test_import_without_unpack_and_index_name(daemon: DaemonProcess, image: ImageInfo) -> None:
    store = imagestore_pb2.ImageStore(name="example.com/whole:index")
    asyncio.run(_import(daemon, image.path, store))
    assert daemon.ctr("images", "ls", "-q", namespace=NS).stdout.split() == ["example.com/whole:index"]
    assert daemon.ctr("snapshots", "ls", namespace=NS).stdout.count("\n") <= 1, "nothing unpacked"


def test_export_stream_round_trips_through_ctr(daemon: DaemonProcess, image: ImageInfo, tmp_path: Path) -> None:
    daemon.ctr("images", "import", str(image.path), namespace=NS)
    out = tmp_path / "export.tar"

    async def export() -> list[progress_pb2.Progress]:
        events: list[progress_pb2.Progress] = []
        client = Client(str(daemon.address), NS)
        try:
            with out.open("wb") as fh:
                await client.export_archive(fh, imagestore_pb2.ImageStore(name=REF), progress=events.append)
        finally:
            await client.close()
        return events

    events = asyncio.run(export())
    assert [e.event for e in events] == ["Exporting", "Completed export"]
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        docker = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    for digest in (image.manifest_digest, image.config_digest, *image.layer_digests):
        assert f"blobs/sha256/{digest.split(':')[1]}" in names
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == REF
    assert docker[0]["RepoTags"] == ["busybox:transfer"]
    # ctr imports what we exported, into a fresh namespace, with the same layers.
    daemon.ctr("images", "import", str(out), namespace="reimport")
    assert daemon.ctr("images", "ls", "-q", namespace="reimport").stdout.split() == [REF]


def test_tag_through_transfer(daemon: DaemonProcess, image: ImageInfo) -> None:
    daemon.ctr("images", "import", "--no-unpack", str(image.path), namespace=NS)

    async def tag() -> None:
        client = Client(str(daemon.address), NS)
        try:
            await client.tag(REF, "example.com/other:one", "example.com/other:two")
        finally:
            await client.close()

    asyncio.run(tag())
    names = set(daemon.ctr("images", "ls", "-q", namespace=NS).stdout.split())
    assert names == {REF, "example.com/other:one", "example.com/other:two"}


def test_bad_archive_is_invalid_argument(daemon: DaemonProcess, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar"
    with tarfile.open(bogus, "w") as tf:
        data = b"hello"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    import grpc

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(_import(daemon, bogus, imagestore_pb2.ImageStore(name="x.example/y:z")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "neither index.json nor manifest.json" in (err.value.details() or "")


def pyctr(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pycontainerd.cli.main", "-a", str(d.address), "-n", NS, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_pyctr_import_tag_export(daemon: DaemonProcess, image: ImageInfo, tmp_path: Path) -> None:
    out = pyctr(daemon, "images", "import", str(image.path))
    assert "Completed import" in out.stderr and f"{REF}: saved" in out.stderr, out.stderr
    pyctr(daemon, "images", "tag", REF, "example.com/copy:1")
    exported = tmp_path / "out.tar"
    pyctr(daemon, "images", "export", str(exported), "example.com/copy:1")
    with tarfile.open(exported) as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"][0]["digest"] == image.manifest_digest
    assert set(daemon.ctr("images", "ls", "-q", namespace=NS).stdout.split()) == {REF, "example.com/copy:1"}


def _layer_blob(image: ImageInfo, index: int) -> bytes:
    with tarfile.open(image.path) as tf:
        member = tf.extractfile(f"blobs/sha256/{image.layer_digests[index].split(':')[1]}")
        assert member is not None
        return member.read()


def test_layer_stream_to_snapshot_and_back(daemon: DaemonProcess, image: ImageInfo, tmp_path: Path) -> None:
    # As with any snapshot made through the API, a lease keeps the results from the GC.
    lease = daemon.ctr("leases", "create", namespace=NS).stdout.split()[0]

    async def scenario() -> tuple[list[progress_pb2.Progress], bytes]:
        client = Client(str(daemon.address), NS, lease=lease)
        events: list[progress_pb2.Progress] = []
        try:
            base = snapshot_pb2.Snapshot(key="base", labels={"made-by": "test"})
            await client.apply_layer(io.BytesIO(_layer_blob(image, 0)), base, progress=events.append)
            upper = snapshot_pb2.Snapshot(key="upper", parent="base")
            await client.apply_layer(io.BytesIO(_layer_blob(image, 1)), upper, progress=events.append)
            out = io.BytesIO()
            await client.diff_layer(out, snapshot_pb2.Snapshot(key="upper"), progress=events.append)
            return events, out.getvalue()
        finally:
            await client.close()

    events, layer = asyncio.run(scenario())
    extracted = [e for e in events if e.event == "extracted"]
    assert [e.desc.digest for e in extracted] == list(image.diff_ids[:2]), "diff IDs of the applied layers"
    info = daemon.ctr("snapshots", "info", "upper", namespace=NS).stdout
    assert '"Kind": "Committed"' in info and '"Parent": "base"' in info, info
    assert "made-by" in daemon.ctr("snapshots", "info", "base", namespace=NS).stdout
    assert "transfer-extract" not in daemon.ctr("snapshots", "ls", namespace=NS).stdout
    # The diff of "upper" against "base" is the second layer again: the same files.
    diffed = next(e for e in events if e.event == "diffed")
    assert layer[:2] == b"\x1f\x8b" and diffed.desc.size == len(layer)
    with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
        got = {m.name.rstrip("/") for m in tf.getmembers()}
    with tarfile.open(fileobj=io.BytesIO(_layer_blob(image, 1))) as tf:
        want = {m.name.rstrip("/").removeprefix("./") for m in tf.getmembers()}
    assert {g.removeprefix("./") for g in got} == want


def test_bad_layer_leaves_no_snapshot(daemon: DaemonProcess) -> None:
    import grpc

    async def scenario() -> None:
        client = Client(str(daemon.address), NS)
        try:
            garbage = io.BytesIO(b"\x1f\x8b this is not gzip at all" * 100)
            await client.apply_layer(garbage, snapshot_pb2.Snapshot(key="broken"))
        finally:
            await client.close()

    with pytest.raises(grpc.aio.AioRpcError):
        asyncio.run(scenario())
    assert daemon.ctr("snapshots", "ls", namespace=NS).stdout.count("\n") <= 1, "no snapshot left behind"


def test_huge_index_in_an_archive_is_refused(daemon: DaemonProcess, tmp_path: Path) -> None:
    """An archive whose index.json is larger than 8 MiB is refused, not read into memory."""
    import grpc

    huge = tmp_path / "huge.tar"
    with tarfile.open(huge, "w") as tf:
        info = tarfile.TarInfo("index.json")
        info.size = 9 << 20
        tf.addfile(info, io.BytesIO(b" " * info.size))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(_import(daemon, huge, imagestore_pb2.ImageStore(name="x.example/y:z")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "larger than" in (err.value.details() or "")
    assert daemon.ctr("version").returncode == 0, "the daemon keeps serving"
