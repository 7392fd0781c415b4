#!/usr/bin/env python3
"""Example NRI plugin: append every pod and container event to a file, one JSON object a line.

Configuration (TOML, drop-in file or ``--config FILE``)::

    path = "/var/log/nri-events.jsonl"

Each line looks like ``{"event": "CreateContainer", "pod": "web", "container": "app",
"id": "<container id>"}``. Run it against a runtime::

    python examples/nri/event_logger.py --socket /run/pycontainerd/nri.sock --name logger --idx 90
"""

from __future__ import annotations

import json
import sys
import tomllib
from typing import TYPE_CHECKING, Any

from pycontainerd.nri import Plugin, pb, run_plugin

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_PATH = "/tmp/nri-events.jsonl"


class EventLogger(Plugin):
    """Subscribes to every lifecycle event and records it; never changes anything."""

    path = DEFAULT_PATH

    def _append(self, record: dict[str, Any]) -> None:
        # Small appends to a local file: not worth a thread.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _write(self, event: str, pod: pb.PodSandbox, container: pb.Container | None = None) -> None:
        record = {"event": event, "plugin": f"{self.index}-{self.name}", "pod": pod.name}
        if container is not None:
            record.update(container=container.name, id=container.id)
        else:
            record["id"] = pod.id
        self._append(record)

    async def configure(self, config: str, runtime_name: str, runtime_version: str) -> int | None:
        settings = tomllib.loads(config) if config.strip() else {}
        self.path = str(settings.get("path", DEFAULT_PATH))
        self._append({"event": "Configure", "runtime": runtime_name, "config": config})
        return None

    async def synchronize(self, pods: Sequence[pb.PodSandbox], containers: Sequence[pb.Container]) -> None:
        self._append({"event": "Synchronize", "pods": [p.id for p in pods], "containers": [c.id for c in containers]})

    async def shutdown(self) -> None:
        self._append({"event": "Shutdown"})

    async def run_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        self._write("RunPodSandbox", pod)

    async def update_pod_sandbox(
        self, pod: pb.PodSandbox, overhead: pb.LinuxResources, resources: pb.LinuxResources
    ) -> None:
        self._write("UpdatePodSandbox", pod)

    async def post_update_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        self._write("PostUpdatePodSandbox", pod)

    async def stop_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        self._write("StopPodSandbox", pod)

    async def remove_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        self._write("RemovePodSandbox", pod)

    async def create_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._write("CreateContainer", pod, container)

    async def post_create_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._write("PostCreateContainer", pod, container)

    async def start_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._write("StartContainer", pod, container)

    async def post_start_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._write("PostStartContainer", pod, container)

    async def update_container(self, pod: pb.PodSandbox, container: pb.Container, resources: pb.LinuxResources) -> None:
        self._write("UpdateContainer", pod, container)

    async def post_update_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._write("PostUpdateContainer", pod, container)

    async def stop_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._write("StopContainer", pod, container)

    async def remove_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        self._write("RemoveContainer", pod, container)


if __name__ == "__main__":
    sys.exit(run_plugin(EventLogger))
