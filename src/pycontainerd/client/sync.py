"""The client without an event loop of your own: a :class:`SyncClient` runs one in a thread.

Every call of the asyncio client is available; :meth:`SyncClient.call` runs one coroutine to
completion and returns its result (or raises its ``errdefs`` error), with the types intact::

    with SyncClient("/run/pycontainerd/pycontainerd.sock", "default") as client:
        for container in client.call(client.aio.containers.list()):
            print(container.id)
        client.call(client.aio.tasks.kill("web1", signal.SIGTERM))

The asyncio client (``client.aio``) belongs to the background loop: build coroutines from it,
hand them to :meth:`~SyncClient.call`, and never await them elsewhere.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Self, TypeVar

from pycontainerd.client.transfer import Client
from pycontainerd.namespaces import DEFAULT_NAMESPACE

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

T = TypeVar("T")


class SyncClient:
    """A :class:`~pycontainerd.client.transfer.Client` driven from blocking code."""

    def __init__(self, address: str, namespace: str = DEFAULT_NAMESPACE, *, timeout: float | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pycontainerd-client", daemon=True)
        self._thread.start()
        self.aio = Client(address, namespace, timeout=timeout)
        # A grpc.aio channel belongs to the loop it is made on: make it on ours.
        self.call(self._open())

    async def _open(self) -> None:
        self.aio.channel()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` (made from :attr:`aio`) on the client's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Close the channel and stop the loop thread."""
        if self._loop.is_closed():
            return
        self.call(self.aio.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
