"""Fixtures: a real Adaptation on a unix socket in a temp dir, and SDK plugins to connect to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pycontainerd.nri import Adaptation, Adjustment, NRIConfig, Plugin, pb

Log = list[tuple[str, str, str]]


def config(tmp: Path, **overrides: Any) -> NRIConfig:
    values: dict[str, Any] = {
        "socket_path": str(tmp / "nri.sock"),
        "plugin_path": str(tmp / "plugins"),
        "plugin_config_path": str(tmp / "conf.d"),
        "plugin_registration_timeout": "500ms",
        "plugin_request_timeout": "300ms",
    }
    values.update(overrides)
    return NRIConfig(**values)


async def wait_until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll a condition the code under test reaches on its own (registration, dropping)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - the state is reached by other tasks, with no event to await
            await asyncio.sleep(0.005)


@asynccontextmanager
async def running(adaptation: Adaptation, *plugins: Plugin) -> Any:
    """Start the adaptation, connect ``plugins`` (in the given order), stop everything after."""
    await adaptation.start()
    try:
        for plugin in plugins:
            plugin.socket_path = adaptation.config.socket_path
            await plugin.start()
            await wait_until(lambda p=plugin: f"{p.index}-{p.name}" in adaptation.plugins)  # type: ignore[misc]
        yield adaptation
    finally:
        await adaptation.stop()
        for plugin in plugins:
            await plugin.stop()


class Recorder(Plugin):
    """Subscribes to every event and logs (plugin, event, object id) in a shared list."""

    def __init__(self, log: Log, name: str, index: str) -> None:
        super().__init__(name=name, index=index)
        self.log = log
        self.synced: tuple[list[str], list[str]] | None = None

    def _note(self, event: str, obj: Any) -> None:
        self.log.append((f"{self.index}-{self.name}", event, obj.id))

    async def synchronize(self, pods: Sequence[pb.PodSandbox], containers: Sequence[pb.Container]) -> None:
        self.synced = ([p.id for p in pods], [c.id for c in containers])

    async def run_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        self._note("RunPodSandbox", pod)

    async def stop_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        self._note("StopPodSandbox", pod)

    async def remove_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        self._note("RemovePodSandbox", pod)

    async def create_container(self, pod: pb.PodSandbox, container: pb.Container) -> Adjustment | None:
        self._note("CreateContainer", container)
        return None

    async def post_create_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._note("PostCreateContainer", container)

    async def start_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._note("StartContainer", container)

    async def post_start_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._note("PostStartContainer", container)

    async def update_container(self, pod: pb.PodSandbox, container: pb.Container, resources: pb.LinuxResources) -> None:
        self._note("UpdateContainer", container)

    async def post_update_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._note("PostUpdateContainer", container)

    async def stop_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._note("StopContainer", container)

    async def remove_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._note("RemoveContainer", container)
