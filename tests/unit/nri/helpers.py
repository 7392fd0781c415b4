"""Shared helpers of the NRI unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], limit: float = 30) -> T:
    """Run one test coroutine with an overall time limit."""

    async def limited() -> T:
        async with asyncio.timeout(limit):
            return await coro

    return asyncio.run(limited())
