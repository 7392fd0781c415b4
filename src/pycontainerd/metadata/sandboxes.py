"""Sandbox records per namespace (containerd's sandbox store).

Like containerd's, the store keeps records only: it publishes no events (the controllers do)
and refuses a sandbox without a runtime name. Sandboxes are GC roots; deleting one lets the
collector reconsider what only it held.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pycontainerd import filters, identifiers
from pycontainerd import labels as labelspec
from pycontainerd.core.containers import Runtime
from pycontainerd.core.sandboxes import Sandbox
from pycontainerd.errdefs import AlreadyExists, InvalidArgument, NotFound
from pycontainerd.metadata import labels
from pycontainerd.metadata import namespaces as nsmeta
from pycontainerd.metadata.containers import pack_any, pack_extensions, unpack_any, unpack_extensions
from pycontainerd.metadata.db import DB, Tx, now_ns
from pycontainerd.namespaces import RequestContext, namespace_required

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Sequence

KIND = "sandbox"
UPDATABLE = ("labels", "extensions", "spec", "runtime")


def validate_sandbox(sandbox: Sandbox) -> None:
    """InvalidArgument for a record containerd would refuse."""
    try:
        identifiers.validate(sandbox.id)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid sandbox ID: {exc.message}") from exc
    if not sandbox.runtime.name:
        raise InvalidArgument("sandbox.Runtime.Name must be set")
    for key, value in sandbox.labels.items():
        labelspec.validate(key, value)
    if any(not k for k in sandbox.extensions):
        raise InvalidArgument("sandbox extension keys must not be empty")


def _adaptor(s: Sandbox) -> filters.Adaptor:
    def value(path: Sequence[str]) -> str | None:
        head = path[0]
        if head == "id" and len(path) == 1:
            return s.id or None
        if list(path) == ["runtime", "name"]:
            return s.runtime.name or None
        if head == "sandboxer" and len(path) == 1:
            return s.sandboxer or None
        if head == "labels":
            return filters.label_adaptor(s.labels, path)
        return None

    return value


class SandboxStore:
    """Create, read, update and delete sandbox records."""

    def __init__(self, db: DB, *, on_dirty: Callable[[], None] | None = None) -> None:
        self._db = db
        self._on_dirty = on_dirty

    @staticmethod
    def _read(tx: Tx, ns: str, sid: str) -> Sandbox | None:
        row = tx.execute(
            "SELECT runtime_name, runtime_options, spec, sandboxer, extensions, created_at, updated_at"
            " FROM sandboxes WHERE namespace=? AND id=?",
            (ns, sid),
        ).fetchone()
        if row is None:
            return None
        return Sandbox(
            id=sid,
            runtime=Runtime(row[0], unpack_any(row[1])),
            spec=unpack_any(row[2]),
            sandboxer=row[3],
            labels=labels.get(tx, ns, KIND, sid),
            extensions=unpack_extensions(row[4]),
            created_at=row[5],
            updated_at=row[6],
        )

    @staticmethod
    def _write(tx: Tx, ns: str, s: Sandbox) -> None:
        tx.execute(
            "INSERT OR REPLACE INTO sandboxes (namespace, id, runtime_name, runtime_options, spec, sandboxer,"
            " extensions, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                ns,
                s.id,
                s.runtime.name,
                pack_any(s.runtime.options),
                pack_any(s.spec),
                s.sandboxer,
                pack_extensions(s.extensions),
                s.created_at,
                s.updated_at,
            ),
        )
        labels.replace(tx, ns, KIND, s.id, s.labels)

    def get(self, ctx: RequestContext, sid: str) -> Sandbox:
        """One sandbox; NotFound if absent."""
        ns = namespace_required(ctx)
        with self._db.read() as tx:
            found = self._read(tx, ns, sid)
        if found is None:
            raise NotFound(f'sandbox "{sid}"')
        return found

    def list(self, ctx: RequestContext, filter_texts: Sequence[str] = ()) -> builtins.list[Sandbox]:
        """Sandboxes matching any filter (fields: id, runtime.name, sandboxer, labels)."""
        ns = namespace_required(ctx)
        parsed = filters.parse_all(filter_texts)
        with self._db.read() as tx:
            ids = [r[0] for r in tx.execute("SELECT id FROM sandboxes WHERE namespace=? ORDER BY id", (ns,))]
            found = [s for i in ids if (s := self._read(tx, ns, i)) is not None]
        return [s for s in found if filters.match_any(parsed, _adaptor(s))]

    def create(self, ctx: RequestContext, sandbox: Sandbox) -> Sandbox:
        """Store a new sandbox; AlreadyExists if the ID is taken."""
        ns = namespace_required(ctx)
        validate_sandbox(sandbox)
        ts = now_ns()
        sandbox = replace(sandbox, created_at=ts, updated_at=ts)
        with self._db.write() as tx:
            nsmeta.ensure(tx, ns)
            if self._read(tx, ns, sandbox.id) is not None:
                raise AlreadyExists(f'sandbox "{sandbox.id}"')
            self._write(tx, ns, sandbox)
        return sandbox

    def update(self, ctx: RequestContext, sandbox: Sandbox, fieldpaths: Sequence[str] = ()) -> Sandbox:
        """Update labels, extensions, spec or runtime (containerd's field paths)."""
        ns = namespace_required(ctx)
        with self._db.write() as tx:
            current = self._read(tx, ns, sandbox.id)
            if current is None:
                raise NotFound(f'sandbox "{sandbox.id}"')
            paths = list(fieldpaths)
            if not paths:
                paths = list(UPDATABLE)
                if current.runtime.name != sandbox.runtime.name:
                    raise InvalidArgument("sandbox.Runtime.Name field is immutable")
            updated = current
            for path in paths:
                if path.startswith("labels."):
                    key = path[len("labels.") :]
                    updated = replace(updated, labels={**updated.labels, key: sandbox.labels.get(key, "")})
                elif path.startswith("extensions."):
                    key = path[len("extensions.") :]
                    ext = dict(updated.extensions)
                    if key in sandbox.extensions:
                        ext[key] = sandbox.extensions[key]
                    else:
                        ext.pop(key, None)
                    updated = replace(updated, extensions=ext)
                elif path == "labels":
                    updated = replace(updated, labels=dict(sandbox.labels))
                elif path == "extensions":
                    updated = replace(updated, extensions=dict(sandbox.extensions))
                elif path == "runtime":
                    updated = replace(updated, runtime=sandbox.runtime)
                elif path == "spec":
                    updated = replace(updated, spec=sandbox.spec)
                else:
                    raise InvalidArgument(f'cannot update "{path}" field on sandbox "{sandbox.id}"')
            updated = replace(updated, labels={k: v for k, v in updated.labels.items() if v}, updated_at=now_ns())
            validate_sandbox(updated)
            self._write(tx, ns, updated)
        return updated

    def delete(self, ctx: RequestContext, sid: str) -> None:
        """Delete a sandbox record."""
        ns = namespace_required(ctx)
        with self._db.write() as tx:
            if self._read(tx, ns, sid) is None:
                raise NotFound(f'sandbox "{sid}"')
            tx.execute("DELETE FROM sandboxes WHERE namespace=? AND id=?", (ns, sid))
            labels.delete(tx, ns, KIND, sid)
            if self._on_dirty is not None:
                tx.after_commit(self._on_dirty)
