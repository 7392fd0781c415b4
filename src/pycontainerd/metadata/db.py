"""The SQLite connection and transaction helpers.

Rules the rest of ``metadata`` relies on:

1. One API call is one transaction: :meth:`DB.write` opens ``BEGIN IMMEDIATE`` (so writers
   serialise up front instead of failing on upgrade) and commits only if the block returns.
2. Commits are durable: WAL with ``synchronous=FULL`` survives ``kill -9`` and power loss.
3. Callbacks registered with :meth:`Tx.after_commit` (events, GC dirty marks) run only once
   the transaction is committed, never for a rolled-back one.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pycontainerd.errdefs import FailedPrecondition

if TYPE_CHECKING:
    from google.protobuf.message import Message
from pycontainerd.metadata.schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


def now_ns() -> int:
    """Wall-clock time in nanoseconds, the unit of every stored timestamp."""
    return time.time_ns()


class Tx:
    """A transaction in progress: the cursor plus after-commit callbacks."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._after: list[Callable[[], None]] = []

    def execute(self, sql: str, params: tuple[object, ...] | dict[str, object] = ()) -> sqlite3.Cursor:
        """Run one statement inside the transaction."""
        return self.conn.execute(sql, params)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction has committed."""
        self._after.append(callback)

    def publish_after_commit(
        self, publish: Callable[[str, str, Message], object] | None, namespace: str, topic: str, event: Message
    ) -> None:
        """Publish ``event`` once the transaction has committed (never for a rolled-back one)."""
        if publish is not None:

            def send() -> None:
                publish(namespace, topic, event)

            self._after.append(send)


class DB:
    """The metadata database of one daemon (``<root>/io.containerd.metadata.v1.bolt/meta.db``)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so sqlite3 never opens hidden ones.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        # Bumped by every committed write: readers may cache results while it stays the same.
        self.generation = 0

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise FailedPrecondition(
                f"metadata schema version {version} in {self.path} is newer than this pycontainerd ({SCHEMA_VERSION})"
            )
        while version < SCHEMA_VERSION:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[version](self._conn)
                version += 1
                self._conn.execute(f"PRAGMA user_version={version}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The schema version stored in the file."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A read-write transaction, committed when the block exits normally."""
        tx = Tx(self._conn)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield tx
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        self.generation += 1
        for callback in tx._after:
            callback()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only snapshot of the database for the duration of the block."""
        tx = Tx(self._conn)
        self._conn.execute("BEGIN")
        try:
            yield tx
        finally:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        self._conn.close()
