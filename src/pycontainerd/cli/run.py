"""``pyctr run``: create a container from an image and run it on this terminal, like ``ctr run``.

Output streams to our stdout/stderr, our stdin feeds the process, signals we get are passed on
(with ``-t``: the terminal is raw and Ctrl-C goes to the container), and pyctr exits with the
process's exit status.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pycontainerd.cli._app import UsageError, add_command, command
from pycontainerd.cli._spec import add_container_flags
from pycontainerd.cli.containers import create_container, delete_container
from pycontainerd.cli.tasks import io_flags, run_task

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.transfer import Client


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``run``."""
    p = add_command(
        sub,
        "run",
        "run a container from an image; exits with its exit status",
        examples=[
            "pyctr run --rm docker.io/library/busybox:latest hello echo hi",
            "pyctr run --rm -t docker.io/library/busybox:latest shell sh",
            "pyctr run -d --label app=web docker.io/library/busybox:latest web1 httpd -f",
            "pyctr run --rm --net-host --memory-limit 67108864 --cpus 0.5 IMAGE c1 sh -c 'ulimit -a'",
            "pyctr run --rm --mount type=bind,src=/tmp,dst=/host,options=rbind:ro IMAGE c2 ls /host",
            "pyctr run --rm --uidmap 0:100000:65536 --gidmap 0:100000:65536 IMAGE c3 id",
        ],
        details="The image must be in the namespace (`pyctr images pull` or `import` first).\n"
        "Without --rm the container (stopped) stays: `pyctr containers rm ID` removes it.",
    )
    p.add_argument("image", help="image name (or, with --rootfs, a root directory)")
    p.add_argument("id", help="container ID")
    p.add_argument("command", nargs="...", help="command and arguments (default: the image's)")
    p.add_argument("--rm", action="store_true", help="remove the container (and its snapshot) when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="return once the task has started")
    io_flags(p)
    add_container_flags(p)
    p.set_defaults(run=command(_run))


async def _run(args: argparse.Namespace, client: Client) -> int:
    if args.rm and args.detach:
        raise UsageError("--rm and --detach cannot be combined")
    container = await create_container(args, client, args.id)
    try:
        return await run_task(args, client, container)
    finally:
        if args.rm:
            with contextlib.suppress(Exception):
                await delete_container(client, container)
