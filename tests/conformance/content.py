"""Conformance suite for content backends (the namespace-free blob store under metadata).

Modelled on containerd's ``core/content/testsuite``: one set of behaviours that every backend
must show, so a fake that passes it can stand in for the real store in other tests.

Use it by subclassing with a name pytest collects and providing the factory::

    class TestLocalStore(ContentStoreSuite):
        def make_store(self, root: Path) -> ContentBackend:
            return LocalStore(root)

``make_store`` may be called twice with the same root; set ``persistent = False`` for a
backend whose state does not survive that (an in-memory fake), which skips the reopen tests.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Protocol

import pytest

from pycontainerd.core.content import Info, Status
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable


class ContentWriter(Protocol):
    """What the suite needs of a backend writer."""

    @property
    def ref(self) -> str: ...
    @property
    def offset(self) -> int: ...
    def digest(self) -> str: ...
    def status(self) -> Status: ...
    def write(self, data: bytes) -> None: ...
    def truncate(self, size: int) -> None: ...
    def commit(self, size: int, expected: str) -> str: ...
    def close(self) -> None: ...


class ContentBackend(Protocol):
    """What the suite needs of a backend."""

    def info(self, digest: str) -> Info: ...
    def read_at(self, digest: str, offset: int, size: int) -> bytes: ...
    def delete(self, digest: str) -> None: ...
    def walk(self) -> Iterator[Info]: ...
    def writer(self, ref: str, *, total: int = 0, expected: str = "") -> ContentWriter: ...
    def status(self, ref: str) -> Status: ...
    def list_statuses(self) -> list[Status]: ...
    def abort(self, ref: str) -> None: ...


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def content(size: int, seed: int = 0) -> tuple[bytes, str]:
    """Deterministic pseudo-random bytes and their digest."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}:{counter}".encode()).digest()
        counter += 1
    data = bytes(out[:size])
    return data, sha256(data)


def write_in_chunks(w: ContentWriter, data: bytes, chunk: int) -> None:
    for i in range(0, len(data), chunk):
        w.write(data[i : i + chunk])


def put(store: ContentBackend, ref: str, data: bytes) -> str:
    w = store.writer(ref)
    w.write(data)
    return w.commit(len(data), sha256(data))


EMPTY = sha256(b"")


class ContentStoreSuite:
    """The shared behaviours; see the module docstring for how to run them."""

    persistent: ClassVar[bool] = True

    def make_store(self, root: Path) -> ContentBackend:
        raise NotImplementedError

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        return tmp_path / "content"

    @pytest.fixture
    def store(self, root: Path) -> ContentBackend:
        return self.make_store(root)

    # -- write and read -----------------------------------------------------------------

    @pytest.mark.parametrize(
        ("size", "with_total", "with_expected", "chunk"),
        [
            (256, False, False, 32),
            (256, True, False, 32),
            (256, False, True, 32),
            (256, True, True, 256),
            (0, True, True, 1),
            ((2 << 20) + 7, True, True, 1 << 20),
        ],
    )
    def test_write_commit_read(
        self, store: ContentBackend, size: int, with_total: bool, with_expected: bool, chunk: int
    ) -> None:
        data, digest = content(size, seed=size)
        w = store.writer("ref", total=size if with_total else 0, expected=digest if with_expected else "")
        write_in_chunks(w, data, chunk)
        assert w.offset == size
        assert w.digest() == digest
        before = time.time_ns()
        assert w.commit(0, "") == digest
        after = time.time_ns()
        info = store.info(digest)
        assert (info.digest, info.size, info.labels) == (digest, size, {})
        assert before - 10_000_000 <= info.created_at <= after + 10_000_000
        assert store.read_at(digest, 0, 0) == data
        assert [i.digest for i in store.walk()] == [digest]
        assert store.list_statuses() == []
        with pytest.raises(NotFound):
            store.status("ref")

    def test_read_at_ranges(self, store: ContentBackend) -> None:
        data, digest = content(1000)
        put(store, "r", data)
        assert store.read_at(digest, 10, 20) == data[10:30]
        assert store.read_at(digest, 990, 100) == data[990:]  # past the end: fewer bytes
        assert store.read_at(digest, 400, -1) == data[400:]
        assert store.read_at(digest, 1000, 10) == b""
        assert store.read_at(digest, 5000, 0) == b""
        with pytest.raises(InvalidArgument):
            store.read_at(digest, -1, 10)

    def test_missing_and_malformed_digests(self, store: ContentBackend) -> None:
        _, digest = content(10)
        with pytest.raises(NotFound, match=f"content {digest}"):
            store.info(digest)
        with pytest.raises(NotFound):
            store.read_at(digest, 0, 0)
        with pytest.raises(NotFound):
            store.delete(digest)
        for bad in ("", "sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64):
            with pytest.raises(InvalidArgument):
                store.info(bad)
        with pytest.raises(InvalidArgument):
            store.writer("r", expected="sha256:short")

    def test_delete(self, store: ContentBackend) -> None:
        keep = put(store, "a", b"keep")
        gone = put(store, "b", b"gone")
        store.delete(gone)
        with pytest.raises(NotFound):
            store.info(gone)
        assert [i.digest for i in store.walk()] == [keep]
        # A deleted blob can be written again.
        assert put(store, "c", b"gone") == gone

    def test_walk_is_sorted(self, store: ContentBackend) -> None:
        digests = [put(store, f"r{i}", f"blob {i}".encode()) for i in range(20)]
        infos = list(store.walk())
        assert [i.digest for i in infos] == sorted(digests)
        assert all(i.size == len(store.read_at(i.digest, 0, 0)) for i in infos)

    def test_other_algorithm(self, store: ContentBackend) -> None:
        data = b"sha512 content"
        want = "sha512:" + hashlib.sha512(data).hexdigest()
        w = store.writer("r512", expected=want)
        w.write(data)
        assert w.digest() == want
        assert w.commit(len(data), want) == want
        assert store.info(want).size == len(data)
        # A writer opened without a digest re-hashes when committed against another algorithm.
        w = store.writer("r384")
        w.write(data)
        want384 = "sha384:" + hashlib.sha384(data).hexdigest()
        assert w.commit(0, want384) == want384
        assert sorted(i.digest for i in store.walk()) == sorted([want, want384])

    # -- ingests ------------------------------------------------------------------------

    def test_empty_ref(self, store: ContentBackend) -> None:
        with pytest.raises(InvalidArgument, match="ref must not be empty"):
            store.writer("")

    def test_status_tracks_writes(self, store: ContentBackend) -> None:
        data, digest = content(256)
        pre = time.time_ns()
        w = store.writer("c1", total=256, expected=digest)
        post = time.time_ns()
        st = w.status()
        assert (st.ref, st.offset, st.total, st.expected) == ("c1", 0, 256, digest)
        assert pre <= st.started_at <= post
        assert w.digest() == EMPTY
        for end in (64, 192, 256):
            w.write(data[w.offset : end])
            assert w.digest() == sha256(data[:end])
            for st in (w.status(), store.status("c1")):
                assert (st.ref, st.offset, st.total, st.expected) == ("c1", end, 256, digest)
                assert st.started_at <= st.updated_at <= time.time_ns()
        assert w.commit(256, digest) == digest

    def test_list_statuses(self, store: ContentBackend) -> None:
        refs = ["b", "a/b/../c", "ünïcode ref", "x" * 1000, "a"]
        for i, ref in enumerate(refs):
            w = store.writer(ref, total=100 + i)
            w.write(b"x" * i)
            w.close()
        statuses = store.list_statuses()
        assert [s.ref for s in statuses] == sorted(refs)
        assert {s.ref: (s.offset, s.total) for s in statuses} == {r: (i, 100 + i) for i, r in enumerate(refs)}
        store.abort("b")
        assert [s.ref for s in store.list_statuses()] == sorted(set(refs) - {"b"})

    def test_ref_is_locked_while_open(self, store: ContentBackend) -> None:
        w = store.writer("busy")
        w.write(b"abc")
        with pytest.raises(Unavailable) as exc:
            store.writer("busy")
        assert re.fullmatch(r"ref busy locked for \S+ \(since .+\)", str(exc.value)), str(exc.value)
        with pytest.raises(Unavailable):
            store.abort("busy")
        w.close()
        w.close()  # idempotent
        w2 = store.writer("busy")
        assert w2.offset == 3
        w2.close()

    def test_only_one_of_many_threads_gets_the_ref(self, store: ContentBackend) -> None:
        barrier = threading.Barrier(8)
        won: list[ContentWriter] = []
        lost: list[Exception] = []

        def attempt() -> None:
            barrier.wait()
            try:
                won.append(store.writer("contended"))
            except Unavailable as exc:
                lost.append(exc)

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (len(won), len(lost)) == (1, 7)
        won[0].close()

    @pytest.mark.parametrize("size", [500, 5000, 50000])
    @pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 1.0])
    @pytest.mark.parametrize("mode", ["continue", "truncate"])
    def test_resume_after_close(self, store: ContentBackend, size: int, fraction: float, mode: str) -> None:
        data, digest = content(size, seed=7)
        limit = int(size * fraction)
        w = store.writer("resume", total=size, expected=digest)
        w.write(data[:limit])
        w.close()
        w = store.writer("resume", total=size, expected=digest)
        assert w.offset == limit
        assert w.status().offset == limit
        assert w.digest() == sha256(data[:limit])
        if mode == "truncate":
            w.truncate(0)
            assert (w.offset, w.digest()) == (0, EMPTY)
            write_in_chunks(w, data, 1024)
        else:
            write_in_chunks(w, data[limit:], 1024)
        assert w.commit(size, digest) == digest
        w.close()
        assert store.read_at(digest, 0, 0) == data

    def test_truncate(self, store: ContentBackend) -> None:
        data, digest = content(3000)
        w = store.writer("t")
        w.write(data[:1000])
        w.write(b"garbage" * 100)
        w.truncate(1000)
        assert (w.offset, w.digest()) == (1000, sha256(data[:1000]))
        assert store.status("t").offset == 1000
        with pytest.raises(InvalidArgument):
            w.truncate(1001)
        with pytest.raises(InvalidArgument):
            w.truncate(-1)
        w.write(data[1000:])
        assert w.commit(3000, digest) == digest

    def test_total_and_expected_on_resume(self, store: ContentBackend) -> None:
        data, digest = content(100)
        w = store.writer("t", total=100, expected=digest)
        w.write(data[:40])
        w.close()
        # No total or expected given: the recorded ones hold.
        w = store.writer("t")
        assert (w.offset, w.status().total, w.status().expected) == (40, 100, digest)
        w.close()
        assert (store.status("t").total, store.status("t").expected) == (100, digest)
        # A different total means a different blob: the ingest starts over.
        w = store.writer("t", total=200)
        assert (w.offset, w.status().total, w.digest()) == (0, 200, EMPTY)
        w.close()
        assert store.status("t").offset == 0
        # A total given where none was recorded is kept.
        w = store.writer("u")
        w.write(b"12345")
        w.close()
        w = store.writer("u", total=10)
        assert (w.offset, w.status().total) == (5, 10)
        w.close()
        assert store.status("u").total == 10

    def test_abort(self, store: ContentBackend) -> None:
        with pytest.raises(NotFound):
            store.abort("nope")
        w = store.writer("a")
        w.write(b"partial")
        w.close()
        store.abort("a")
        with pytest.raises(NotFound):
            store.status("a")
        assert store.list_statuses() == []
        w = store.writer("a")
        assert w.offset == 0
        w.close()

    # -- commit -------------------------------------------------------------------------

    def test_writer_with_existing_expected(self, store: ContentBackend) -> None:
        data, digest = content(256)
        put(store, "first", data)
        with pytest.raises(AlreadyExists, match=f"content {digest}"):
            store.writer("second", expected=digest)
        # The ref was released: the same ref opens without the digest.
        store.writer("second").close()

    @pytest.mark.parametrize("with_expected", [True, False])
    def test_commit_existing(self, store: ContentBackend, with_expected: bool) -> None:
        data, digest = content(256)
        put(store, "first", data)
        w = store.writer("dup")
        w.write(data)
        with pytest.raises(AlreadyExists, match=f"content {digest}"):
            w.commit(len(data), digest if with_expected else "")
        # The duplicate ingest is gone and its ref free.
        with pytest.raises(NotFound):
            store.status("dup")
        store.writer("dup").close()
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
        w.truncate(256)
        assert w.commit(256, digest) == digest
        assert store.read_at(digest, 0, 0) == data
        with pytest.raises(NotFound):
            store.status(ref)

    def test_writer_after_commit(self, store: ContentBackend) -> None:
        w = store.writer("done")
        w.write(b"abc")
        digest = w.commit(3, sha256(b"abc"))
        assert w.digest() == digest
        for op in (lambda: w.write(b"x"), lambda: w.commit(0, ""), lambda: w.truncate(0)):
            with pytest.raises(FailedPrecondition):
                op()
        w.close()  # harmless
        # The ref is free again: a new ingest of the same ref starts from nothing.
        w = store.writer("done")
        assert w.offset == 0
        w.close()

    def test_concurrent_commits_of_one_blob(self, store: ContentBackend) -> None:
        data, digest = content(1 << 20)
        writers = []
        for i in range(6):
            w = store.writer(f"same-{i}")
            w.write(data)
            writers.append(w)
        barrier = threading.Barrier(len(writers))
        results: list[str | Exception] = []

        def commit(w: ContentWriter) -> None:
            barrier.wait()
            try:
                results.append(w.commit(len(data), digest))
            except AlreadyExists as exc:
                results.append(exc)

        threads = [threading.Thread(target=commit, args=(w,)) for w in writers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(digest) == 1
        assert sum(isinstance(r, AlreadyExists) for r in results) == len(writers) - 1
        assert store.read_at(digest, 0, 0) == data
        assert store.list_statuses() == []

    # -- persistence --------------------------------------------------------------------

    def test_reopen_keeps_blobs_and_ingests(self, root: Path, store: ContentBackend) -> None:
        if not self.persistent:
            pytest.skip("backend does not persist")
        data, digest = content(10_000)
        blob = put(store, "blob", b"committed")
        w = store.writer("half", total=len(data), expected=digest)
        w.write(data[:4321])
        w.close()
        again = self.make_store(root)
        assert [i.digest for i in again.walk()] == [blob]
        st = again.status("half")
        assert (st.ref, st.offset, st.total, st.expected) == ("half", 4321, len(data), digest)
        w = again.writer("half", total=len(data), expected=digest)
        assert w.digest() == sha256(data[:4321])
        w.write(data[4321:])
        assert w.commit(len(data), digest) == digest
