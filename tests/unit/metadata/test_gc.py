from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd.metadata import gc
from pycontainerd.metadata.db import DB, now_ns

NS = "ns1"


def dg(ch: str) -> str:
    return "sha256:" + ch * 64


class FakeBlobs:
    """Blob files by digest, standing in for the local store's disk."""

    def __init__(self, blobs: dict[str, int]) -> None:
        self.blobs = dict(blobs)
        self.ingest_refs: set[str] = set()

    def backend(self) -> gc.BlobBackend:
        return gc.BlobBackend(
            walk=lambda: list(self.blobs.items()),
            delete=self.blobs.pop,
            ingests=lambda: list(self.ingest_refs),
            abort=self.ingest_refs.discard,
        )


@pytest.fixture
def db(tmp_path: Path) -> DB:
    d = DB(tmp_path / "meta.db")
    with d.write() as tx:
        tx.execute("INSERT INTO namespaces VALUES (?, 0, 0)", (NS,))
    return d


def add_content(db: DB, digest: str, size: int = 10, labels: dict[str, str] | None = None, ns: str = NS) -> None:
    with db.write() as tx:
        tx.execute("INSERT OR IGNORE INTO namespaces VALUES (?, 0, 0)", (ns,))
        tx.execute("INSERT INTO content VALUES (?, ?, ?, 0, 0)", (ns, digest, size))
        for k, v in (labels or {}).items():
            tx.execute("INSERT INTO labels VALUES (?, 'content', ?, ?, ?)", (ns, digest, k, v))


def test_unreferenced_blob_goes_referenced_stay(db: DB) -> None:
    index, manifest, layer, loose = dg("1"), dg("2"), dg("3"), dg("4")
    add_content(db, index, labels={"containerd.io/gc.ref.content.m.0": manifest})
    add_content(db, manifest, labels={"containerd.io/gc.ref.content.l.0": layer})
    add_content(db, layer, size=1000)
    add_content(db, loose, size=7)
    with db.write() as tx:
        tx.execute("INSERT INTO images VALUES (?, 'img', 'index', ?, 1, '{}', 0, 0)", (NS, index))
    blobs = FakeBlobs({index: 10, manifest: 10, layer: 1000, loose: 7, dg("5"): 3})
    sweep = gc.collect(db, blobs.backend())
    assert [d for _, d, _ in sweep.content] == [loose]
    assert set(blobs.blobs) == {index, manifest, layer}
    assert sweep.bytes_freed == 10


def test_lease_root_label_and_expire(db: DB) -> None:
    leased, rooted, future, past, flat_child = dg("a"), dg("b"), dg("c"), dg("d"), dg("e")
    flat = dg("f")
    add_content(db, leased)
    add_content(db, rooted, labels={"containerd.io/gc.root": "1"})
    add_content(db, future, labels={"containerd.io/gc.expire": "2999-01-01T00:00:00.123456789Z"})
    add_content(db, past, labels={"containerd.io/gc.expire": "2001-01-01T00:00:00Z"})
    add_content(db, flat, labels={"containerd.io/gc.ref.content": flat_child})
    add_content(db, flat_child)
    with db.write() as tx:
        tx.execute("INSERT INTO leases VALUES (?, 'hold', 0)", (NS,))
        tx.execute("INSERT INTO lease_resources VALUES (?, 'hold', 'content', ?)", (NS, leased))
        tx.execute("INSERT INTO leases VALUES (?, 'flat', 0)", (NS,))
        tx.execute("INSERT INTO labels VALUES (?, 'lease', 'flat', 'containerd.io/gc.flat', 'x')", (NS,))
        tx.execute("INSERT INTO lease_resources VALUES (?, 'flat', 'content', ?)", (NS, flat))
        tx.execute("INSERT INTO leases VALUES (?, 'old', 0)", (NS,))
        tx.execute(
            "INSERT INTO labels VALUES (?, 'lease', 'old', 'containerd.io/gc.expire', '2000-01-01T00:00:00Z')",
            (NS,),
        )
    sweep = gc.collect(db, None)
    assert sorted(d for _, d, _ in sweep.content) == sorted([past, flat_child])
    assert sweep.leases == [(NS, "old")]
    with db.read() as tx:
        assert [r[0] for r in tx.execute("SELECT id FROM leases ORDER BY id")] == ["flat", "hold"]


def test_namespaces_hold_separately(db: DB) -> None:
    shared = dg("7")
    add_content(db, shared, labels={"containerd.io/gc.root": "x"})
    add_content(db, shared, ns="other")
    blobs = FakeBlobs({shared: 10})
    sweep = gc.collect(db, blobs.backend())
    assert sweep.content == [("other", shared, 10)]
    assert shared in blobs.blobs, "still held by ns1"


def test_plan_deletes_nothing_and_why_explains(db: DB) -> None:
    index, layer, loose = dg("1"), dg("3"), dg("4")
    add_content(db, index, labels={"containerd.io/gc.ref.content.l.0": layer})
    add_content(db, layer)
    add_content(db, loose, size=99)
    with db.write() as tx:
        tx.execute("INSERT INTO images VALUES (?, 'docker.io/x:1', 'm', ?, 1, '{}', 0, 0)", (NS, index))
    blobs = FakeBlobs({index: 10, layer: 10, loose: 99})
    sweep, marks = gc.plan(db, blobs.backend())
    assert sweep.content == [(NS, loose, 99)]
    assert sweep.bytes_freed == 99
    assert set(blobs.blobs) == {index, layer, loose}
    why = marks.why(("content", NS, layer))
    assert len(why) == 3
    assert "containerd.io/gc.ref.content.l.0" in why[0]
    assert "target of image docker.io/x:1" in why[1]
    assert "image (a root)" in why[2]
    assert marks.why(("content", NS, loose)) == []


def test_stale_ingests(db: DB) -> None:
    old = now_ns() - gc.INGEST_EXPIRY_NS - 1
    with db.write() as tx:
        tx.execute("INSERT INTO ingests VALUES (?, 'fresh', '', '', ?)", (NS, now_ns()))
        tx.execute("INSERT INTO ingests VALUES (?, 'stale', '', '', ?)", (NS, old))
    blobs = FakeBlobs({})
    blobs.ingest_refs = {f"{NS}/fresh", f"{NS}/stale", "gone/orphan"}
    sweep = gc.collect(db, blobs.backend())
    assert sweep.ingests == [(NS, "stale")]
    assert blobs.ingest_refs == {f"{NS}/fresh"}


@pytest.mark.parametrize(
    ("text", "ok"),
    [("2030-01-02T03:04:05Z", True), ("2030-01-02T03:04:05.123456789+02:00", True), ("yesterday", False)],
)
def test_parse_expire(text: str, ok: bool) -> None:
    assert (gc.parse_expire(text) is not None) is ok


def test_a_blob_an_ingest_is_adopting_survives_collection(db: DB) -> None:
    """A shared write (the backend already has the blob another namespace dropped) records the
    digest at commit: a collection in between must keep the file."""
    adopted, orphan = dg("7"), dg("8")
    with db.write() as tx:
        tx.execute(
            "INSERT INTO ingests (namespace, ref, expected, lease, created_at) VALUES (?,?,?,?,?)",
            (NS, "pull-layer", adopted, "", now_ns()),
        )
    blobs = FakeBlobs({adopted: 10, orphan: 5})
    sweep = gc.collect(db, blobs.backend())
    assert [d for d, _ in sweep.blobs] == [orphan]
    assert set(blobs.blobs) == {adopted}
