"""kill -9 of the daemon in the middle of a 1 GiB ingest: resumable, never corrupt."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import CTR, DaemonProcess, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NS = "crash"
SIZE = 1 << 30
NO_STARTUP_GC = '[plugins."io.containerd.gc.v1.scheduler"]\nstartup_delay = "0ms"\n'


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    path = tmp_path_factory.mktemp("big") / "blob.bin"
    chunk = os.urandom(16 << 20)
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for i in range(SIZE // len(chunk)):
            piece = i.to_bytes(8, "big") + chunk[8:]
            fh.write(piece)
            digest.update(piece)
    yield path, "sha256:" + digest.hexdigest()
    path.unlink()


def active_offset(d: DaemonProcess, ref: str) -> int:
    for line in d.ctr("content", "active", namespace=NS, check=False).stdout.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == ref:
            size = parts[1]
            units = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}
            for unit, mult in sorted(units.items(), key=lambda kv: -len(kv[0])):
                if size.endswith(unit):
                    return int(float(size[: -len(unit)]) * mult)
            return int(float(size))
    return -1


def test_kill9_mid_ingest_resumes(big_file: tuple[Path, str]) -> None:
    path, digest = big_file
    with running_daemon(extra_config=NO_STARTUP_GC) as d:
        blob = d.root / "io.containerd.content.v1.content" / "blobs" / "sha256" / digest.split(":")[1]
        with path.open("rb") as stdin:
            client = subprocess.Popen(
                [
                    CTR,
                    "-a",
                    str(d.address),
                    "-n",
                    NS,
                    "content",
                    "ingest",
                    "--expected-size",
                    str(SIZE),
                    "--expected-digest",
                    digest,
                    "big",
                ],
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 60
                while active_offset(d, "big") < 100 << 20 and time.monotonic() < deadline:
                    time.sleep(0.05)
                d.kill()  # SIGKILL, mid-write
            finally:
                client.wait(30)
        assert not blob.exists(), "a partial blob became visible"

        d.start()
        offset = active_offset(d, "big")
        assert 0 < offset < SIZE, f"ingest offset after restart: {offset}"
        assert not blob.exists()

        with path.open("rb") as stdin:
            resumed = subprocess.run(
                [
                    CTR,
                    "-a",
                    str(d.address),
                    "-n",
                    NS,
                    "content",
                    "ingest",
                    "--expected-size",
                    str(SIZE),
                    "--expected-digest",
                    digest,
                    "big",
                ],
                stdin=stdin,
                capture_output=True,
                timeout=300,
                check=False,
            )
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming ingest" in d.log()
        listing = d.ctr("content", "ls", namespace=NS).stdout
        assert digest in listing
        sha = hashlib.sha256()
        with blob.open("rb") as fh:
            while chunk := fh.read(16 << 20):
                sha.update(chunk)
        assert "sha256:" + sha.hexdigest() == digest
        assert d.ctr("content", "active", namespace=NS).stdout.strip().splitlines()[1:] == []
