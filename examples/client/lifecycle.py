#!/usr/bin/env python3
"""A container's whole life with the asyncio client: pull, create from the image with spec
helpers, start with its output streamed, exec a second process, wait, clean up; the daemon's
task events are printed as they arrive.

    python examples/client/lifecycle.py --address /run/pycontainerd/pycontainerd.sock \\
        --plain-http 127.0.0.1:5000/library/busybox:1

Every line it prints starts with what it is: ``out:`` for the container's output, ``exec:``
for the exec'd process, ``event:`` for events, ``exit:`` for the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile

from pycontainerd.client import IO, Client
from pycontainerd.client.cio import FifoReader
from pycontainerd.client.spec import new_spec, spec_value, with_args, with_env, with_hostname, with_image_config
from pycontainerd.core.containers import Container, Runtime


async def main(address: str, ref: str, plain_http: bool) -> int:
    name = f"example-{secrets.token_hex(4)}"
    async with Client(address, "examples") as client:
        await client.pull(ref, plain_http=plain_http)
        image = await client.images.config(ref)

        async def watch() -> None:
            async for event in client.events.subscribe([f'topic~="/tasks/",namespace=={client.namespace}']):
                print(f"event: {event.topic}", flush=True)

        watcher = asyncio.ensure_future(watch())
        await asyncio.sleep(0.2)  # subscribed before the first event
        with tempfile.TemporaryDirectory() as fifos:
            out = os.path.join(fifos, "out")
            os.mkfifo(out)
            reader = FifoReader(out, sink=lambda data: print(f"out: {data.decode().strip()}", flush=True))
            # The snapshot and the record are made under a lease, so no collection falls in between.
            async with client.leases.temporary():
                mounts = await client.snapshots("overlayfs").prepare(name, image.chain_id)
                spec = new_spec(
                    client.namespace,
                    name,
                    with_image_config(image),
                    with_args("sh", "-c", 'echo "hello from $GREETING on $(hostname)"; sleep 2; exit 7'),
                    with_env("GREETING=the asyncio client"),
                    with_hostname("lifecycle"),
                )
                await client.containers.create(
                    Container(
                        id=name,
                        runtime=Runtime("io.containerd.runc.v2"),
                        spec=spec_value(spec),
                        image=ref,
                        snapshotter="overlayfs",
                        snapshot_key=name,
                    )
                )
            try:
                await client.tasks.create(name, io=IO(stdout=out, stderr=out), rootfs=mounts)
                waiting = asyncio.ensure_future(client.tasks.wait(name))
                await client.tasks.start(name)
                # A second process in the running container.
                exec_out = os.path.join(fifos, "exec")
                os.mkfifo(exec_out)
                exec_reader = FifoReader(exec_out)
                process = dict(spec["process"], args=["hostname"], terminal=False)
                await client.tasks.exec(name, "probe", process, IO(stdout=exec_out, stderr=exec_out))
                await client.tasks.start(name, "probe")
                await client.tasks.wait(name, "probe")
                await client.tasks.delete_process(name, "probe")
                print(f"exec: {(await exec_reader.result(2.0)).decode().strip()}", flush=True)
                exit_status = (await waiting).exit_status
                await reader.result(2.0)
                print(f"exit: {exit_status}", flush=True)
            finally:
                with contextlib.suppress(Exception):
                    await client.tasks.kill(name, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await client.tasks.delete(name)
                await client.containers.delete(name)
                await client.snapshots("overlayfs").remove(name)
                reader.close()
        await asyncio.sleep(0.3)  # the last events
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="/run/pycontainerd/pycontainerd.sock")
    parser.add_argument("--plain-http", action="store_true", help="the registry speaks HTTP")
    parser.add_argument("ref", help="image to pull and run (it needs sh, echo, sleep, hostname)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.address, args.ref, args.plain_http)))
