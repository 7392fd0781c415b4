"""The local store's on-disk layout, and what it does with debris an interrupted run left."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.content.local import LocalStore
from pycontainerd.errdefs import InvalidArgument, NotFound


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ingest_dir(root: Path, ref: str) -> Path:
    return root / "ingest" / hashlib.sha256(ref.encode()).hexdigest()


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_layout(tmp_path: Path, umask_022: None) -> None:
    store = LocalStore(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs", "ingest"]
    assert (tmp_path / "blobs" / "sha256").is_dir()

    data = b"hello, layout"
    w = store.writer("docker.io/library/x:latest", total=len(data), expected=sha256(data))
    w.write(data[:5])
    w.close()
    d = ingest_dir(tmp_path, "docker.io/library/x:latest")
    assert sorted(p.name for p in d.iterdir()) == [
        "data",
        "expected",
        "ref",
        "startedat",
        "total",
        "updatedat",
    ]
    assert (d / "ref").read_text() == "docker.io/library/x:latest"
    assert (d / "data").read_bytes() == b"hello"
    assert (d / "total").read_text() == str(len(data))
    assert (d / "expected").read_text() == sha256(data)
    assert int((d / "startedat").read_text()) <= int((d / "updatedat").read_text()) <= time.time_ns()

    w = store.writer("docker.io/library/x:latest")
    w.write(data[5:])
    before = time.time_ns()
    digest = w.commit(len(data), "")
    blob = tmp_path / "blobs" / "sha256" / digest.removeprefix("sha256:")
    assert store.path(digest) == blob
    st = blob.stat()
    # Read-only like containerd's blobs, stamped with the commit time.
    assert stat.S_IMODE(st.st_mode) == 0o444
    assert st.st_mtime_ns >= before
    assert store.info(digest).created_at == st.st_mtime_ns
    assert not d.exists()
    assert list((tmp_path / "ingest").iterdir()) == []


def test_path(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(NotFound):
        store.path(sha256(b"x"))
    with pytest.raises(InvalidArgument):
        store.path("sha256:../../etc/passwd")


def test_walk_ignores_debris(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    w = store.writer("real")
    w.write(b"real")
    real = w.commit(0, "")
    hexpart = real.removeprefix("sha256:")
    shadir = tmp_path / "blobs" / "sha256"
    other = hashlib.sha256(b"other").hexdigest()
    (shadir / f"{other}.tmp").write_bytes(b"half")  # a temp file next to the blobs
    (shadir / f".tmp-{other}").write_bytes(b"half")
    (shadir / other.upper()).write_bytes(b"x")
    (shadir / other[:-1]).write_bytes(b"x")
    (shadir / hashlib.sha256(b"dir").hexdigest()).mkdir()
    (shadir / hashlib.sha256(b"link").hexdigest()).symlink_to(shadir / hexpart)
    (tmp_path / "blobs" / "md5").mkdir()
    (tmp_path / "blobs" / "md5" / ("0" * 32)).write_bytes(b"x")
    (tmp_path / "blobs" / "stray").write_bytes(b"x")
    # A complete ingest that was never renamed into blobs/ is not content either.
    w = store.writer("not-committed")
    w.write(b"other")
    w.close()
    assert [i.digest for i in store.walk()] == [real]
    assert [i.digest for i in LocalStore(tmp_path).walk()] == [real]


def test_open_cleans_debris(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    w = store.writer("live")
    w.write(b"resume me")
    w.close()
    w = store.writer("committed")
    w.write(b"blob")
    blob = w.commit(0, "")

    ingest = tmp_path / "ingest"
    live = ingest_dir(tmp_path, "live")
    (live / "updatedat.tmp").write_text("12")  # a replace interrupted before its rename
    half_created = ingest / ".tmp-0123-abcd"  # a crash while creating an ingest
    half_created.mkdir()
    (half_created / "ref").write_text("x")
    # A crash after commit's rename, before the ingest directory went.
    renamed = ingest_dir(tmp_path, "committed")
    renamed.mkdir()
    (renamed / "ref").write_text("committed")
    (renamed / "startedat").write_text("1")
    no_ref = ingest_dir(tmp_path, "no-ref")
    no_ref.mkdir()
    (no_ref / "data").write_bytes(b"?")
    (ingest / "stray-file").write_text("?")
    (tmp_path / "blobs" / "sha256" / (blob.removeprefix("sha256:") + ".tmp")).write_bytes(b"b")

    again = LocalStore(tmp_path)
    assert sorted(p.name for p in ingest.iterdir()) == [live.name]
    assert sorted(p.name for p in live.iterdir()) == ["data", "ref", "startedat", "updatedat"]
    assert [p.name for p in (tmp_path / "blobs" / "sha256").iterdir()] == [blob.removeprefix("sha256:")]
    assert [s.ref for s in again.list_statuses()] == ["live"]
    assert again.writer("live").offset == len(b"resume me")


def test_dead_ingest_dir_is_replaced(tmp_path: Path) -> None:
    # Without a reopen in between: a directory with no data is not resumable, so a new
    # writer for that ref starts afresh instead of failing.
    store = LocalStore(tmp_path)
    d = ingest_dir(tmp_path, "r")
    d.mkdir()
    (d / "ref").write_text("r")
    with pytest.raises(NotFound):
        store.status("r")
    assert store.list_statuses() == []
    w = store.writer("r", total=3)
    assert w.offset == 0
    w.write(b"abc")
    assert w.commit(3, sha256(b"abc")) == sha256(b"abc")


def test_status_falls_back_to_data_mtime(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    w = store.writer("r")
    w.write(b"abc")
    w.close()
    d = ingest_dir(tmp_path, "r")
    (d / "startedat").write_text("garbage")
    (d / "updatedat").unlink()
    (d / "total").write_text("nope")
    st = store.status("r")
    mtime = (d / "data").stat().st_mtime_ns
    assert (st.offset, st.total, st.started_at, st.updated_at) == (3, 0, mtime, mtime)


def test_status_updated_at_follows_data_mtime(tmp_path: Path) -> None:
    # updatedat is written on close only; an open writer's progress shows through the mtime.
    store = LocalStore(tmp_path)
    w = store.writer("r")
    started = store.status("r").updated_at
    os.utime(ingest_dir(tmp_path, "r") / "data", ns=(started + 10**9, started + 10**9))
    assert store.status("r").updated_at == started + 10**9
    w.close()
