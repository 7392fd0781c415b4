"""The Python client library: talk to pycontainerd (or containerd) over its socket.

:class:`Client` (asyncio) is one connection in one namespace; its attributes are the services,
each returning the value types of :mod:`pycontainerd.core` or small dataclasses of its own, and
raising the error kinds of :mod:`pycontainerd.errdefs` (``NotFound``, ``AlreadyExists``...)::

    async with Client("/run/pycontainerd/pycontainerd.sock", "default") as client:
        await client.pull("127.0.0.1:5000/busybox:1", plain_http=True)
        image = await client.images.config("127.0.0.1:5000/busybox:1")
        for task in await client.tasks.list():
            print(task.container_id, task.status.name)

:class:`SyncClient` does the same from blocking code; :func:`run` / :func:`run_sync` run a
container from an image in one call.

Modules: ``connection`` (channel, headers, error translation), ``containers``, ``images``,
``content``, ``snapshots``, ``leases``, ``namespaces``, ``tasks``, ``events``, ``introspection``
(one proxy per service), ``transfer`` (the :class:`Client` itself: pull, push, import, export),
``cio`` (FIFO readers), ``run`` and ``sync``.
"""

from pycontainerd.client.connection import Connection as Connection
from pycontainerd.client.run import RunResult as RunResult
from pycontainerd.client.run import run as run
from pycontainerd.client.run import run_sync as run_sync
from pycontainerd.client.sync import SyncClient as SyncClient
from pycontainerd.client.tasks import IO as IO
from pycontainerd.client.tasks import Status as Status
from pycontainerd.client.transfer import Client as Client

__all__ = ["IO", "Client", "Connection", "RunResult", "Status", "SyncClient", "run", "run_sync"]
