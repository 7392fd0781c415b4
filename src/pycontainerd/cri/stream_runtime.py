"""Streaming (interim)."""

from __future__ import annotations

from typing import Any

from pycontainerd.errdefs import Unimplemented


class _Interim:
    base_url = ""

    def exec_url(self, request: Any) -> str:
        raise Unimplemented("streaming")

    attach_url = exec_url
    port_forward_url = exec_url

    async def stop(self) -> None:
        return None


async def start_streaming(svc: Any) -> Any:
    return _Interim()
