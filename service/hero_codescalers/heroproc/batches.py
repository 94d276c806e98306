"""Many hero_proc calls at once: JSON-RPC batches paced by hero_proc's speed.

`Batches.call_many` sends a list of calls and gives back, per call, its result or
the error it ended with; one call's error never fails its neighbours. Calls go
as batches when hero_proc accepts them (learnt from the first batch), sized and
overlapped by `Pacing`; a call a batch could not settle (an item failing
transiently, or the whole batch lost with its connection) is tried again on its
own through the client's `call` (idempotent calls only). Without batch support
every call goes on its own, `SINGLES_IN_FLIGHT` at a time.

The answer to a batch is matched to its calls by id, never by position alone:
an item for an id not asked is ignored, an asked id without its item is a
protocol error. No slot of the answer is ever left reading as success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import INVALID_REQUEST, HeroProcError, HeroProcProtocolError, NotAttempted
from ..tuning import (
    BATCH_CHEAP,
    BATCH_SLOW,
    INFLIGHT_CHEAP,
    INFLIGHT_SLOW,
    PACING_MEMORY,
    PROBE,
    SINGLES_IN_FLIGHT,
    SLOW_CALL,
    STALE_AFTER,
)
from .answers import IDEMPOTENT, transient, unwrap

Call = tuple[str, dict[str, Any]]
# Asked before each call is sent: a reason to send no more (the run is stopping), or None.
StopCheck = Callable[[], str | None]
Post = Callable[[Any], Awaitable[Any]]
Single = Callable[..., Awaitable[Any]]

_NOT_SENT = object()  # the outcome slot of a call not (yet) sent


@dataclass
class Pacing:
    """How `call_many` batches: the size of a batch and how many are in flight.

    Learnt from how long hero_proc takes per call of a batch. Cheap calls (the time
    is the requests' own overhead): few large batches, the overhead spread thin.
    Slow calls (hero_proc takes its time per call, and a batch's calls run one
    after another): many small batches at once. It starts in between.
    """

    batch: int = PROBE
    inflight: int = INFLIGHT_CHEAP
    per_call: float | None = None  # seconds per call inside a batch, smoothed
    learnt_at: float = float("-inf")  # time.monotonic() of the last lesson

    def stale(self) -> bool:
        return time.monotonic() - self.learnt_at > STALE_AFTER

    def learn(self, calls: int, seconds: float) -> None:
        self.learnt_at = time.monotonic()
        latest = seconds / calls
        if self.per_call is None:
            self.per_call = latest
        else:
            self.per_call = PACING_MEMORY * self.per_call + (1 - PACING_MEMORY) * latest
        if self.per_call > SLOW_CALL:
            self.batch, self.inflight = BATCH_SLOW, INFLIGHT_SLOW
        else:
            self.batch, self.inflight = BATCH_CHEAP, INFLIGHT_CHEAP


class Batches:
    """The batch executor of one hero_proc client: `post` sends one JSON-RPC payload
    (raising `HeroProcError`), `single` is the client's `call` (with its retries)."""

    def __init__(self, post: Post, single: Single, pacing: Pacing) -> None:
        self.post = post
        self.single = single
        self.pacing = pacing
        self.supported: bool | None = None  # whether hero_proc takes batches, once known

    async def call_many(self, calls: Sequence[Call], *, stop: StopCheck | None = None) -> list[Any]:
        """Call each of `calls`; per call its result or the `Error` it ended with.

        `stop` is asked before anything is sent: once it gives a reason, nothing more
        is sent, and each call never sent ends as `NotAttempted`. Calls already on their
        way end within one call timeout.
        """
        results: list[Any] = [_NOT_SENT] * len(calls)
        alone: list[int] = []
        if self.supported is False or len(calls) == 1:
            alone = list(range(len(calls)))
        else:
            await self._batches(calls, results, alone, stop)
        if alone:
            await self._singles(calls, alone, results, stop)
        reason = None
        for i, outcome in enumerate(results):
            if outcome is _NOT_SENT:
                if reason is None:
                    reason = (stop() if stop is not None else None) or "not sent"
                results[i] = NotAttempted(reason)
        return results

    async def _batches(
        self,
        calls: Sequence[Call],
        results: list[Any],
        alone: list[int],
        stop: StopCheck | None,
    ) -> None:
        """Send `calls` as batches by a pool of workers that grows to what `pacing` asks;
        positions left to be called alone go to `alone`."""
        n = len(calls)
        cursor = 0
        # When what `pacing` knows is old (hero_proc may have changed), batches stay
        # small until one has been timed: finding out that hero_proc became slow then
        # costs a small batch, not large ones. Within a cleanup it is always fresh.
        probing = self.pacing.stale()
        workers: set[asyncio.Task[None]] = set()
        started: list[asyncio.Task[None]] = []

        def grow() -> None:
            while len(workers) < self.pacing.inflight and cursor < n:
                task = asyncio.create_task(worker())
                workers.add(task)
                started.append(task)
                task.add_done_callback(workers.discard)

        async def worker() -> None:
            nonlocal cursor, probing
            while cursor < n:
                if stop is not None and stop() is not None:
                    return  # what is left stays unsent
                if self.supported is False:  # learnt meanwhile: the rest one by one
                    alone.extend(range(cursor, n))
                    cursor = n
                    return
                size = min(PROBE, self.pacing.batch) if probing else self.pacing.batch
                start, cursor = cursor, min(n, cursor + size)
                chunk = range(start, cursor)
                if len(chunk) == 1:
                    alone.append(start)
                    continue
                t0 = time.monotonic()
                unsettled = await self._batch(calls, chunk, results)
                if unsettled is None:
                    alone.extend(chunk)
                    continue
                self.pacing.learn(len(chunk), time.monotonic() - t0)
                probing = False
                alone.extend(i for i in unsettled if calls[i][0] in IDEMPOTENT)
                grow()

        try:
            grow()
            while workers:
                await asyncio.wait(set(workers))
        finally:
            # Cancelled (or a worker failed): no worker outlives this call.
            for task in started:
                task.cancel()
            await asyncio.gather(*started, return_exceptions=True)
        for task in started:
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc  # a fault of this code: the caller must not read the slots

    async def _singles(
        self,
        calls: Sequence[Call],
        positions: Sequence[int],
        results: list[Any],
        stop: StopCheck | None,
    ) -> None:
        """Each call at `positions` on its own, by a pool of workers (not a task per call).

        A position that already holds an outcome (a batch's transient failure) keeps
        it when `stop` says to send no more: its call was sent, its outcome unknown."""
        todo = iter(positions)

        async def worker() -> None:
            for i in todo:
                if stop is not None and stop() is not None:
                    continue
                try:
                    results[i] = await self.single(*calls[i], stop=stop)
                except HeroProcError as exc:
                    results[i] = exc

        await asyncio.gather(*(worker() for _ in range(min(SINGLES_IN_FLIGHT, len(positions)))))

    async def _batch(
        self, calls: Sequence[Call], chunk: range, results: list[Any]
    ) -> list[int] | None:
        """One batch POST for `chunk`, outcomes into `results`: the positions it left
        unsettled (a transient failure), or None when hero_proc does not take batches."""
        # Ids only need to be unique within the batch: its position.
        payload = [
            {"jsonrpc": "2.0", "id": n, "method": calls[i][0], "params": calls[i][1]}
            for n, i in enumerate(chunk)
        ]
        try:
            answer = await self.post(payload)
        except HeroProcError as exc:
            for i in chunk:
                results[i] = exc
            return list(chunk) if transient(exc) else []
        if isinstance(answer, dict):
            error = answer.get("error")
            if isinstance(error, dict) and error.get("code") == INVALID_REQUEST:
                self.supported = False
                return None
        if not isinstance(answer, list):
            err = HeroProcProtocolError("a batch answered with something other than a list")
            for i in chunk:
                results[i] = err
            return []
        self.supported = True
        return settle(answer, chunk, results)


def settle(answer: list[Any], chunk: range, results: list[Any]) -> list[int]:
    """Each item of a batch answer into `results`, matched by the id it answers (the
    position in `chunk`); the positions that failed transiently."""
    unsettled = []
    for i, item in zip(chunk, _in_call_order(answer, len(chunk)), strict=True):
        results[i] = outcome = _outcome(item)
        if isinstance(outcome, HeroProcError) and transient(outcome):
            unsettled.append(i)
    return unsettled


def _in_call_order(answer: list[Any], asked: int) -> list[Any]:
    """The items of a batch answer in the order of its calls, None for a call without
    one: the answer itself when hero_proc answered in order, else matched by id."""
    if len(answer) == asked and all(
        isinstance(item, dict) and type(item.get("id")) is int and item["id"] == n
        for n, item in enumerate(answer)
    ):
        return answer
    by_id = _by_id(answer, asked)
    return [by_id.get(n) for n in range(asked)]


def _outcome(item: Any) -> Any:
    """What one item of a batch answer says: the call's result or its error."""
    if item is None:
        return HeroProcProtocolError("a batch answer is missing an item")
    if "result" in item and "error" not in item and item.get("jsonrpc") == "2.0":
        return item["result"]  # the common case, read as `unwrap` would
    try:
        return unwrap(item)
    except HeroProcError as exc:
        return exc


def _by_id(answer: list[Any], asked: int) -> dict[int, Any]:
    """The items of a batch answer by the id they answer (integers only: not 1.0, not
    true), the first one for an id answered twice; ids not asked left out."""
    items: dict[int, Any] = {}
    for item in answer:
        if isinstance(item, dict):
            item_id = item.get("id")
            if type(item_id) is int and 0 <= item_id < asked:
                items.setdefault(item_id, item)
    return items
