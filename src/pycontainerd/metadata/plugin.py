"""Registration of the metadata store (``io.containerd.metadata.v1.bolt``).

The ID stays ``bolt`` so containerd config files and tools that name the plugin keep
working, although the store is SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.events import namespace_pb2 as ns_events
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.namespaces import Namespace, NamespaceStore
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration

if TYPE_CHECKING:
    from pycontainerd.events.exchange import Exchange

DB_FILE = "meta.db"


@dataclass(slots=True)
class MetadataConfig:
    """``[plugins."io.containerd.metadata.v1.bolt"]``."""

    content_sharing_policy: str = "shared"
    """``shared``: a namespace may reuse a blob another namespace holds by writing it again
    (its bytes are not transferred twice); ``isolated``: it must send every byte."""


@dataclass(slots=True)
class Metadata:
    """What the metadata plugin provides to the plugins after it."""

    db: DB
    namespaces: NamespaceStore
    config: MetadataConfig


def _namespace_events(exchange: Exchange) -> object:
    def publish(action: str, ns: Namespace) -> None:
        if action == "create":
            exchange.publish(
                ns.name, "/namespaces/create", ns_events.NamespaceCreate(name=ns.name, labels=ns.labels)
            )
        elif action == "update":
            exchange.publish(
                ns.name, "/namespaces/update", ns_events.NamespaceUpdate(name=ns.name, labels=ns.labels)
            )
        else:
            exchange.publish(ns.name, "/namespaces/delete", ns_events.NamespaceDelete(name=ns.name))

    return publish


def _init(ctx: InitContext) -> Metadata:
    config = ctx.config if isinstance(ctx.config, MetadataConfig) else MetadataConfig()
    if config.content_sharing_policy not in ("shared", "isolated"):
        raise ValueError(
            f"content_sharing_policy must be shared or isolated, not {config.content_sharing_policy!r}"
        )
    ctx.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = DB(ctx.root / DB_FILE)
    ctx.on_close.append(db.close)
    exchange = ctx.plugins.first(types.EVENT)
    store = NamespaceStore(db, on_event=_namespace_events(exchange))  # type: ignore[arg-type]
    ctx.exports["path"] = str(ctx.root / DB_FILE)
    return Metadata(db=db, namespaces=store, config=config)


REGISTRATION = Registration(
    type=types.METADATA,
    id="bolt",
    init=_init,
    requires=(types.EVENT, types.CONTENT, types.SNAPSHOT),
    config=MetadataConfig,
)
