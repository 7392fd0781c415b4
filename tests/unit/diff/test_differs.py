"""The differ order (diff-service), unpack through a differ that is not in process, and the diff
proxy against the standalone diff server reading layers from a Content API."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import itertools
import tarfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from pycontainerd.api.containerd.services.content.v1 import content_pb2_grpc as content_grpc
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as diff_grpc
from pycontainerd.content.local.store import LocalStore
from pycontainerd.content.proxy import ProxyContentStore
from pycontainerd.content.service import ContentServer
from pycontainerd.core.images import Descriptor
from pycontainerd.core.snapshots import Mount
from pycontainerd.diff.apply import apply_stream
from pycontainerd.diff.layer import MEDIA_TYPE_GZIP
from pycontainerd.diff.plugin import OrderedDiffers
from pycontainerd.diff.proxy import ProxyDiffer, mount_to_pb
from pycontainerd.diff.service import DiffServer
from pycontainerd.errdefs import FailedPrecondition, NotFound, Unimplemented
from pycontainerd.images.manifest import chain_ids, manifests
from pycontainerd.images.unpack import unpack
from pycontainerd.metadata.content import ContentStore
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.snapshots import NamespacedSnapshotter
from pycontainerd.namespaces import RequestContext
from pycontainerd.services._interceptor import ErrorInterceptor
from pycontainerd.snapshots.native import NativeSnapshotter
from pycontainerd.tools.busybox import build_image
from tests.unit.images.test_unpack import CTX, load_layout


class Recording:
    """A differ that records its calls; it applies by extracting the blob from ``content``."""

    def __init__(self, name: str, *, in_process: bool = False, refuse: bool = False, content: Any = None) -> None:
        self.name = name
        self.in_process = in_process
        self.refuse = refuse
        self.content = content
        self.calls: list[tuple[str, str]] = []

    async def apply(
        self,
        ctx: RequestContext,
        desc: Descriptor,
        mounts: Sequence[Mount],
        *,
        sync_fs: bool = False,
        payloads: Mapping[str, Any] | None = None,
    ) -> Descriptor:
        self.calls.append(("apply", desc.digest))
        if self.refuse:
            raise Unimplemented(f"{self.name}: unsupported media type {desc.media_type}")
        if self.content is None:
            return Descriptor("x", f"sha256:{self.name}", 1)
        data = self.content.read_at(ctx, desc.digest, 0, -1)
        applied = await asyncio.to_thread(apply_stream, io.BufferedReader(io.BytesIO(data)), desc.media_type, mounts)
        return Descriptor(applied.media_type, applied.digest, applied.size)

    async def compare(
        self,
        ctx: RequestContext,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        self.calls.append(("compare", media_type))
        if self.refuse:
            raise Unimplemented("no")
        return Descriptor(media_type, f"sha256:{self.name}", 1)


def test_order_falls_through_unimplemented_only() -> None:
    first, second, third = Recording("a", refuse=True), Recording("b"), Recording("c")
    differs = OrderedDiffers([("a", first), ("b", second), ("c", third)])
    desc = Descriptor("application/x-odd", "sha256:" + "0" * 64, 1)
    assert asyncio.run(differs.apply(CTX, desc, [])).digest == "sha256:b"
    assert (first.calls, second.calls, third.calls) == ([("apply", desc.digest)], [("apply", desc.digest)], [])
    assert asyncio.run(differs.compare(CTX, [], [], media_type="m")).digest == "sha256:b"
    assert not differs.in_process
    assert OrderedDiffers([("w", Recording("w", in_process=True)), ("a", first)]).in_process

    class Broken(Recording):
        async def apply(self, *args: Any, **kwargs: Any) -> Descriptor:
            raise FailedPrecondition("disk full")

    with pytest.raises(FailedPrecondition):  # a real failure is not hidden by the next differ
        asyncio.run(OrderedDiffers([("x", Broken("x")), ("b", second)]).apply(CTX, desc, []))
    with pytest.raises(Unimplemented, match="a: unsupported"):
        asyncio.run(OrderedDiffers([("a", first)]).apply(CTX, desc, []))


def test_mounts_cross_the_wire_with_absolute_paths() -> None:
    m = Mount("overlay", "overlay", ("lowerdir=1/fs:2/fs", "upperdir=3/fs", "workdir=/abs/w", "index=off"), chdir="/s")
    assert list(mount_to_pb(m).options) == [
        "lowerdir=/s/1/fs:/s/2/fs",
        "upperdir=/s/3/fs",
        "workdir=/abs/w",
        "index=off",
    ]
    assert mount_to_pb(m).source == "overlay"
    assert mount_to_pb(Mount("bind", "snap/9", ("rbind", "rw"), chdir="/root")).source == "/root/snap/9"


@pytest.mark.root
def test_unpack_goes_to_a_differ_that_is_not_in_process(tmp_path: Path) -> None:
    db = DB(tmp_path / "meta.db")
    content = ContentStore(db, LocalStore(tmp_path / "content"))
    snapshotter = NamespacedSnapshotter("native", db, NativeSnapshotter(tmp_path / "native"))
    image = build_image(tmp_path / "img.tar", extra_layers=2, files_per_layer=5)
    (found,) = manifests(lambda d: content.read_at(CTX, d, 0, -1), load_layout(content, image.path))
    remote = Recording("remote", content=content)
    ready: list[str] = []

    async def layer_ready(layer: Descriptor) -> None:
        ready.append(layer.digest)

    def opener(_layer: Descriptor) -> Any:
        raise AssertionError("a remote differ reads the layer itself")

    top = asyncio.run(
        unpack(
            CTX,
            content,
            snapshotter,
            found,
            open_layer=opener,
            differ=OrderedDiffers([("remote", remote)]),
            layer_ready=layer_ready,
        )
    )
    assert top == chain_ids(found.diff_ids)[-1]
    assert remote.calls == [("apply", layer.digest) for layer in found.layers]
    assert ready == [layer.digest for layer in found.layers], "each layer is committed before the differ asks"
    # A differ that computes another diff ID fails the unpack and leaves no snapshot behind.
    wrong = Recording("wrong")
    db2 = DB(tmp_path / "meta2.db")
    snap2 = NamespacedSnapshotter("native", db2, NativeSnapshotter(tmp_path / "native2"))
    content2 = ContentStore(db2, content.backend)
    load_layout(content2, image.path)
    with pytest.raises(FailedPrecondition, match="wrong diff id"):
        asyncio.run(unpack(CTX, content2, snap2, found, differ=OrderedDiffers([("wrong", wrong)])))
    assert snap2.list(CTX) == []


# -- the diff proxy and the standalone diff server, over the wire ------------------------------


class Servers:
    """A content server (standing in for the daemon's Content API) and a diff server reading from it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.content_sock, self.diff_sock = base / "content.sock", base / "diff.sock"
        self.root = base / "blobs"
        self.store = LocalStore(self.root)
        self.reader = ProxyContentStore(str(self.content_sock))

        async def run() -> list[Any]:
            content = grpc.aio.server(interceptors=[ErrorInterceptor()])
            content_grpc.add_ContentServicer_to_server(ContentServer(self.store), content)
            content.add_insecure_port(f"unix:{self.content_sock}")
            self.differ = DiffServer(self.reader)
            diff = grpc.aio.server(interceptors=[ErrorInterceptor()])
            diff_grpc.add_DiffServicer_to_server(self.differ, diff)
            diff.add_insecure_port(f"unix:{self.diff_sock}")
            await content.start()
            await diff.start()
            return [content, diff]

        self.servers = asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def close(self) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.stop(0), self.loop).result(10)
        self.reader.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    s = Servers(tmp_path)
    try:
        yield s
    finally:
        s.close()


def layer_of(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain), "sha256:" + hashlib.sha256(plain).hexdigest()


def put(store: LocalStore, data: bytes) -> Descriptor:
    w = store.writer(f"r{next(COUNTER)}")
    w.write(data)
    return Descriptor(MEDIA_TYPE_GZIP, w.commit(len(data), ""), len(data))


COUNTER = itertools.count()


def test_proxy_differ_applies_and_compares_through_the_server(servers: Servers, tmp_path: Path) -> None:
    blob, diff_id = layer_of({"hello.txt": b"hi there", "dir/deep.txt": b"deep"})
    desc = put(servers.store, blob)
    target = tmp_path / "target"
    target.mkdir()
    # A bind mount is applied into its source directly: no mount, no root needed.
    mounts = [Mount("bind", str(target), ("rbind", "rw"))]

    async def run() -> tuple[Descriptor, Descriptor]:
        differ = ProxyDiffer(str(servers.diff_sock), "remote")
        try:
            applied = await differ.apply(CTX, desc, mounts)
            upper = tmp_path / "upper"
            (upper / "dir").mkdir(parents=True)
            (upper / "dir" / "new.txt").write_bytes(b"added")
            made = await differ.compare(
                CTX, [Mount("bind", str(target), ("rbind", "ro"))], [Mount("bind", str(upper), ("rbind", "ro"))]
            )
            with pytest.raises(NotFound):
                await differ.apply(CTX, Descriptor(MEDIA_TYPE_GZIP, "sha256:" + "1" * 64, 3), mounts)
            with pytest.raises(FailedPrecondition, match="namespace is required"):
                await differ.apply(RequestContext(), desc, mounts)
            with pytest.raises(Unimplemented):
                await differ.compare(CTX, mounts, mounts, media_type="application/x-nope")
            return applied, made
        finally:
            await differ.close()

    applied, made = asyncio.run(run())
    assert applied.digest == diff_id
    assert (target / "hello.txt").read_bytes() == b"hi there" and (target / "dir" / "deep.txt").read_bytes() == b"deep"
    assert servers.differ.applied == 1
    # The new layer was written back through the Content API, labelled with its diff ID.
    assert made.media_type == MEDIA_TYPE_GZIP and servers.store.info(made.digest).size == made.size
    with tarfile.open(fileobj=io.BytesIO(servers.store.read_at(made.digest, 0, 0))) as tf:
        assert "dir/new.txt" in tf.getnames()
