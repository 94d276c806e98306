"""Admission of calls: the in-flight budget and the per-peer lanes.

Calls, not HTTP requests, count against the in-flight budget (`Budget`): a
batch takes one slot per call, and its calls beyond the budget each get -32012
in place. The last `reserve` slots are kept for admins, so that an admin is
served while others hold the rest. The calls of one peer (uid) that is not an
admin run at most `width` at a time (`Lanes`); the others of its batches wait
their turn. So one peer's flood keeps the event loop's queue short and another
caller's call is not stuck behind hundreds of its calls.

`rpc.Dispatcher` takes and gives back the slots and runs the calls in their
lane; the transport asks the budget before it reads a body (503 when no call
could start).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class Budget:
    """Calls running now against the cap; the last `reserve` slots are for admins."""

    limit: int
    reserve: int
    used: int = 0

    def free(self, admin: bool) -> int:
        cap = self.limit if admin else self.limit - self.reserve
        return max(0, cap - self.used)

    def take(self, wanted: int, admin: bool) -> int:
        """Take up to `wanted` slots; how many were granted."""
        granted = min(wanted, self.free(admin))
        self.used += granted
        return granted

    def give(self, count: int) -> None:
        self.used -= count


class Lanes:
    """One semaphore of `width` per peer uid, kept while some request of it runs."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._lanes: dict[int | None, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def lane(self, uid: int | None) -> AsyncIterator[asyncio.Semaphore]:
        entry = self._lanes.get(uid)
        if entry is None:
            entry = self._lanes[uid] = (asyncio.Semaphore(self.width), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            yield semaphore
        finally:
            users[0] -= 1
            if not users[0]:
                del self._lanes[uid]
