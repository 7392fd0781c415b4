"""The content proxy (``content/proxy.py``) against the standalone server (``content/service.py``).

The shared backend suite runs over the wire: a :class:`ProxyContentStore` talking to a live
Content API server over a local :class:`LocalStore` must behave like the local store itself,
except where the API cannot express an operation (an ingest can only be restarted, not cut).
The write protocol is also checked message by message, as containerd's content server answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from pycontainerd.api.containerd.services.content.v1 import content_pb2 as pb
from pycontainerd.api.containerd.services.content.v1 import content_pb2_grpc as pb_grpc
from pycontainerd.content.local.store import LocalStore
from pycontainerd.content.proxy import ProxyContentStore
from pycontainerd.content.reader import open_blob
from pycontainerd.content.service import ContentServer
from pycontainerd.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unimplemented,
)
from pycontainerd.metadata.content import ContentStore
from pycontainerd.metadata.db import DB
from pycontainerd.namespaces import RequestContext
from pycontainerd.services._interceptor import ErrorInterceptor
from tests.conformance.content import EMPTY, ContentBackend, ContentStoreSuite, content, put, sha256


class Servers:
    """Content servers on one background event loop, each over its own root and socket."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[Any] = []
        self.stores: list[ProxyContentStore] = []
        self.count = itertools.count()

    def start(self, root: Path) -> tuple[ProxyContentStore, Path]:
        sock = self.base / f"c{next(self.count)}.sock"

        async def run() -> Any:
            server = grpc.aio.server(interceptors=[ErrorInterceptor()])
            pb_grpc.add_ContentServicer_to_server(ContentServer(LocalStore(root)), server)
            server.add_insecure_port(f"unix:{sock}")
            await server.start()
            return server

        self.servers.append(asyncio.run_coroutine_threadsafe(run(), self.loop).result(10))
        store = ProxyContentStore(str(sock))
        self.stores.append(store)
        return store, sock

    def close(self) -> None:
        for store in self.stores:
            store.close()
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    s = Servers(tmp_path_factory.mktemp("sockets"))
    try:
        yield s
    finally:
        s.close()


class TestProxyContentStore(ContentStoreSuite):
    """The backend suite, every call crossing the Content API."""

    @pytest.fixture(autouse=True)
    def _servers(self, servers: Servers) -> None:
        self.servers = servers

    def make_store(self, root: Path) -> ContentBackend:
        return self.servers.start(root)[0]

    def test_truncate(self, store: ContentBackend) -> None:
        # The API restarts an ingest (a WRITE at offset 0) but cannot cut it anywhere else.
        data, digest = content(3000)
        w = store.writer("t")
        w.write(b"garbage" * 100)
        with pytest.raises(Unimplemented):
            w.truncate(10)
        with pytest.raises(InvalidArgument):
            w.truncate(701)
        with pytest.raises(InvalidArgument):
            w.truncate(-1)
        w.truncate(0)
        assert (w.offset, w.digest()) == (0, EMPTY)
        assert store.status("t").offset == 0
        w.write(data)
        assert w.commit(3000, digest) == digest

    @pytest.mark.parametrize("with_expected", [True, False])
    def test_commit_existing(self, store: ContentBackend, with_expected: bool) -> None:
        # As the suite, but with containerd's wording when the commit names an expected digest.
        data, digest = content(256)
        put(store, "first", data)
        w = store.writer("dup")
        w.write(data)
        wording = f"blob with expected digest {digest} exists" if with_expected else f"content {digest}"
        with pytest.raises(AlreadyExists, match=wording):
            w.commit(len(data), digest if with_expected else "")
        with pytest.raises(NotFound):
            store.status("dup")
        store.writer("dup").close()
        assert w.digest() == digest
        assert store.read_at(digest, 0, 0) == data

    def test_commit_failures_keep_the_ingest(self, store: ContentBackend) -> None:
        data, digest = content(256)
        _, other = content(256, seed=1)
        ref = "commit-error-state"
        w = store.writer(ref)
        w.write(data + b"more")
        with pytest.raises(
            FailedPrecondition, match=f"^unexpected commit digest {sha256(data + b'more')}, expected {other}$"
        ):
            w.commit(260, other)
        with pytest.raises(FailedPrecondition):  # a failed commit closes the writer
            w.write(b"x")
        assert store.status(ref).offset == 260
        w = store.writer(ref)
        assert (w.offset, w.digest()) == (260, sha256(data + b"more"))
        with pytest.raises(FailedPrecondition, match=r"^unexpected commit size 260, expected 256$"):
            w.commit(256, "")
        w = store.writer(ref)
        w.truncate(0)
        w.write(data)
        assert w.commit(256, digest) == digest
        assert store.read_at(digest, 0, 0) == data
        with pytest.raises(NotFound):
            store.status(ref)


# -- the write protocol, message by message -----------------------------------------------


@pytest.fixture
def remote(servers: Servers, tmp_path: Path) -> tuple[ProxyContentStore, pb_grpc.ContentStub, Path]:
    store, sock = servers.start(tmp_path / "root")
    return store, pb_grpc.ContentStub(grpc.insecure_channel(f"unix:{sock}")), tmp_path / "root"


def session(stub: pb_grpc.ContentStub, *requests: pb.WriteContentRequest) -> list[pb.WriteContentResponse]:
    return list(stub.Write(iter(requests), timeout=10))


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as exc:
        call()
    return exc.value.code()  # type: ignore[no-any-return]


def test_first_message_needs_a_ref(remote: tuple[ProxyContentStore, pb_grpc.ContentStub, Path]) -> None:
    _, stub, _ = remote
    assert code_of(lambda: session(stub, pb.WriteContentRequest(action=pb.STAT))) == grpc.StatusCode.INVALID_ARGUMENT


def test_stat_resumes_where_the_data_ends(remote: tuple[ProxyContentStore, pb_grpc.ContentStub, Path]) -> None:
    _, stub, root = remote
    data, digest = content(5000)
    first = session(
        stub,
        pb.WriteContentRequest(action=pb.STAT, ref="r", total=5000, expected=digest),
        pb.WriteContentRequest(action=pb.WRITE, offset=0, data=data[:1200]),
    )
    assert [(r.action, r.offset) for r in first] == [(pb.STAT, 0), (pb.WRITE, 1200)]
    assert first[1].digest == sha256(data[:1200])
    # A new session on the same ref: STAT says where to go on, with the digest so far.
    again = session(
        stub,
        pb.WriteContentRequest(action=pb.STAT, ref="r"),
        pb.WriteContentRequest(action=pb.WRITE, offset=1200, data=data[1200:]),
        pb.WriteContentRequest(action=pb.COMMIT, offset=5000, total=5000, expected=digest),
    )
    assert (again[0].offset, again[0].digest, again[0].total) == (1200, sha256(data[:1200]), 5000)
    assert (again[2].action, again[2].offset, again[2].digest) == (pb.COMMIT, 5000, digest)
    assert (root / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == data


def test_write_at_the_wrong_offset_is_out_of_range(remote: tuple[ProxyContentStore, pb_grpc.ContentStub, Path]) -> None:
    store, stub, _ = remote
    requests = (
        pb.WriteContentRequest(action=pb.STAT, ref="w"),
        pb.WriteContentRequest(action=pb.WRITE, offset=0, data=b"abc"),
        pb.WriteContentRequest(action=pb.WRITE, offset=7, data=b"def"),
    )
    assert code_of(lambda: session(stub, *requests)) == grpc.StatusCode.OUT_OF_RANGE
    assert store.status("w").offset == 3  # what was acknowledged stays


def test_offset_zero_restarts_a_started_ingest(remote: tuple[ProxyContentStore, pb_grpc.ContentStub, Path]) -> None:
    store, stub, _ = remote
    session(
        stub,
        pb.WriteContentRequest(action=pb.STAT, ref="z"),
        pb.WriteContentRequest(action=pb.WRITE, offset=0, data=b"old data"),
    )
    replies = session(
        stub,
        pb.WriteContentRequest(action=pb.STAT, ref="z"),
        pb.WriteContentRequest(action=pb.WRITE, offset=0, data=b"new"),
    )
    assert (replies[0].offset, replies[1].offset, replies[1].digest) == (8, 3, sha256(b"new"))
    assert store.status("z").offset == 3


def test_commit_with_the_wrong_digest_fails_and_keeps_the_ingest(
    remote: tuple[ProxyContentStore, pb_grpc.ContentStub, Path],
) -> None:
    store, stub, _ = remote
    requests = (
        pb.WriteContentRequest(action=pb.STAT, ref="bad"),
        pb.WriteContentRequest(action=pb.COMMIT, offset=0, data=b"payload", expected=sha256(b"other")),
    )
    with pytest.raises(grpc.RpcError) as exc:
        session(stub, *requests)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "unexpected commit digest" in (exc.value.details() or "")
    assert store.status("bad").offset == len(b"payload")
    # A malformed expected digest is the caller's mistake.
    malformed = (pb.WriteContentRequest(action=pb.STAT, ref="bad2", expected="sha256:nope"),)
    assert code_of(lambda: session(stub, *malformed)) == grpc.StatusCode.INVALID_ARGUMENT
    # Through the proxy writer: the same kinds.
    w = store.writer("bad")
    with pytest.raises(FailedPrecondition):
        w.commit(0, sha256(b"other"))
    with pytest.raises(InvalidArgument):
        store.writer("bad3", expected="sha256:nope")


def test_commit_of_a_held_blob_is_already_exists(remote: tuple[ProxyContentStore, pb_grpc.ContentStub, Path]) -> None:
    store, stub, _ = remote
    digest = put(store, "first", b"same")
    requests = (
        pb.WriteContentRequest(action=pb.STAT, ref="dup"),
        pb.WriteContentRequest(action=pb.WRITE, offset=0, data=b"same"),
        pb.WriteContentRequest(action=pb.COMMIT, offset=4, expected=digest),
    )
    assert code_of(lambda: session(stub, *requests)) == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(NotFound):
        store.status("dup")  # the duplicate ingest was aborted


def test_busy_ref_and_down_server(servers: Servers, tmp_path: Path) -> None:
    store, _ = servers.start(tmp_path / "root")
    w = store.writer("busy")
    with pytest.raises(Unavailable, match="ref busy locked"):
        store.writer("busy")
    w.close()
    store.writer("busy").close()  # close waits until the server released the ref
    gone = ProxyContentStore(str(tmp_path / "absent.sock"))
    with pytest.raises(Unavailable):
        gone.info(sha256(b"x"))
    with pytest.raises(Unavailable):
        gone.writer("r")
    gone.close()


def test_read_ranges_and_streaming_reader(remote: tuple[ProxyContentStore, pb_grpc.ContentStub, Path]) -> None:
    store, stub, _ = remote
    data, digest = content((3 << 20) + 5)
    put(store, "big", data)
    past = pb.ReadContentRequest(digest=digest, offset=len(data) + 1)
    assert code_of(lambda: list(stub.Read(past, timeout=10))) == grpc.StatusCode.OUT_OF_RANGE
    chunks = list(stub.Read(pb.ReadContentRequest(digest=digest, offset=10, size=(2 << 20)), timeout=10))
    assert b"".join(c.data for c in chunks) == data[10 : 10 + (2 << 20)]
    assert chunks[0].offset == 10
    with store.reader(digest) as fh:
        assert fh.peek(4)[:4] == data[:4]
        assert fh.read() == data
    with store.reader(digest, 100) as fh:
        assert fh.read(50) == data[100:150]  # closed early: the stream is cancelled
    with open_blob(store, digest, 7) as fh:
        assert fh.read(10) == data[7:17]
    with pytest.raises(NotFound):
        store.reader(sha256(b"absent"))


def test_update_is_refused(remote: tuple[ProxyContentStore, pb_grpc.ContentStub, Path]) -> None:
    store, stub, _ = remote
    digest = put(store, "u", b"labels?")
    request = pb.UpdateRequest(info=pb.Info(digest=digest, labels={"a": "b"}))
    assert code_of(lambda: stub.Update(request, timeout=10)) == grpc.StatusCode.FAILED_PRECONDITION


def test_metadata_wraps_the_proxy(remote: tuple[ProxyContentStore, pb_grpc.ContentStub, Path], tmp_path: Path) -> None:
    """The namespaced store over the proxy, as the daemon builds it: blobs live on the remote."""
    store, _, root = remote
    db = DB(tmp_path / "meta.db")
    cs = ContentStore(db, store)
    a, b = RequestContext("a"), RequestContext("b")
    data = b"shared layer" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    w = cs.writer(a, "ref-a", total=len(data), expected=digest)
    w.write(data[:5000])
    w.close()
    assert cs.status(a, "ref-a").offset == 5000  # resumable on the remote
    w = cs.writer(a, "ref-a", total=len(data), expected=digest)
    assert w.offset == 5000
    w.write(data[5000:])
    assert w.commit(len(data), digest, {"x": "y"}) == digest
    assert cs.info(a, digest).labels == {"x": "y"}
    assert cs.read_at(a, digest, 0, 12) == b"shared layer"
    assert (root / "blobs" / "sha256" / digest.split(":")[1]).is_file()
    # Shared policy: namespace b writes the same blob without sending the bytes.
    w = cs.writer(b, "ref-b", total=len(data), expected=digest)
    w.write(data)
    assert w.commit(len(data), digest) == digest
    with pytest.raises(NotFound):
        cs.info(RequestContext("c"), digest)
    db.close()


class ReadAtOnly:
    """A backend that offers neither ``path`` nor ``reader``: only ``info`` and ``read_at``."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.reads = 0

    def info(self, digest: str) -> Any:
        return self.store.info(digest)

    def read_at(self, digest: str, offset: int, size: int) -> bytes:
        self.reads += 1
        return self.store.read_at(digest, offset, size)


def test_open_blob_without_path_reads_in_chunks(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    data, digest = content((2 << 20) + 3)
    put(store, "b", data)
    backend = ReadAtOnly(store)
    with open_blob(backend, digest) as fh:
        assert fh.peek(2)[:2] == data[:2]
        assert fh.read() == data
        fh.seek(-3, 2)
        assert fh.read() == data[-3:]
    assert backend.reads >= 3  # 1 MiB at a time, not the whole blob at once
    with open_blob(backend, digest, 5) as fh:
        assert fh.read(4) == data[5:9]
    with open_blob(store, digest, 5) as fh:  # the local store: its file
        assert fh.read(4) == data[5:9]
    with pytest.raises(NotFound):
        open_blob(store, sha256(b"absent"))
