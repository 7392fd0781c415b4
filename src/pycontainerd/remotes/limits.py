"""Concurrency limits and progress reports shared by the fetcher and the pusher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pycontainerd.core.images import Descriptor

ProgressFn = Callable[["Descriptor", int, int], None]
"""Called as ``progress(desc, done, total)`` as bytes of ``desc`` arrive or leave."""


class Limits:
    """How many blobs move at once; one object shared by every transfer that should share the limit.

    Args:
        max_concurrent_downloads: blobs fetched at the same time (0: no limit).
        max_concurrent_uploads: blobs pushed at the same time (0: no limit).
    """

    def __init__(self, max_concurrent_downloads: int = 3, max_concurrent_uploads: int = 3) -> None:
        self.max_concurrent_downloads = max_concurrent_downloads
        self.max_concurrent_uploads = max_concurrent_uploads
        self._downloads = asyncio.Semaphore(max_concurrent_downloads) if max_concurrent_downloads > 0 else None
        self._uploads = asyncio.Semaphore(max_concurrent_uploads) if max_concurrent_uploads > 0 else None

    @contextlib.asynccontextmanager
    async def download(self) -> AsyncIterator[None]:
        """Hold one download slot."""
        if self._downloads is None:
            yield
            return
        async with self._downloads:
            yield

    @contextlib.asynccontextmanager
    async def upload(self) -> AsyncIterator[None]:
        """Hold one upload slot."""
        if self._uploads is None:
            yield
            return
        async with self._uploads:
            yield


UNLIMITED = 0


def unlimited() -> Limits:
    """Limits that limit nothing."""
    return Limits(UNLIMITED, UNLIMITED)
