#!/usr/bin/env python3
"""The blocking client: list what a daemon holds, then run a one-off container.

    python examples/client/inventory.py --address /run/pycontainerd/pycontainerd.sock IMAGE

``SyncClient`` has every service of the asyncio client, with the same names and results, for
code without an event loop; ``run_sync`` runs a container from an image in one call.
"""

from __future__ import annotations

import argparse
import sys

from pycontainerd.client import SyncClient, run_sync


def main(address: str, image: str) -> int:
    with SyncClient(address, "examples") as client:
        version = client.introspection.version()
        print(f"server: {version.version}")
        for namespace in client.namespaces.list():
            print(f"namespace: {namespace.name}")
        for found in client.images.list():
            print(f"image: {found.name} {found.target.digest}")
        for container in client.containers.list():
            print(f"container: {container.id}")
        for task in client.tasks.list():
            print(f"task: {task.container_id} {task.status.name} pid {task.pid}")
    result = run_sync(address, image, ["sh", "-c", "echo one-off; exit 3"], namespace="examples")
    print(f"run: exit {result.exit_status} output {result.stdout.decode().strip()!r}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="/run/pycontainerd/pycontainerd.sock")
    parser.add_argument("image", help="an image already in the 'examples' namespace")
    args = parser.parse_args()
    sys.exit(main(args.address, args.image))
