"""Reading a blob while it is written: the reader waits at the end until more comes."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from pycontainerd.core.images import Descriptor
from pycontainerd.errdefs import FailedPrecondition
from pycontainerd.transfer.follow import Download, FollowReader

DESC = Descriptor("application/octet-stream", "sha256:" + "00" * 32, 0)


def test_reader_follows_a_growing_file_and_ends_at_commit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"")
    download = Download(DESC)
    download.started(data, 0)
    chunks = [bytes([i]) * 1000 for i in range(20)]

    def writer() -> None:
        with data.open("ab") as fh:
            for chunk in chunks:
                time.sleep(0.005)
                fh.write(chunk)
                fh.flush()
                download.advance(len(chunk))
        blob = tmp_path / "blob"
        data.rename(blob)  # the commit: the reader's descriptor stays valid
        download.finish()

    thread = threading.Thread(target=writer)
    thread.start()
    got = io.BufferedReader(FollowReader(download, lambda: tmp_path / "blob")).read()
    thread.join()
    assert got == b"".join(chunks)


def test_a_failed_download_fails_the_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"abc")
    download = Download(DESC)
    download.started(data, 3)
    reader = FollowReader(download, lambda: tmp_path / "blob")
    buf = bytearray(10)
    assert reader.readinto(memoryview(buf)) == 3
    threading.Timer(0.05, download.finish, args=(FailedPrecondition("digest mismatch"),)).start()
    with pytest.raises(FailedPrecondition, match="digest mismatch"):
        reader.readinto(memoryview(buf))
    reader.close()


def test_blob_already_held_is_read_directly(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 5000)
    download = Download(DESC)
    download.started(None, 0)
    download.finish()
    assert io.BufferedReader(FollowReader(download, lambda: blob)).read() == b"x" * 5000


def test_reader_opened_after_the_commit_reads_the_blob(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"committed bytes")
    download = Download(DESC)
    download.started(data, len(b"committed bytes"))
    data.rename(tmp_path / "blob")  # committed before any reader opened it
    download.finish()
    assert io.BufferedReader(FollowReader(download, lambda: tmp_path / "blob")).read() == b"committed bytes"
