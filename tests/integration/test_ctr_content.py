"""Content, leases, events and GC against Debian's real ``ctr``."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.daemon import CTR, DaemonProcess, running_daemon

pytestmark = pytest.mark.integration

# No collection at start-up: these tests ingest blobs nothing references within the first
# 100 ms, which a start-up collection would (rightly) remove, as containerd's would.
NO_STARTUP_GC = '[plugins."io.containerd.gc.v1.scheduler"]\nstartup_delay = "0ms"\n'


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon(extra_config=NO_STARTUP_GC) as d:
        yield d


NS = "content-test"


def ingest(d: DaemonProcess, ref: str, data: bytes, *extra: str, ns: str = NS) -> subprocess.CompletedProcess[str]:
    cmd = [CTR, "-a", str(d.address), "-n", ns, "content", "ingest", *extra, ref]
    result = subprocess.run(cmd, input=data, capture_output=True, timeout=120, check=False)
    return subprocess.CompletedProcess(cmd, result.returncode, result.stdout.decode(), result.stderr.decode())


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def content_ls(d: DaemonProcess, ns: str = NS) -> dict[str, list[str]]:
    lines = d.ctr("content", "ls", namespace=ns).stdout.splitlines()
    assert lines[0].split()[:3] == ["DIGEST", "SIZE", "AGE"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def test_ingest_ls_get_label_rm(daemon: DaemonProcess) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    dgst = digest_of(data)
    result = ingest(daemon, "upload-1", data, "--expected-size", str(len(data)), "--expected-digest", dgst)
    assert result.returncode == 0, result.stderr
    assert dgst in content_ls(daemon)

    got = subprocess.run(
        [CTR, "-a", str(daemon.address), "-n", NS, "content", "get", dgst],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert got == data

    daemon.ctr("content", "label", dgst, "team=a", "containerd.io/gc.root=yes", namespace=NS)
    row = content_ls(daemon)[dgst]
    assert "team=a" in row[-1] and "containerd.io/gc.root=yes" in row[-1]
    daemon.ctr("content", "label", dgst, "team=", namespace=NS)
    assert "team=a" not in content_ls(daemon)[dgst][-1]

    daemon.ctr("content", "rm", dgst, namespace=NS)
    assert dgst not in content_ls(daemon)


def test_error_codes_match_containerd(daemon: DaemonProcess) -> None:
    missing = digest_of(b"never stored")
    info = daemon.ctr("content", "get", missing, namespace=NS, check=False)
    assert info.returncode != 0 and "not found" in info.stderr

    bad = daemon.ctr("content", "get", "sha256:nothex", namespace=NS, check=False)
    assert bad.returncode != 0 and ("invalid" in bad.stderr.lower())

    wrong = ingest(daemon, "upload-bad", b"hello", "--expected-digest", digest_of(b"other"))
    assert wrong.returncode != 0
    assert "failed precondition" in wrong.stderr or "unexpected commit digest" in wrong.stderr


def test_namespaces_see_only_their_content(daemon: DaemonProcess) -> None:
    data = b"namespace A's secret" * 100
    dgst = digest_of(data)
    assert ingest(daemon, "a-1", data, ns="ns-a").returncode == 0
    assert dgst in content_ls(daemon, "ns-a")
    assert dgst not in content_ls(daemon, "ns-b")
    other = daemon.ctr("content", "get", dgst, namespace="ns-b", check=False)
    assert other.returncode != 0 and "not found" in other.stderr
    # Writing the same bytes gives namespace B its own record (shared on disk).
    assert ingest(daemon, "b-1", data, "--expected-digest", dgst, ns="ns-b").returncode == 0
    assert dgst in content_ls(daemon, "ns-b")
    blob = daemon.root / "io.containerd.content.v1.content" / "blobs" / "sha256" / dgst.split(":")[1]
    assert blob.exists()
    # B keeps it (a root label: unreferenced content goes at the next collection, which A's
    # delete triggers); A's delete must not take B's record or the bytes.
    daemon.ctr("content", "label", dgst, "containerd.io/gc.root=1", namespace="ns-b")
    daemon.ctr("content", "rm", dgst, namespace="ns-a")
    subprocess.run([*pyctr(daemon), "gc", "collect"], capture_output=True, timeout=60, check=True)
    assert dgst in content_ls(daemon, "ns-b")
    assert dgst not in content_ls(daemon, "ns-a")
    assert blob.exists()


def test_leases(daemon: DaemonProcess) -> None:
    out = daemon.ctr("leases", "create", "--id", "hold-me", "--expires", "1h", "purpose=test", namespace=NS).stdout
    assert "hold-me" in out
    listing = daemon.ctr("leases", "ls", namespace=NS).stdout
    assert re.search(r"hold-me\s+.*containerd.io/gc.expire=", listing), listing
    again = daemon.ctr("leases", "create", "--id", "hold-me", namespace=NS, check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    daemon.ctr("leases", "rm", "--sync", "hold-me", namespace=NS)
    assert "hold-me" not in daemon.ctr("leases", "ls", namespace=NS).stdout


def test_gc_removes_unreferenced_keeps_held(daemon: DaemonProcess) -> None:
    keep, drop = b"keep me" * 1000, b"drop me" * 1000
    for ref, data in (("k", keep), ("d", drop)):
        assert ingest(daemon, ref, data).returncode == 0
    daemon.ctr("content", "label", digest_of(keep), "containerd.io/gc.root=1", namespace=NS)
    blobs = daemon.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    # ctr content ingest holds the blob with a temporary lease it removes when done;
    # without a root label or a reference the blob goes at the next collection.
    plan = subprocess.run([*pyctr(daemon), "gc", "plan"], capture_output=True, text=True, timeout=60, check=True)
    assert digest_of(drop) in plan.stdout and digest_of(keep) not in plan.stdout
    why = subprocess.run(
        [*pyctr(daemon), "-n", NS, "gc", "why", digest_of(keep)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "containerd.io/gc.root" in why.stdout
    subprocess.run([*pyctr(daemon), "gc", "collect"], capture_output=True, text=True, timeout=60, check=True)
    assert (blobs / hashlib.sha256(keep).hexdigest()).exists()
    assert not (blobs / hashlib.sha256(drop).hexdigest()).exists()
    assert digest_of(drop) not in content_ls(daemon)


def pyctr(d: DaemonProcess) -> list[str]:
    import sys

    return [
        sys.executable,
        "-c",
        "from pycontainerd.cli.main import main; raise SystemExit(main())",
        "-a",
        str(d.address),
    ]


def test_events_stream(daemon: DaemonProcess) -> None:
    with subprocess.Popen([CTR, "-a", str(daemon.address), "events"], stdout=subprocess.PIPE, text=True) as events:
        try:
            time.sleep(1.0)  # let the subscription start before publishing
            daemon.ctr("namespaces", "create", "evt-ns")
            assert ingest(daemon, "e-1", b"event me").returncode == 0
            daemon.ctr("content", "rm", digest_of(b"event me"), namespace=NS)
            time.sleep(0.5)
        finally:
            events.terminate()
        text, _ = events.communicate(timeout=10)
    assert "evt-ns" in text and "/namespaces/create" in text
    # ctr 1.6 cannot decode 2.x's ContentCreate, but prints the topic of ContentDelete.
    assert "/content/delete" in text


def test_busy_ref_is_unavailable(daemon: DaemonProcess) -> None:
    import grpc

    from pycontainerd.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc

    md = (("containerd-namespace", NS),)
    with grpc.insecure_channel(f"unix:{daemon.address}") as channel:
        stub = content_pb2_grpc.ContentStub(channel)
        first = stub.Write(iter_requests := _Requests(), metadata=md)
        iter_requests.put(content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref="busy", data=b"abc"))
        assert next(first).offset == 3  # the first writer holds the ref
        second = stub.Write(iter([content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="busy")]), metadata=md)
        with pytest.raises(grpc.RpcError) as err:
            next(second)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "locked" in (err.value.details() or "")
        iter_requests.close()
        list(first)


class _Requests:
    """A request iterator fed from the test thread (a client stream kept open)."""

    def __init__(self) -> None:
        import queue

        self._queue: queue.Queue[object] = queue.Queue()

    def put(self, item: object) -> None:
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> _Requests:
        return self

    def __next__(self) -> object:
        item = self._queue.get()
        if item is None:
            raise StopIteration
        return item
