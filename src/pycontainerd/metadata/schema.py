"""On-disk layout of ``meta.db`` and its migrations.

containerd keeps a bbolt tree ``v1/<namespace>/<object kind>/<key>``; we keep the same shape
as SQLite tables whose primary key starts with the namespace::

    namespaces      (name)                                   every namespace ever used
    labels          (namespace, kind, object, key) -> value  labels of every object kind;
                    kind is 'namespace', 'image', 'container', 'content', 'lease', 'sandbox'
                    or 'snapshot/<snapshotter>'; the GC reads containerd.io/gc.* labels here
    content         (namespace, digest) -> size              blobs a namespace holds
    ingests         (namespace, ref) -> expected, lease      ingests a namespace owns
    images          (namespace, name) -> target descriptor
    containers      (namespace, id) -> image, runtime, spec, snapshot, sandbox, extensions
    snapshots       (namespace, snapshotter, key) -> backend key, parent, kind
    leases          (namespace, id) -> created_at
    lease_resources (namespace, lease, kind, resource)       kind: content, ingests, images,
                                                             snapshots/<snapshotter>
    sandboxes       (namespace, id) -> runtime, spec, sandboxer, extensions

Timestamps are integers of nanoseconds since the epoch (protobuf Timestamps round-trip
exactly). ``PRAGMA user_version`` is the schema version: :data:`MIGRATIONS` [i] takes a
database from version i to i+1, each inside one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

_V1 = """
CREATE TABLE namespaces (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE labels (
    namespace   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    object      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (namespace, kind, object, key)
) WITHOUT ROWID;
CREATE INDEX labels_by_key ON labels (key, namespace, kind);
CREATE TABLE content (
    namespace   TEXT NOT NULL,
    digest      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
) WITHOUT ROWID;
CREATE INDEX content_by_digest ON content (digest);
CREATE TABLE ingests (
    namespace   TEXT NOT NULL,
    ref         TEXT NOT NULL,
    expected    TEXT NOT NULL DEFAULT '',
    lease       TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, ref)
) WITHOUT ROWID;
CREATE TABLE images (
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    digest      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    annotations TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE TABLE containers (
    namespace       TEXT NOT NULL,
    id              TEXT NOT NULL,
    image           TEXT NOT NULL DEFAULT '',
    runtime_name    TEXT NOT NULL DEFAULT '',
    runtime_options BLOB,
    spec            BLOB,
    snapshotter     TEXT NOT NULL DEFAULT '',
    snapshot_key    TEXT NOT NULL DEFAULT '',
    sandbox_id      TEXT NOT NULL DEFAULT '',
    extensions      BLOB,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE TABLE snapshots (
    namespace   TEXT NOT NULL,
    snapshotter TEXT NOT NULL,
    key         TEXT NOT NULL,
    backend_key TEXT NOT NULL,
    parent      TEXT NOT NULL DEFAULT '',
    kind        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, snapshotter, key)
) WITHOUT ROWID;
CREATE INDEX snapshots_by_parent ON snapshots (namespace, snapshotter, parent);
CREATE TABLE leases (
    namespace   TEXT NOT NULL,
    id          TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE TABLE lease_resources (
    namespace   TEXT NOT NULL,
    lease       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    resource    TEXT NOT NULL,
    PRIMARY KEY (namespace, lease, kind, resource)
) WITHOUT ROWID;
CREATE INDEX lease_resources_by_resource ON lease_resources (namespace, kind, resource);
CREATE TABLE sandboxes (
    namespace       TEXT NOT NULL,
    id              TEXT NOT NULL,
    runtime_name    TEXT NOT NULL DEFAULT '',
    runtime_options BLOB,
    spec            BLOB,
    sandboxer       TEXT NOT NULL DEFAULT '',
    extensions      BLOB,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
"""


def _apply_script(script: str) -> Callable[[sqlite3.Connection], None]:
    def migrate(conn: sqlite3.Connection) -> None:
        # executescript() would COMMIT the surrounding transaction; run statement by statement.
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)

    return migrate


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_apply_script(_V1)]
SCHEMA_VERSION = len(MIGRATIONS)

# Every table whose rows belong to a namespace (lease_resources and labels are keyed alike).
NAMESPACED_TABLES = ("images", "containers", "content", "snapshots", "leases", "sandboxes", "ingests")

# Objects that keep a namespace from being deleted, in containerd's order, with the words its
# "must be empty, but it still has ..." message uses. Snapshots are listed per snapshotter.
BLOCKING_TABLES: tuple[tuple[str, str], ...] = (
    ("images", "images"),
    ("content", "blobs"),
    ("containers", "containers"),
)
