"""Registration of the metadata store (``io.containerd.metadata.v1.bolt``).

The ID stays ``bolt`` so containerd config files and tools that name the plugin keep
working, although the store is SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.events import namespace_pb2 as ns_events
from pycontainerd.metadata.containers import ContainerStore
from pycontainerd.metadata.content import Backend, ContentStore
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.images import ImageStore
from pycontainerd.metadata.leases import LeaseStore
from pycontainerd.metadata.namespaces import Namespace, NamespaceStore
from pycontainerd.metadata.sandboxes import SandboxStore
from pycontainerd.metadata.snapshots import NamespacedSnapshotter
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import FatalPluginError, InitContext, Registration

if TYPE_CHECKING:
    from collections.abc import Callable

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
    """What the metadata plugin provides to the plugins after it.

    ``dirty_listeners`` are called after every committed change that may leave garbage
    (a deleted blob, a dropped lease...); the GC scheduler registers itself there.
    """

    db: DB
    namespaces: NamespaceStore
    leases: LeaseStore
    config: MetadataConfig
    images: ImageStore
    containers: ContainerStore
    sandboxes: SandboxStore
    content: ContentStore | None = None
    snapshotters: dict[str, NamespacedSnapshotter] = field(default_factory=dict)
    dirty_listeners: list[Callable[[], None]] = field(default_factory=list)

    def mark_dirty(self) -> None:
        """Tell the listeners that garbage may have appeared."""
        for listener in list(self.dirty_listeners):
            listener()


def _namespace_events(exchange: Exchange) -> object:
    def publish(action: str, ns: Namespace) -> None:
        if action == "create":
            exchange.publish(ns.name, "/namespaces/create", ns_events.NamespaceCreate(name=ns.name, labels=ns.labels))
        elif action == "update":
            exchange.publish(ns.name, "/namespaces/update", ns_events.NamespaceUpdate(name=ns.name, labels=ns.labels))
        else:
            exchange.publish(ns.name, "/namespaces/delete", ns_events.NamespaceDelete(name=ns.name))

    return publish


def _single_content(ctx: InitContext) -> Backend | None:
    """The one loaded content plugin (containerd's ``GetSingle``), None when there is none.

    Two or more stop start-up: which one holds the blobs must never depend on load order.
    """
    loaded = ctx.plugins.get_all(types.CONTENT)
    if len(loaded) > 1:
        names = ", ".join(f"{types.CONTENT}.{name}" for name in loaded)
        raise FatalPluginError(
            f"multiple content plugins loaded ({names}): the metadata store uses exactly one; "
            f'disable the others with disabled_plugins (e.g. ["{types.CONTENT}.content"] to use a proxy)'
        )
    for backend in loaded.values():
        return backend  # type: ignore[no-any-return]
    return None


def _init(ctx: InitContext) -> Metadata:
    config = ctx.config if isinstance(ctx.config, MetadataConfig) else MetadataConfig()
    if config.content_sharing_policy not in ("shared", "isolated"):
        raise ValueError(f"content_sharing_policy must be shared or isolated, not {config.content_sharing_policy!r}")
    backend = _single_content(ctx)  # before anything is opened: a refusal leaves nothing behind
    ctx.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = DB(ctx.root / DB_FILE)
    ctx.on_close.append(db.close)
    exchange: Exchange = ctx.plugins.first(types.EVENT)
    store = NamespaceStore(db, on_event=_namespace_events(exchange))  # type: ignore[arg-type]
    ctx.exports["path"] = str(ctx.root / DB_FILE)
    metadata = Metadata(
        db=db,
        namespaces=store,
        leases=LeaseStore(db),
        config=config,
        images=ImageStore(db),
        containers=ContainerStore(db),
        sandboxes=SandboxStore(db),
    )
    metadata.leases = LeaseStore(db, on_dirty=metadata.mark_dirty)
    metadata.images = ImageStore(db, publish=exchange.publish, on_dirty=metadata.mark_dirty)
    metadata.containers = ContainerStore(db, publish=exchange.publish, on_dirty=metadata.mark_dirty)
    metadata.sandboxes = SandboxStore(db, on_dirty=metadata.mark_dirty)
    if backend is not None:
        metadata.content = ContentStore(
            db,
            backend,
            shared=config.content_sharing_policy == "shared",
            publish=exchange.publish,
            on_dirty=metadata.mark_dirty,
        )
    for name, backend_snapshotter in ctx.plugins.get_all(types.SNAPSHOT).items():
        metadata.snapshotters[name] = NamespacedSnapshotter(
            name, db, backend_snapshotter, publish=exchange.publish, on_dirty=metadata.mark_dirty
        )
    return metadata


REGISTRATION = Registration(
    type=types.METADATA,
    id="bolt",
    init=_init,
    requires=(types.EVENT, types.CONTENT, types.SNAPSHOT),
    config=MetadataConfig,
)
