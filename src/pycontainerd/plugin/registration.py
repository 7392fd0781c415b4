"""Registrations, the context a plugin starts with, and the set of started plugins."""

from __future__ import annotations

import builtins  # noqa: TC003 - dataclass field annotation
import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pycontainerd.errdefs import NotFound

if TYPE_CHECKING:
    from pathlib import Path

T = TypeVar("T")


class SkipPlugin(Exception):
    """Raised by an init function to say "not loaded here" (reported, never fatal).

    The message always contains ``skip plugin``: the real ``ctr plugins ls`` looks for those
    words in the init error to print the status ``skip`` instead of ``error``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"skip plugin: {reason}")


class FatalPluginError(Exception):
    """Raised by an init function for a configuration the daemon must not run with.

    Unlike any other init error (logged, the plugin marked ``error``, start-up going on), this
    stops start-up with the message: e.g. two content stores loaded, of which the metadata
    store can use only one.
    """


InitFn = Callable[["InitContext"], Any]


@dataclass(frozen=True, slots=True)
class Registration:
    """One plugin, as data.

    Attributes:
        type: the type URI, e.g. ``io.containerd.grpc.v1``.
        id: unique within the type, e.g. ``version``.
        init: called with an :class:`InitContext`; returns the plugin instance (may be a
            coroutine function). Raise :class:`SkipPlugin` to opt out.
        requires: types that must be initialised first; ``"*"`` means every other plugin.
        config: a dataclass type whose defaults form ``[plugins."<type>.<id>"]``, or None.
    """

    type: str
    id: str
    init: InitFn
    requires: tuple[str, ...] = ()
    config: builtins.type[Any] | None = None

    @property
    def uri(self) -> str:
        """``<type>.<id>``, the key used in config files and ``disabled_plugins``."""
        return f"{self.type}.{self.id}"


@dataclass(slots=True)
class Plugin:
    """A registration after its init ran: the instance or the error it raised."""

    registration: Registration
    instance: Any = None
    error: BaseException | None = None
    exports: dict[str, str] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    platforms: list[dict[str, str]] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        """True when the plugin opted out with :class:`SkipPlugin`."""
        return isinstance(self.error, SkipPlugin)

    @property
    def ok(self) -> bool:
        """True when the plugin initialised."""
        return self.error is None


class PluginSet:
    """The plugins initialised so far, in initialisation order."""

    def __init__(self) -> None:
        self._ordered: list[Plugin] = []
        self._by_uri: dict[str, Plugin] = {}

    def add(self, plugin: Plugin) -> None:
        """Record a plugin that has been initialised (or failed to)."""
        self._ordered.append(plugin)
        self._by_uri[plugin.registration.uri] = plugin

    def __iter__(self) -> Iterator[Plugin]:
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self._ordered)

    def get(self, type_: str, id_: str) -> Any:
        """The instance of plugin ``type_.id_``; NotFound if absent or not loaded."""
        plugin = self._by_uri.get(f"{type_}.{id_}")
        if plugin is None or not plugin.ok:
            raise NotFound(f"plugin {type_}.{id_} not loaded")
        return plugin.instance

    def get_typed(self, type_: str, id_: str, cls: type[T]) -> T:
        """Like :meth:`get`, checking the instance's class."""
        instance = self.get(type_, id_)
        if not isinstance(instance, cls):
            raise NotFound(f"plugin {type_}.{id_} is not a {cls.__name__}")
        return instance

    def get_all(self, type_: str) -> dict[str, Any]:
        """Every loaded instance of ``type_``, by ID."""
        return {p.registration.id: p.instance for p in self._ordered if p.registration.type == type_ and p.ok}

    def first(self, type_: str) -> Any:
        """The first loaded instance of ``type_``; NotFound if there is none."""
        for plugin in self._ordered:
            if plugin.registration.type == type_ and plugin.ok:
                return plugin.instance
        raise NotFound(f"no plugin of type {type_} loaded")


@dataclass(slots=True)
class InitContext:
    """What an init function receives.

    Attributes:
        registration: the plugin being initialised.
        root: its private persistent directory, ``<root>/<type>.<id>`` (not created for it).
        state: its private runtime directory, ``<state>/<type>.<id>``.
        config: an instance of ``registration.config`` decoded from config.toml, or None.
        plugins: every plugin initialised before this one.
        properties: daemon-wide values (``root``, ``state``, ``grpc.address``, ``ttrpc.address``).
        exports: filled by the init function; shown by Introspection.
        capabilities: filled by the init function; shown by Introspection.
    """

    registration: Registration
    root: Path
    state: Path
    config: Any
    plugins: PluginSet
    properties: dict[str, str] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    platforms: list[dict[str, str]] = field(default_factory=list)
    on_close: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)


async def run_init(registration: Registration, ctx: InitContext) -> Any:
    """Call ``registration.init``, awaiting it when it returns an awaitable."""
    result = registration.init(ctx)
    if inspect.isawaitable(result):
        result = await result
    return result
