"""Garbage collection: mark what is reachable from the roots, sweep the rest.

The graph is containerd's:

* **Roots**: images, containers and sandboxes; leases that have not expired (and, through
  them, everything they hold); objects labelled ``containerd.io/gc.root``; objects with a
  ``containerd.io/gc.expire`` time still in the future; ingests younger than a day that no
  lease holds (a fresh upload must not vanish under its writer).
* **Edges**: an image points at its target blob; a container at its snapshot; any object's
  ``containerd.io/gc.ref.content*`` labels point at blobs of the same namespace and
  ``containerd.io/gc.ref.snapshot.<snapshotter>`` labels at snapshots; a snapshot points at
  its parent. A lease labelled ``containerd.io/gc.flat`` holds its resources but not what
  they reference.

Everything unmarked is swept: namespace records first (one transaction), then the blob files
no namespace holds any more, and backend ingests with no record. :func:`plan` computes the
same sweep without deleting; every marked node remembers who marked it, so :meth:`Marks.why`
answers "what keeps this alive".
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from pycontainerd import labels as labelspec
from pycontainerd.errdefs import NotFound, Unavailable
from pycontainerd.metadata import labels
from pycontainerd.metadata.db import DB, Tx, now_ns

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

INGEST_EXPIRY_NS = 24 * 3600 * 1_000_000_000

Node = tuple[str, str, str]
"""(kind, namespace, id); kind is content, ingest, lease, image, container, sandbox or snapshot/<name>."""


def parse_expire(value: str) -> int | None:
    """An RFC 3339 ``gc.expire`` value as nanoseconds, or None if unparseable (then ignored)."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Go writes up to nanoseconds; Python parses up to microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1_000_000_000)
    except ValueError:
        return None


def label_refs(namespace: str, obj_labels: dict[str, str]) -> Iterable[tuple[Node, str]]:
    """Nodes referenced by an object's ``containerd.io/gc.ref.*`` labels, with the label."""
    for key, value in obj_labels.items():
        if key.startswith(labelspec.GC_REF_CONTENT_PREFIX):
            yield ("content", namespace, value), key
        elif key.startswith(labelspec.GC_REF_SNAPSHOT_PREFIX):
            snapshotter = key[len(labelspec.GC_REF_SNAPSHOT_PREFIX) :].split("/", 1)[0]
            if snapshotter:
                yield (f"snapshot/{snapshotter}", namespace, value), key


@dataclass(slots=True)
class Marks:
    """Reachable nodes, each with the node (or root reason) that reached it."""

    reached_by: dict[Node, tuple[Node | None, str]] = field(default_factory=dict)

    def __contains__(self, node: Node) -> bool:
        return node in self.reached_by

    def why(self, node: Node) -> list[str]:
        """The chain from ``node`` back to its root, one line per hop; empty if unreachable."""
        chain: list[str] = []
        current: Node | None = node
        seen: set[Node] = set()
        while current is not None and current in self.reached_by and current not in seen:
            seen.add(current)
            parent, reason = self.reached_by[current]
            kind, ns, ident = current
            chain.append(f"{kind} {ident} (namespace {ns}): {reason}")
            current = parent
        return chain


@dataclass(slots=True)
class Sweep:
    """What a collection removes (or would remove)."""

    content: list[tuple[str, str, int]] = field(default_factory=list)  # namespace, digest, size
    ingests: list[tuple[str, str]] = field(default_factory=list)  # namespace, ref
    leases: list[tuple[str, str]] = field(default_factory=list)  # namespace, id
    snapshots: list[tuple[str, str, str]] = field(default_factory=list)  # namespace, snapshotter, key
    blobs: list[tuple[str, int]] = field(default_factory=list)  # digest, size (files on disk)
    backend_snapshots: list[str] = field(default_factory=list)  # <snapshotter>/<backend key>
    duration_s: float = 0.0

    @property
    def bytes_freed(self) -> int:
        """Bytes of blob files removed from disk."""
        return sum(size for _, size in self.blobs)


class _Graph:
    """Reads the whole metadata in one transaction and walks it."""

    def __init__(self, tx: Tx, now: int) -> None:
        self.tx = tx
        self.now = now
        self.marks = Marks()
        self.queue: deque[tuple[Node, bool]] = deque()
        self.expired_leases: list[tuple[str, str]] = []
        self.namespaces = [r[0] for r in tx.execute("SELECT name FROM namespaces")]
        self.obj_labels: dict[tuple[str, str], dict[str, dict[str, str]]] = {}

    def labels_of(self, ns: str, kind: str, obj: str) -> dict[str, str]:
        key = (ns, kind)
        if key not in self.obj_labels:
            self.obj_labels[key] = labels.get_many(self.tx, ns, kind)
        return self.obj_labels[key].get(obj, {})

    def mark(self, node: Node, parent: Node | None, reason: str, *, follow: bool = True) -> None:
        if node in self.marks.reached_by:
            return
        self.marks.reached_by[node] = (parent, reason)
        self.queue.append((node, follow))

    def _expired(self, obj_labels: dict[str, str]) -> bool | None:
        """True/False when the object has a gc.expire label, None when it has none."""
        value = obj_labels.get(labelspec.GC_EXPIRE)
        if value is None:
            return None
        when = parse_expire(value)
        return when is not None and when <= self.now

    def roots(self) -> None:
        tx = self.tx
        for ns in self.namespaces:
            for (lease_id,) in tx.execute("SELECT id FROM leases WHERE namespace=?", (ns,)).fetchall():
                lease_labels = self.labels_of(ns, "lease", lease_id)
                if self._expired(lease_labels):
                    self.expired_leases.append((ns, lease_id))
                    continue
                node: Node = ("lease", ns, lease_id)
                self.mark(node, None, "lease (a root while it exists)")
                flat = labelspec.GC_FLAT in lease_labels
                for kind, res in tx.execute(
                    "SELECT kind, resource FROM lease_resources WHERE namespace=? AND lease=?", (ns, lease_id)
                ).fetchall():
                    target_kind = {"content": "content", "ingests": "ingest"}.get(
                        kind, kind.replace("snapshots/", "snapshot/")
                    )
                    self.mark((target_kind, ns, res), node, f"held by lease {lease_id}", follow=not flat)
            for name, digest in tx.execute("SELECT name, digest FROM images WHERE namespace=?", (ns,)).fetchall():
                node = ("image", ns, name)
                self.mark(node, None, "image (a root)")
                self.mark(("content", ns, digest), node, f"target of image {name}")
            for cid, snapshotter, key in tx.execute(
                "SELECT id, snapshotter, snapshot_key FROM containers WHERE namespace=?", (ns,)
            ).fetchall():
                node = ("container", ns, cid)
                self.mark(node, None, "container (a root)")
                if snapshotter and key:
                    self.mark((f"snapshot/{snapshotter}", ns, key), node, f"rootfs of container {cid}")
            for (sid,) in tx.execute("SELECT id FROM sandboxes WHERE namespace=?", (ns,)).fetchall():
                self.mark(("sandbox", ns, sid), None, "sandbox (a root)")
            for (digest,) in tx.execute("SELECT digest FROM content WHERE namespace=?", (ns,)).fetchall():
                self._root_by_label(("content", ns, digest), self.labels_of(ns, "content", digest))
            for snapshotter, key in tx.execute(
                "SELECT snapshotter, key FROM snapshots WHERE namespace=?", (ns,)
            ).fetchall():
                kind = f"snapshot/{snapshotter}"
                self._root_by_label((kind, ns, key), self.labels_of(ns, kind, key))
            for ref, lease, created in tx.execute(
                "SELECT ref, lease, created_at FROM ingests WHERE namespace=?", (ns,)
            ).fetchall():
                if not lease and created + INGEST_EXPIRY_NS > self.now:
                    self.mark(("ingest", ns, ref), None, "ingest younger than 24h")

    def _root_by_label(self, node: Node, obj_labels: dict[str, str]) -> None:
        if labelspec.GC_ROOT in obj_labels:
            self.mark(node, None, f"label {labelspec.GC_ROOT}")
        elif self._expired(obj_labels) is False:
            self.mark(node, None, f"label {labelspec.GC_EXPIRE}={obj_labels[labelspec.GC_EXPIRE]} not yet passed")

    def walk(self) -> None:
        tx = self.tx
        while self.queue:
            node, follow = self.queue.popleft()
            if not follow:
                continue
            kind, ns, ident = node
            if kind in ("image", "container", "sandbox", "content") or kind.startswith("snapshot/"):
                for target, label in label_refs(ns, self.labels_of(ns, kind, ident)):
                    self.mark(target, node, f"label {label} of {kind} {ident}")
            if kind.startswith("snapshot/"):
                row = tx.execute(
                    "SELECT parent FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?",
                    (ns, kind.split("/", 1)[1], ident),
                ).fetchone()
                if row and row[0]:
                    self.mark((kind, ns, row[0]), node, f"parent of snapshot {ident}")


def mark(tx: Tx, now: int | None = None) -> tuple[Marks, list[tuple[str, str]]]:
    """Marks reachable from the roots, and the expired leases."""
    graph = _Graph(tx, now if now is not None else now_ns())
    graph.roots()
    graph.walk()
    return graph.marks, graph.expired_leases


def _unmarked(tx: Tx, marks: Marks, expired: list[tuple[str, str]]) -> Sweep:
    sweep = Sweep(leases=list(expired))
    for ns, digest, size in tx.execute("SELECT namespace, digest, size FROM content").fetchall():
        if ("content", ns, digest) not in marks:
            sweep.content.append((ns, digest, size))
    for ns, ref in tx.execute("SELECT namespace, ref FROM ingests").fetchall():
        if ("ingest", ns, ref) not in marks:
            sweep.ingests.append((ns, ref))
    for ns, snapshotter, key in tx.execute("SELECT namespace, snapshotter, key FROM snapshots").fetchall():
        if (f"snapshot/{snapshotter}", ns, key) not in marks:
            sweep.snapshots.append((ns, snapshotter, key))
    return sweep


@dataclass(slots=True)
class BlobBackend:
    """What GC needs of the blob store: list blobs and ingests, delete them."""

    walk: Callable[[], Iterable[tuple[str, int]]]
    delete: Callable[[str], None]
    ingests: Callable[[], Iterable[str]]
    abort: Callable[[str], None]


def _orphan_blobs(tx: Tx, backend: BlobBackend) -> list[tuple[str, int]]:
    """Blobs no namespace holds, and no ingest expects (a shared write adopts the stored blob
    at commit: it must still be there then)."""
    held = {r[0] for r in tx.execute("SELECT DISTINCT digest FROM content")}
    held.update(r[0] for r in tx.execute("SELECT DISTINCT expected FROM ingests WHERE expected != ''"))
    return [(digest, size) for digest, size in backend.walk() if digest not in held]


def plan(db: DB, backend: BlobBackend | None, now: int | None = None) -> tuple[Sweep, Marks]:
    """What :func:`collect` would remove now, removing nothing."""
    started = time.monotonic()
    with db.read() as tx:
        marks, expired = mark(tx, now)
        sweep = _unmarked(tx, marks, expired)
        if backend is not None:
            # Blobs whose last holder is swept become orphans too.
            swept = {(ns, digest) for ns, digest, _ in sweep.content}
            held = {d for ns, d in tx.execute("SELECT namespace, digest FROM content") if (ns, d) not in swept}
            sweep.blobs = [(d, size) for d, size in backend.walk() if d not in held]
    sweep.duration_s = time.monotonic() - started
    return sweep, marks


def collect(
    db: DB,
    backend: BlobBackend | None,
    *,
    now: int | None = None,
    snapshotters: Mapping[str, Callable[[], list[str]]] | None = None,
) -> Sweep:
    """Run one collection; returns what was removed.

    Namespace records go in one transaction; files are removed afterwards (a crash in between
    leaves only unreferenced files, which the next collection removes).
    """
    started = time.monotonic()
    with db.write() as tx:
        marks, expired = mark(tx, now)
        sweep = _unmarked(tx, marks, expired)
        for ns, lease_id in sweep.leases:
            tx.execute("DELETE FROM leases WHERE namespace=? AND id=?", (ns, lease_id))
            tx.execute("DELETE FROM lease_resources WHERE namespace=? AND lease=?", (ns, lease_id))
            labels.delete(tx, ns, "lease", lease_id)
        for ns, digest, _ in sweep.content:
            tx.execute("DELETE FROM content WHERE namespace=? AND digest=?", (ns, digest))
            labels.delete(tx, ns, "content", digest)
        for ns, ref in sweep.ingests:
            tx.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (ns, ref))
        # Records of snapshotters that are not loaded stay: they may come back with the next start.
        sweep.snapshots = [s for s in sweep.snapshots if snapshotters and s[1] in snapshotters]
        for ns, snapshotter, key in sweep.snapshots:
            tx.execute("DELETE FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?", (ns, snapshotter, key))
            labels.delete(tx, ns, f"snapshot/{snapshotter}", key)
    if backend is not None:
        # Files go in a second transaction, holding the write lock while they are deleted: what
        # is orphaned in the committed state stays orphaned (no writer can adopt a blob or
        # register an ingest meanwhile), and a crash leaves at worst unreferenced files.
        with db.write() as tx:
            sweep.blobs = _orphan_blobs(tx, backend)
            for digest, _ in sweep.blobs:
                backend.delete(digest)
            live_ingests = {f"{ns}/{ref}" for ns, ref in tx.execute("SELECT namespace, ref FROM ingests").fetchall()}
            for bref in backend.ingests():
                if bref not in live_ingests:
                    try:
                        backend.abort(bref)
                    except (NotFound, Unavailable):
                        continue  # gone already, or a writer holds it right now
    for name, sweep_backend in (snapshotters or {}).items():
        sweep.backend_snapshots.extend(f"{name}/{key}" for key in sweep_backend())
    sweep.duration_s = time.monotonic() - started
    return sweep
