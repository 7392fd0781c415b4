"""``pyctr version``: the client's and the daemon's versions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd import version
from pycontainerd.cli._app import add_command, command, print_json, wants_json

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.transfer import Client


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``version``."""
    p = add_command(
        sub,
        "version",
        "print the client and server versions",
        listing=True,
        examples=["pyctr version", "pyctr -a /run/containerd/containerd.sock version --format json"],
    )
    p.set_defaults(run=command(_version))


async def _version(args: argparse.Namespace, client: Client) -> None:
    server = await client.introspection.version()
    try:
        uuid = (await client.introspection.server()).uuid
    except Exception:  # a daemon without the Introspection service
        uuid = ""
    if wants_json(args):
        print_json(
            {
                "client": {"version": version.VERSION},
                "server": {"version": server.version, "revision": server.revision, "uuid": uuid},
            }
        )
        return
    print(f"Client:\n  Version:  {version.VERSION}\n")
    print(f"Server:\n  Version:  {server.version}\n  Revision: {server.revision}\n  UUID: {uuid}")
