#!/usr/bin/env python3
"""Example NRI plugin: inject environment variables and mounts into every new container.

Configuration (TOML; the drop-in file ``<plugin_config_path>/<idx>-inject.conf`` when the
runtime launches the plugin, or ``--config FILE`` when started by hand)::

    [env]
    INJECTED_BY = "nri"

    [[mounts]]
    destination = "/etc/site"
    source = "/srv/site-config"
    options = ["rbind", "ro"]

    # Optional: only containers of pods with this label get the changes.
    [match]
    label = "nri.example/inject"

Run it against a runtime::

    python examples/nri/inject_env_mount.py --socket /run/pycontainerd/nri.sock --name inject --idx 20
"""

from __future__ import annotations

import logging
import sys
import tomllib
from typing import Any

from pycontainerd.nri import Adjustment, Plugin, pb, run_plugin

log = logging.getLogger("nri-inject")


class InjectEnvMount(Plugin):
    """Adds the configured env variables and mounts to containers at creation."""

    env: dict[str, str]
    mounts: list[dict[str, Any]]
    label: str

    async def configure(self, config: str, runtime_name: str, runtime_version: str) -> int | None:
        settings = tomllib.loads(config) if config.strip() else {}
        self.env = {str(k): str(v) for k, v in settings.get("env", {}).items()}
        self.mounts = list(settings.get("mounts", []))
        self.label = str(settings.get("match", {}).get("label", ""))
        log.info(
            "injecting env %s and %d mount(s) (runtime %s %s)",
            sorted(self.env),
            len(self.mounts),
            runtime_name,
            runtime_version,
        )
        return None  # subscribe to what we implement: CreateContainer

    async def create_container(self, pod: pb.PodSandbox, container: pb.Container) -> Adjustment | None:
        if self.label and self.label not in pod.labels:
            return None
        adjustment = Adjustment()
        for key, value in self.env.items():
            adjustment.add_env(key, value)
        for m in self.mounts:
            adjustment.add_mount(m["destination"], m["source"], m.get("type", "bind"), m.get("options", ["rbind"]))
        log.info("adjusting container %s of pod %s", container.name, pod.name)
        return adjustment


if __name__ == "__main__":
    sys.exit(run_plugin(InjectEnvMount))
