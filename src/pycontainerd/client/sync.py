"""The client without an event loop of your own: a :class:`SyncClient` runs one in a thread.

Every service and call of the asyncio client is there, blocking: the same names, the same
arguments, the same results and ``errdefs`` errors; async iterators (``events.subscribe()``)
become ordinary iterators::

    with SyncClient("/run/pycontainerd/pycontainerd.sock", "default") as client:
        for container in client.containers.list():
            print(container.id)
        client.tasks.kill("web1", signal.SIGTERM)
        for event in client.events.subscribe(['topic~="/tasks/"']):
            print(event.topic)

:meth:`SyncClient.call` runs a coroutine built from the asyncio client (``client.aio``), for
composing several calls in one trip to the loop; ``client.aio`` belongs to the background loop:
never await its coroutines elsewhere.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import TYPE_CHECKING, Any, Self, TypeVar

from pycontainerd.client.transfer import Client
from pycontainerd.namespaces import DEFAULT_NAMESPACE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine, Iterator

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

    def __getattr__(self, name: str) -> Any:
        # Only for names SyncClient itself lacks: the asyncio client's services and calls, blocking.
        if name.startswith("_") or name == "aio":
            raise AttributeError(name)
        return _blocking(getattr(self.aio, name), self)


class _BlockingProxy:
    """An object of the asyncio client (a service) whose calls block until done."""

    def __init__(self, target: object, client: SyncClient) -> None:
        self._target = target
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _blocking(getattr(self._target, name), self._client)

    def __repr__(self) -> str:
        return f"<blocking {self._target!r}>"


def _blocking(value: Any, client: SyncClient) -> Any:
    """``value`` (from the asyncio client) made usable from blocking code."""
    if inspect.iscoroutine(value):
        return client.call(value)
    if inspect.isasyncgen(value) or hasattr(value, "__anext__"):
        return _iterate(value, client)
    if callable(value) and not isinstance(value, type):

        def call(*args: Any, **kwargs: Any) -> Any:
            return _blocking(value(*args, **kwargs), client)

        call.__doc__ = getattr(value, "__doc__", None)
        return call
    if type(value).__module__.startswith("pycontainerd.client."):
        return _BlockingProxy(value, client)
    return value


def _iterate(stream: AsyncIterator[Any], client: SyncClient) -> Iterator[Any]:
    """An async iterator consumed item by item on the client's loop."""

    async def step() -> tuple[bool, Any]:
        try:
            return True, await anext(stream)
        except StopAsyncIteration:
            return False, None

    try:
        while True:
            more, item = client.call(step())
            if not more:
                return
            yield item
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None and not client._loop.is_closed():
            client.call(aclose())
