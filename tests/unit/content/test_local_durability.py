"""Crash behaviour of the local store: what a killed writer leaves, and how it resumes."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pycontainerd.content.local import LocalStore
from pycontainerd.errdefs import FailedPrecondition, Unavailable

MiB = 1 << 20

# Writes chunks of a deterministic stream to one ingest, printing the offset after each, then
# keeps the writer open until it is killed.
CHILD = textwrap.dedent(
    """
    import random, sys
    from pathlib import Path
    from pycontainerd.content.local import LocalStore

    root, ref, total, chunk, expected = sys.argv[1:]
    total, chunk = int(total), int(chunk)
    w = LocalStore(Path(root)).writer(ref, total=total, expected=expected)
    for i in range(total // chunk):
        w.write(random.Random(i).randbytes(chunk))
        print(w.offset, flush=True)
    sys.stdin.read()
    """
)


def stream(total: int, chunk: int) -> bytes:
    return b"".join(random.Random(i).randbytes(chunk) for i in range(total // chunk))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ingest_dir(root: Path, ref: str) -> Path:
    return root / "ingest" / hashlib.sha256(ref.encode()).hexdigest()


def test_sigkill_mid_ingest_then_resume(tmp_path: Path) -> None:
    root, ref, total, chunk = tmp_path / "content", "layer-1", 64 * MiB, MiB
    data = stream(total, chunk)
    digest = sha256(data)
    blob = root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), ref, str(total), str(chunk), digest],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            reported = 0
            while reported < 4 * MiB:
                line = child.stdout.readline()
                assert line, "child exited early"
                reported = int(line)
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    on_disk = (ingest_dir(root, ref) / "data").read_bytes()
    # Killed while still writing: more than it reported, less than all of it.
    assert reported <= len(on_disk) < total
    assert on_disk == data[: len(on_disk)]
    assert not blob.exists()

    store = LocalStore(root)
    assert not blob.exists()
    assert list(store.walk()) == []
    st = store.status(ref)
    assert (st.ref, st.offset, st.total, st.expected) == (ref, len(on_disk), total, digest)

    w = store.writer(ref, total=total, expected=digest)
    assert w.offset == len(on_disk)
    assert w.digest() == sha256(on_disk)
    for start in range(w.offset, total, chunk):
        w.write(data[start : start + chunk - start % chunk])
    assert w.commit(total, digest) == digest
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest.removeprefix("sha256:")
    assert store.read_at(digest, total - 10, 0) == data[-10:]
    assert not ingest_dir(root, ref).exists()


def test_failed_commit_survives_restart(tmp_path: Path) -> None:
    data = b"0123456789" * 1000
    store = LocalStore(tmp_path)
    w = store.writer("r")
    w.write(data)
    with pytest.raises(FailedPrecondition, match="unexpected commit size"):
        w.commit(len(data) + 1, "")
    w = store.writer("r")
    with pytest.raises(FailedPrecondition, match="unexpected commit digest"):
        w.commit(len(data), sha256(b"other"))
    # A new daemon sees the same ingest, resumes it, and can commit it.
    again = LocalStore(tmp_path)
    assert again.status("r").offset == len(data)
    w = again.writer("r")
    assert w.digest() == sha256(data)
    assert w.commit(len(data), sha256(data)) == sha256(data)


def test_lock_is_per_process(tmp_path: Path) -> None:
    # A daemon that died with a writer open leaves no lock behind: the next one just resumes.
    first = LocalStore(tmp_path)
    w = first.writer("r")
    w.write(b"abc")
    with pytest.raises(Unavailable, match=r"^ref r locked for "):
        first.writer("r")
    second = LocalStore(tmp_path)
    w2 = second.writer("r")
    assert w2.offset == 3
    w2.close()
    w.close()


def test_failed_write_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    w = store.writer("r")
    w.write(b"a" * 1000)
    real_pwrite = os.pwrite
    calls = 0

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:  # part of the chunk lands, then the disk is full
            return real_pwrite(fd, bytes(data)[:100], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    big = b"b" * (512 << 10)  # big enough to take the parallel-hash path
    monkeypatch.setattr(os, "pwrite", full_disk)
    with pytest.raises(OSError, match="No space"):
        w.write(big)
    monkeypatch.undo()
    assert (w.offset, w.digest(), store.status("r").offset) == (1000, sha256(b"a" * 1000), 1000)
    w.write(big)
    assert w.commit(0, "") == sha256(b"a" * 1000 + big)


def test_failed_small_write_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    w = store.writer("r")
    w.write(b"keep")

    def broken(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "pwrite", broken)
    with pytest.raises(OSError, match="I/O error"):
        w.write(b"lost")
    monkeypatch.undo()
    assert (w.offset, w.digest()) == (4, sha256(b"keep"))
    w.close()
