"""Reading and writing the ``labels`` table for any object kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pycontainerd.metadata.db import Tx


def get(tx: Tx, namespace: str, kind: str, obj: str) -> dict[str, str]:
    """All labels of one object."""
    rows = tx.execute(
        "SELECT key, value FROM labels WHERE namespace=? AND kind=? AND object=? ORDER BY key",
        (namespace, kind, obj),
    )
    return {key: value for key, value in rows}


def get_many(tx: Tx, namespace: str, kind: str) -> dict[str, dict[str, str]]:
    """Labels of every object of ``kind`` in ``namespace``, by object."""
    out: dict[str, dict[str, str]] = {}
    rows = tx.execute(
        "SELECT object, key, value FROM labels WHERE namespace=? AND kind=? ORDER BY object, key",
        (namespace, kind),
    )
    for obj, key, value in rows:
        out.setdefault(obj, {})[key] = value
    return out


def replace(tx: Tx, namespace: str, kind: str, obj: str, labels: Mapping[str, str]) -> None:
    """Make ``labels`` the complete label set of one object."""
    delete(tx, namespace, kind, obj)
    tx.conn.executemany(
        "INSERT INTO labels (namespace, kind, object, key, value) VALUES (?, ?, ?, ?, ?)",
        [(namespace, kind, obj, k, v) for k, v in labels.items()],
    )


def delete(tx: Tx, namespace: str, kind: str, obj: str) -> None:
    """Remove every label of one object."""
    tx.execute("DELETE FROM labels WHERE namespace=? AND kind=? AND object=?", (namespace, kind, obj))
