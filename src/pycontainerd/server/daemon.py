"""Start-up and shutdown of the daemon."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from pycontainerd.config.decode import decode_dataclass, key_join
from pycontainerd.config.model import Config, ConfigError
from pycontainerd.metrics.daemon import DaemonMetrics
from pycontainerd.plugin import graph, types
from pycontainerd.plugin.registration import (
    FatalPluginError,
    InitContext,
    Plugin,
    PluginSet,
    Registration,
    SkipPlugin,
    run_init,
)
from pycontainerd.server import listen
from pycontainerd.services._interceptor import ErrorInterceptor
from pycontainerd.services.health import HealthService

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("pycontainerd")

GRPC_GRACE_SECONDS = 5.0


class StartupError(Exception):
    """The daemon cannot start; the message says why."""


def decode_plugin_configs(config: Config, registrations: Sequence[Registration], warnings: list[str]) -> dict[str, Any]:
    """Decode every ``[plugins."<uri>"]`` table against its plugin's config class.

    Done before any plugin starts so that a bad value stops start-up at once, naming the key.
    """
    known = {r.uri: r for r in registrations}
    decoded: dict[str, Any] = {}
    for uri in config.plugins:
        if uri not in known:
            warnings.append(f"config for unknown plugin {key_join('plugins', uri)} ignored")
    for reg in registrations:
        if reg.config is None:
            continue
        table = config.plugins.get(reg.uri, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{key_join('plugins', reg.uri)}: expected a table")
        decoded[reg.uri] = decode_dataclass(reg.config, table, key_join("plugins", reg.uri), warnings)
    return decoded


def make_dirs(cfg: Config) -> None:
    """Create root (private), state and temp; start-up runs before any request is served."""
    for directory, mode in ((cfg.root, 0o700), (cfg.state, 0o711)):
        Path(directory).mkdir(parents=True, exist_ok=True, mode=mode)
    if cfg.temp:
        Path(cfg.temp).mkdir(parents=True, exist_ok=True)


@dataclass(slots=True)
class Daemon:
    """One running pycontainerd.

    Use :meth:`start`, then :meth:`wait` (or your own stop condition), then :meth:`stop`.
    """

    config: Config
    registrations: Sequence[Registration]
    warnings: list[str] = field(default_factory=list)
    plugins: PluginSet = field(default_factory=PluginSet)
    plugin_configs: dict[str, Any] = field(default_factory=dict)
    _grpc: grpc.aio.Server | None = None
    _ttrpc: Any = None
    _closers: list[Any] = field(default_factory=list)
    _owned_sockets: list[tuple[Path, tuple[int, int] | None]] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _metrics_runner: Any = None
    _debug_runner: Any = None
    tracer: Any = None
    metrics: DaemonMetrics = field(default_factory=DaemonMetrics)

    def __post_init__(self) -> None:
        self.metrics = DaemonMetrics(histogram=self.config.metrics.grpc_histogram)

    @property
    def address(self) -> Path:
        """The gRPC socket path."""
        return Path(self.config.grpc.address)

    async def start(self) -> None:
        """Initialise plugins and start serving; raises StartupError or ConfigError."""
        started = time.monotonic()
        cfg = self.config
        self.plugin_configs = decode_plugin_configs(cfg, self.registrations, self.warnings)
        for warning in self.warnings:
            log.warning(warning)
        make_dirs(cfg)
        # Check the sockets first, so a second daemon on the same address fails before it
        # touches anything.
        try:
            listen.prepare(self.address)
            listen.prepare(Path(cfg.ttrpc_address))
        except Exception as exc:
            raise StartupError(str(exc)) from exc

        await self._init_plugins()
        from pycontainerd.server.tracing import setup as setup_tracing

        self.tracer = setup_tracing()
        await self._serve_grpc()
        await self._serve_ttrpc()
        if cfg.debug.address:
            await self._serve_debug()
        if cfg.metrics.address:
            from pycontainerd.server.metrics_http import serve_metrics

            self.metrics.watch_plugins(self.plugins)
            self._metrics_runner = await serve_metrics(cfg.metrics.address, self.metrics)
        log.info(
            "containerd successfully booted in %.3fs",
            time.monotonic() - started,
            extra={"address": str(self.address)},
        )

    async def _init_plugins(self) -> None:
        cfg = self.config
        properties = {
            "root": cfg.root,
            "state": cfg.state,
            "grpc.address": cfg.grpc.address,
            "ttrpc.address": cfg.ttrpc_address,
        }
        ordered = graph.ordered(self.registrations, disabled=cfg.disabled_plugins)
        required = set(cfg.required_plugins)
        for reg in ordered:
            ctx = InitContext(
                registration=reg,
                root=Path(cfg.root) / reg.uri,
                state=Path(cfg.state) / reg.uri,
                config=self.plugin_configs.get(reg.uri),
                plugins=self.plugins,
                properties=dict(properties),
            )
            plugin = Plugin(registration=reg)
            log.info("loading plugin", extra={"id": reg.uri, "type": reg.type})
            try:
                plugin.instance = await run_init(reg, ctx)
            except SkipPlugin as exc:
                plugin.error = exc
                log.info("skip loading plugin", extra={"id": reg.uri, "error": str(exc)})
            except FatalPluginError as exc:
                plugin.error = exc
                self.plugins.add(plugin)
                raise StartupError(f"plugin {reg.uri}: {exc}") from exc
            except Exception as exc:
                plugin.error = exc
                log.warning("failed to load plugin", extra={"id": reg.uri, "error": str(exc)})
                if reg.uri in required:
                    self.plugins.add(plugin)
                    raise StartupError(f"required plugin {reg.uri} failed to load: {exc}") from exc
            plugin.exports, plugin.capabilities, plugin.platforms = (
                ctx.exports,
                ctx.capabilities,
                ctx.platforms,
            )
            self._closers.extend(ctx.on_close)
            self.plugins.add(plugin)
        loaded = {p.registration.uri for p in self.plugins if p.ok}
        missing = sorted(required - loaded)
        if missing:
            raise StartupError(f"required plugins not loaded: {', '.join(missing)}")

    async def _serve_grpc(self) -> None:
        g = self.config.grpc
        server = grpc.aio.server(
            interceptors=[ErrorInterceptor(self.metrics if self.config.metrics.address else None, self.tracer)],
            options=[
                ("grpc.max_receive_message_length", g.max_recv_message_size),
                ("grpc.max_send_message_length", g.max_send_message_size),
                ("grpc.so_reuseport", 0),
            ],
        )
        for instance in self.plugins.get_all(types.GRPC).values():
            register = getattr(instance, "register", None)
            if register is not None:
                register(server)
        if server.add_insecure_port(f"unix:{self.address}") == 0:
            raise StartupError(f"cannot listen on {self.address}")
        if g.tcp_address:
            server.add_insecure_port(g.tcp_address)
        await server.start()
        self._owned_sockets.append((self.address, listen.identity(self.address)))
        listen.secure(self.address, g.uid, g.gid)
        self._grpc = server

    async def _serve_ttrpc(self) -> None:
        from pycontainerd.server.ttrpc_listener import start_ttrpc

        self._ttrpc = await start_ttrpc(self.config, self.plugins)
        ttrpc_path = Path(self.config.ttrpc_address)
        self._owned_sockets.append((ttrpc_path, listen.identity(ttrpc_path)))

    async def _serve_debug(self) -> None:
        from pycontainerd.server.debug import serve_debug

        path = Path(self.config.debug.address)
        try:
            listen.prepare(path)
            self._debug_runner = await serve_debug(path, self.plugins)
        except Exception as exc:
            raise StartupError(f"debug address {path}: {exc}") from exc
        self._owned_sockets.append((path, listen.identity(path)))
        listen.secure(path, self.config.debug.uid, self.config.debug.gid)

    async def wait(self) -> None:
        """Return once :meth:`stop` has completed."""
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop serving, close every plugin (in reverse start order) and remove sockets."""
        for health in self.plugins.get_all(types.GRPC).values():
            if isinstance(health, HealthService):
                health.set_serving(False)
        if self._grpc is not None:
            await self._grpc.stop(GRPC_GRACE_SECONDS)
            self._grpc = None
        if self.tracer is not None:
            self.tracer.shutdown()
            self.tracer = None
        for runner in (self._metrics_runner, self._debug_runner):
            if runner is not None:
                await runner.cleanup()
        self._metrics_runner = self._debug_runner = None
        if self._ttrpc is not None:
            await self._ttrpc.close()
            self._ttrpc = None
        for closer in reversed(self._closers):
            try:
                result = closer()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("error closing plugin")
        self._closers.clear()
        # Only sockets this daemon bound: a daemon refused at start must not delete the
        # socket of the daemon already serving there.
        for path, ident in self._owned_sockets:
            listen.remove(path, ident)
        self._owned_sockets.clear()
        self._stopped.set()
        log.info("containerd stopped", extra={"pid": os.getpid()})
