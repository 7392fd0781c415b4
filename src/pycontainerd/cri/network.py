"""Pod networking (interim until pycontainerd.cni lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd.errdefs import Unimplemented

if TYPE_CHECKING:
    from pathlib import Path

    from pycontainerd.cri.config import CRIConfig


class PodNetwork:
    def __init__(self, config: CRIConfig, state: Path) -> None:
        self.config = config

    async def create_netns(self) -> str:
        raise Unimplemented("pod network")

    async def remove_netns(self, path: str) -> None:
        return None

    async def setup(self, pod: Any) -> tuple[str, list[str]]:
        raise Unimplemented("pod network")

    async def teardown(self, pod: Any) -> None:
        return None

    def status(self) -> tuple[bool, str, str]:
        return False, "NetworkPluginNotReady", "interim"

    async def update_pod_cidr(self, cidr: str) -> None:
        return None
