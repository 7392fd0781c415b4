"""Throughput of a 1 GiB ingest (slow; reported, not asserted: run with ``-m slow -s``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from pycontainerd.content.local import LocalStore

MiB = 1 << 20


@pytest.mark.slow
def test_one_gib_ingest_throughput(tmp_path: Path) -> None:
    total, chunk = 1024 * MiB, MiB
    if shutil.disk_usage(tmp_path).free < 3 * total:
        pytest.skip("needs 3 GiB free")
    block = os.urandom(chunk)
    expected = hashlib.sha256()
    for _ in range(total // chunk):
        expected.update(block)
    digest = "sha256:" + expected.hexdigest()

    store = LocalStore(tmp_path / "content")
    start = time.perf_counter()
    w = store.writer("big", total=total, expected=digest)
    for _ in range(total // chunk):
        w.write(block)
    written = time.perf_counter()
    assert w.commit(total, digest) == digest
    done = time.perf_counter()

    mb = total / 1e6
    print(
        f"\n1 GiB in 1 MiB chunks under {tmp_path}: write+hash {mb / (written - start):.0f} MB/s, "
        f"commit (fsync+rename) {done - written:.2f} s, overall {mb / (done - start):.0f} MB/s"
    )
    assert store.info(digest).size == total
    store.delete(digest)  # pytest keeps recent tmp dirs: do not leave a GiB behind
