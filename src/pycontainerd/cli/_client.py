"""Connection helpers shared by pyctr's commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from pycontainerd.namespaces import GRPC_NAMESPACE_HEADER

if TYPE_CHECKING:
    import argparse

MAX_MESSAGE = 16 << 20
TIMEOUT = 60.0


def channel(address: str) -> grpc.Channel:
    """A channel to the daemon's unix socket with containerd's 16 MiB message limits."""
    target = address if address.startswith("unix:") else f"unix:{address}"
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )


def metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The namespace header for every call."""
    return ((GRPC_NAMESPACE_HEADER, args.namespace),)


def human_size(size: int) -> str:
    """Sizes as ctr prints them (1.5 MiB)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
