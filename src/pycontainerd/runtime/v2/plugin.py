"""Registration of the runtime v2 task manager (``io.containerd.runtime.v2.task``)."""

from __future__ import annotations

import logging
from pathlib import Path

from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.runtime.v2.config import TaskConfig
from pycontainerd.runtime.v2.manager import TaskManager


async def _init(ctx: InitContext) -> TaskManager:
    config = ctx.config if isinstance(ctx.config, TaskConfig) else TaskConfig()
    for name, entry in config.runtimes.items():
        entry.validate(name)  # a bad option or protocol fails here, naming the key
    ctx.root.mkdir(parents=True, exist_ok=True, mode=0o711)
    ctx.state.mkdir(parents=True, exist_ok=True, mode=0o711)
    exchange = ctx.plugins.first(types.EVENT)
    manager = TaskManager(
        ctx.state,
        ctx.root,
        grpc_address=ctx.properties["grpc.address"],
        ttrpc_address=ctx.properties["ttrpc.address"],
        publish=exchange.publish,
        debug=logging.getLogger().isEnabledFor(logging.DEBUG),
        runtimes=config.runtimes,
        runc_root=str(Path(ctx.properties["state"]) / "runc"),
    )
    await manager.restore()
    ctx.on_close.append(manager.close)
    ctx.platforms.append({"os": "linux", "architecture": _arch()})
    return manager


def _arch() -> str:
    import platform

    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


REGISTRATION = Registration(
    type=types.RUNTIME_V2, id="task", init=_init, requires=(types.EVENT, types.METADATA), config=TaskConfig
)
