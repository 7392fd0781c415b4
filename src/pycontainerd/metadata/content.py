"""The namespaced content store: the local blob store seen through per-namespace metadata.

Bytes live once in the backend (``content/local``); each namespace records which digests it
holds, with its own labels. A namespace can only read, label or delete what it holds. With
``content_sharing_policy = "shared"`` (the default, as in containerd), writing a blob that
another namespace already holds completes without moving the bytes again: the writer knows
the expected digest up front and the backend already has it.

Ingest refs are per namespace: the backend ref is ``<namespace>/<ref>`` so two namespaces
writing the same ref never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from google.protobuf.message import Message

from pycontainerd import filters
from pycontainerd import labels as labelspec
from pycontainerd.api.containerd.events import content_pb2 as content_events
from pycontainerd.core.content import Info, Status, parse_digest
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.metadata import labels, leases
from pycontainerd.metadata import namespaces as nsmeta
from pycontainerd.metadata.db import DB, Tx, now_ns
from pycontainerd.namespaces import RequestContext, namespace_required

if TYPE_CHECKING:
    import builtins
import logging

log = logging.getLogger(__name__)
KIND = "content"
Publish = Callable[[str, str, Message], object]


class BackendWriter(Protocol):
    """What the metadata layer needs of a backend writer (``content.local.Writer``)."""

    @property
    def offset(self) -> int: ...
    def digest(self) -> str: ...
    def status(self) -> Status: ...
    def write(self, data: bytes) -> None: ...
    def truncate(self, size: int) -> None: ...
    def commit(self, size: int, expected: str) -> str: ...
    def close(self) -> None: ...


class Backend(Protocol):
    """What the metadata layer needs of a blob store (``content.local.LocalStore``)."""

    def info(self, digest: str) -> Info: ...
    def read_at(self, digest: str, offset: int, size: int) -> bytes: ...
    def delete(self, digest: str) -> None: ...
    def writer(self, ref: str, *, total: int = 0, expected: str = "") -> BackendWriter: ...
    def status(self, ref: str) -> Status: ...
    def abort(self, ref: str) -> None: ...


def backend_ref(namespace: str, ref: str) -> str:
    """The backend's name for a namespace's ingest."""
    return f"{namespace}/{ref}"


def _info_adaptor(info: Info) -> filters.Adaptor:
    def value(path: Sequence[str]) -> str | None:
        head = path[0]
        if head == "digest" and len(path) == 1:
            return info.digest
        if head == "size" and len(path) == 1:
            return str(info.size)
        if head == "labels":
            return filters.label_adaptor(info.labels, path)
        return None

    return value


def _status_adaptor(status: Status) -> filters.Adaptor:
    return lambda path: status.ref if list(path) == ["ref"] else None


class ContentStore:
    """Namespaced content operations over one backend."""

    def __init__(
        self,
        db: DB,
        backend: Backend,
        *,
        shared: bool = True,
        publish: Publish | None = None,
        on_dirty: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self.backend = backend
        self._shared = shared
        self._publish = publish
        self._on_dirty = on_dirty

    # -- reading -------------------------------------------------------------------------

    @staticmethod
    def _row(tx: Tx, ns: str, digest: str) -> Info | None:
        row = tx.execute(
            "SELECT size, created_at, updated_at FROM content WHERE namespace=? AND digest=?", (ns, digest)
        ).fetchone()
        if row is None:
            return None
        return Info(digest, row[0], row[1], row[2], labels.get(tx, ns, KIND, digest))

    def info(self, ctx: RequestContext, digest: str) -> Info:
        """The blob as this namespace sees it; NotFound if the namespace does not hold it."""
        ns = namespace_required(ctx)
        parse_digest(digest)
        with self._db.read() as tx:
            info = self._row(tx, ns, digest)
        if info is None:
            raise NotFound(f"content digest {digest}")
        return info

    @property
    def generation(self) -> int:
        """Changes whenever any metadata write commits (cache key for listings)."""
        return self._db.generation

    def list(self, ctx: RequestContext, filter_texts: Sequence[str] = ()) -> list[Info]:
        """Blobs of the namespace that match any filter (fields: digest, size, labels)."""
        ns = namespace_required(ctx)
        parsed = filters.parse_all(filter_texts)
        with self._db.read() as tx:
            # One pass over blobs and their labels (cheaper than two queries and a dict per blob).
            rows = tx.execute(
                "SELECT c.digest, c.size, c.created_at, c.updated_at, l.key, l.value FROM content c"
                " LEFT JOIN labels l ON l.namespace = c.namespace AND l.kind = ? AND l.object = c.digest"
                " WHERE c.namespace = ? ORDER BY c.digest",
                (KIND, ns),
            ).fetchall()
        infos: list[Info] = []
        for digest, size, created, updated, key, value in rows:
            if not infos or infos[-1].digest != digest:
                infos.append(Info(digest, size, created, updated, {}))
            if key is not None:
                infos[-1].labels[key] = value
        if not parsed:
            return infos
        return [i for i in infos if filters.match_any(parsed, _info_adaptor(i))]

    def read_at(self, ctx: RequestContext, digest: str, offset: int, size: int) -> bytes:
        """Bytes of a blob the namespace holds."""
        self.info(ctx, digest)
        return self.backend.read_at(digest, offset, size)

    # -- changing ------------------------------------------------------------------------

    def update(
        self, ctx: RequestContext, digest: str, new_labels: Mapping[str, str], fieldpaths: Sequence[str]
    ) -> Info:
        """Change labels: all of them, or only ``labels.<key>`` paths (empty value removes)."""
        ns = namespace_required(ctx)
        parse_digest(digest)
        with self._db.write() as tx:
            info = self._row(tx, ns, digest)
            if info is None:
                raise NotFound(f"content digest {digest}")
            current = dict(info.labels)
            if not fieldpaths:
                current = dict(new_labels)
            for path in fieldpaths:
                if path.startswith("labels."):
                    key = path[len("labels.") :]
                    current[key] = new_labels.get(key, "")
                elif path == "labels":
                    current = dict(new_labels)
                else:
                    raise InvalidArgument(f'cannot update "{path}" field on content info "{digest}"')
            current = {k: v for k, v in current.items() if v}
            labelspec.validate_all(current)
            updated = now_ns()
            labels.replace(tx, ns, KIND, digest, current)
            tx.execute("UPDATE content SET updated_at=? WHERE namespace=? AND digest=?", (updated, ns, digest))
        return Info(digest, info.size, info.created_at, updated, current)

    def delete(self, ctx: RequestContext, digest: str) -> None:
        """Forget the blob in this namespace; the bytes go at the next garbage collection."""
        ns = namespace_required(ctx)
        parse_digest(digest)
        with self._db.write() as tx:
            if self._row(tx, ns, digest) is None:
                raise NotFound(f"content digest {digest}")
            tx.execute("DELETE FROM content WHERE namespace=? AND digest=?", (ns, digest))
            labels.delete(tx, ns, KIND, digest)
            leases.detach(tx, ctx, ns, leases.RESOURCE_CONTENT, digest)
            if self._on_dirty is not None:
                tx.after_commit(self._on_dirty)
            self._emit(tx, ns, "/content/delete", content_events.ContentDelete(digest=digest))

    def _emit(self, tx: Tx, ns: str, topic: str, event: Message) -> None:
        tx.publish_after_commit(self._publish, ns, topic, event)

    # -- ingests -------------------------------------------------------------------------

    def writer(self, ctx: RequestContext, ref: str, *, total: int = 0, expected: str = "") -> NamespacedWriter:
        """Open (or resume) the ingest ``ref``; AlreadyExists if ``expected`` is already held."""
        ns = namespace_required(ctx)
        if not ref:
            raise InvalidArgument("ref must not be empty")
        if expected:
            parse_digest(expected)
        shared_size = -1
        with self._db.write() as tx:
            if expected and self._row(tx, ns, expected) is not None:
                leases.attach(tx, ctx, ns, leases.RESOURCE_CONTENT, expected)
                exists = True
            else:
                exists = False
                nsmeta.ensure(tx, ns)
                if expected and self._shared:
                    try:
                        backend_info = self.backend.info(expected)
                    except NotFound:
                        pass
                    else:
                        if total in (0, backend_info.size):
                            shared_size = backend_info.size
                tx.execute(
                    "INSERT OR IGNORE INTO ingests (namespace, ref, expected, lease, created_at) VALUES (?,?,?,?,?)",
                    (ns, ref, expected, ctx.lease, now_ns()),
                )
                leases.attach(tx, ctx, ns, leases.RESOURCE_INGESTS, ref)
        if exists:
            raise AlreadyExists(f"content {expected}")
        inner = None if shared_size >= 0 else self.backend.writer(backend_ref(ns, ref), total=total, expected=expected)
        if inner is not None and inner.offset > 0:
            log.info("resuming ingest", extra={"namespace": ns, "ref": ref, "offset": inner.offset})
        return NamespacedWriter(self, ctx, ns, ref, inner, expected=expected, shared_size=shared_size, total=total)

    def _commit_record(
        self, ctx: RequestContext, ns: str, ref: str, digest: str, size: int, commit_labels: Mapping[str, str]
    ) -> None:
        values = labelspec.validate_all(commit_labels)
        with self._db.write() as tx:
            tx.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (ns, ref))
            leases.detach(tx, ctx, ns, leases.RESOURCE_INGESTS, ref)
            leases.attach(tx, ctx, ns, leases.RESOURCE_CONTENT, digest)
            if self._row(tx, ns, digest) is not None:
                raise AlreadyExists(f"content {digest}")
            ts = now_ns()
            nsmeta.ensure(tx, ns)
            tx.execute(
                "INSERT INTO content (namespace, digest, size, created_at, updated_at) VALUES (?,?,?,?,?)",
                (ns, digest, size, ts, ts),
            )
            labels.replace(tx, ns, KIND, digest, values)
            self._emit(tx, ns, "/content/create", content_events.ContentCreate(digest=digest, size=size))

    def status(self, ctx: RequestContext, ref: str) -> Status:
        """The progress of the namespace's ingest ``ref``."""
        ns = namespace_required(ctx)
        with self._db.read() as tx:
            row = tx.execute(
                "SELECT expected, created_at FROM ingests WHERE namespace=? AND ref=?", (ns, ref)
            ).fetchone()
        if row is None:
            raise NotFound(f"reference {ref}")
        try:
            st = self.backend.status(backend_ref(ns, ref))
        except NotFound:
            # A shared ingest has no backend data; it is complete as soon as it is committed.
            return Status(ref=ref, offset=0, expected=row[0], started_at=row[1], updated_at=row[1])
        return Status(ref, st.offset, st.total, row[0] or st.expected, st.started_at, st.updated_at)

    def list_statuses(self, ctx: RequestContext, filter_texts: Sequence[str] = ()) -> builtins.list[Status]:
        """Ingests of the namespace that match any filter (field: ref)."""
        ns = namespace_required(ctx)
        parsed = filters.parse_all(filter_texts)
        with self._db.read() as tx:
            refs = [r[0] for r in tx.execute("SELECT ref FROM ingests WHERE namespace=? ORDER BY ref", (ns,))]
        out = []
        for ref in refs:
            try:
                st = self.status(ctx, ref)
            except NotFound:
                continue
            if filters.match_any(parsed, _status_adaptor(st)):
                out.append(st)
        return out

    def abort(self, ctx: RequestContext, ref: str) -> None:
        """Drop the namespace's ingest ``ref`` and its data."""
        ns = namespace_required(ctx)
        with self._db.write() as tx:
            if tx.execute("SELECT 1 FROM ingests WHERE namespace=? AND ref=?", (ns, ref)).fetchone() is None:
                raise NotFound(f"reference {ref}")
            tx.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (ns, ref))
            leases.detach(tx, ctx, ns, leases.RESOURCE_INGESTS, ref)
            try:
                self.backend.abort(backend_ref(ns, ref))
            except NotFound:
                pass


class NamespacedWriter:
    """An open ingest of one namespace.

    ``inner`` is the backend writer, or None for a shared write (the backend already holds
    ``expected``): data written then is hashed on its way to nowhere until the caller commits.
    """

    def __init__(
        self,
        store: ContentStore,
        ctx: RequestContext,
        namespace: str,
        ref: str,
        inner: BackendWriter | None,
        *,
        expected: str,
        shared_size: int,
        total: int,
    ) -> None:
        self._store = store
        self._ctx = ctx
        self._ns = namespace
        self.ref = ref
        self._inner = inner
        self._expected = expected
        self._shared_size = shared_size
        self.total = total
        self._shared_offset = 0
        self._started = now_ns()

    @property
    def offset(self) -> int:
        """Bytes written so far (for a shared write: bytes the caller sent)."""
        return self._inner.offset if self._inner is not None else self._shared_offset

    @property
    def data_path(self) -> Path | None:
        """Where the backend appends the bytes, or None (a shared write stores nothing; the
        backend already holds the blob)."""
        path = getattr(self._inner, "data_path", None)
        return path if isinstance(path, Path) else None

    def digest(self) -> str:
        """Digest of the bytes so far."""
        if self._inner is not None:
            return self._inner.digest()
        return self._expected

    def status(self) -> Status:
        """Progress of this ingest."""
        if self._inner is not None:
            st = self._inner.status()
            return Status(self.ref, st.offset, self.total or st.total, self._expected, st.started_at, st.updated_at)
        return Status(self.ref, self._shared_offset, self.total, self._expected, self._started, now_ns())

    def _unshare(self) -> BackendWriter:
        """Switch a shared write to a real one (the caller wants to send bytes after all)."""
        if self._inner is None:
            self._inner = self._store.backend.writer(backend_ref(self._ns, self.ref), total=self.total)
            if self._shared_offset:
                self._inner.truncate(0)
            self._shared_size = -1
        return self._inner

    def write(self, data: bytes) -> None:
        """Append bytes."""
        if self._inner is None and self._shared_size >= 0:
            # Shared content: the bytes are already stored; only count them.
            self._shared_offset += len(data)
            if self._shared_offset <= self._shared_size:
                return
            self._unshare()
        self._unshare().write(data)

    def truncate(self, size: int) -> None:
        """Restart the ingest from ``size`` (0 in practice)."""
        if self._inner is None:
            self._shared_offset = size
            return
        self._inner.truncate(size)

    def commit(self, size: int, expected: str, commit_labels: Mapping[str, str] | None = None) -> str:
        """Verify and store the blob, record it in this namespace; returns its digest."""
        expected = expected or self._expected
        if expected:
            parse_digest(expected)
        if self._inner is None:
            actual_size = self._shared_size
            if size and size != actual_size:
                raise FailedPrecondition(f'"{self.ref}" failed size validation: {actual_size} != {size}')
            if expected and expected != self._expected:
                raise FailedPrecondition(f'"{self.ref}" unexpected digest')
            digest = self._expected
        else:
            actual_size = self._inner.offset
            if size and size != actual_size:
                raise FailedPrecondition(f'"{self.ref}" failed size validation: {actual_size} != {size}')
            try:
                digest = self._inner.commit(actual_size, expected)
            except AlreadyExists:
                digest = self._inner.digest()
        self._store._commit_record(self._ctx, self._ns, self.ref, digest, actual_size, commit_labels or {})
        return digest

    def close(self) -> None:
        """Release the ref; an uncommitted ingest stays resumable."""
        if self._inner is not None:
            self._inner.close()
