"""`Shared`: one computation for concurrent callers, reused for a while, discarded on change."""

from __future__ import annotations

import asyncio

import pytest

from hero_codescalers.methods import Shared


class Source:
    """A computation that waits for `go`, counting how often it was started."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0
        self.go = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self) -> int:
        self.started += 1
        mine = self.started
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail is not None:
            raise self.fail
        return mine


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_callers_share_one_computation() -> None:
    """Three callers at once: one computation, one result for all."""
    source = Source()
    shared = Shared(source, reuse_s=0)
    calls = [asyncio.create_task(shared.get()) for _ in range(3)]
    await asyncio.sleep(0)
    source.go.set()
    assert await asyncio.gather(*calls) == [1, 1, 1]
    assert source.started == 1


async def test_a_result_is_reused_for_its_time_only() -> None:
    """Reused while the clock is within reuse_s of the start; computed again after."""
    source, clock = Source(), Clock()
    source.go.set()
    shared = Shared(source, reuse_s=2, clock=clock)
    assert await shared.get() == 1
    clock.now += 1.9
    assert await shared.get() == 1
    clock.now += 0.2
    assert await shared.get() == 2


async def test_discard_starts_afresh_even_during_a_computation() -> None:
    """After discard(), a new caller does not join the running computation nor reuse it."""
    source = Source()
    shared = Shared(source, reuse_s=60)
    first = asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    shared.discard()
    second = asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    source.go.set()
    assert await first == 1
    assert await second == 2
    assert await shared.get() == 2  # the computation started after the discard is reused


async def test_a_failure_is_shared_but_never_reused() -> None:
    """Callers waiting get the error; the next call computes again."""
    source = Source()
    source.fail = RuntimeError("down")
    shared = Shared(source, reuse_s=60)
    calls = [asyncio.create_task(shared.get()) for _ in range(2)]
    await asyncio.sleep(0)
    source.go.set()
    for outcome in await asyncio.gather(*calls, return_exceptions=True):
        assert isinstance(outcome, RuntimeError)
    source.fail = None
    assert await shared.get() == 2


async def test_the_computation_stops_when_its_last_caller_goes() -> None:
    """One caller of two cancelled: the work goes on; both: it is cancelled."""
    source = Source()
    shared = Shared(source, reuse_s=0)
    one, two = asyncio.create_task(shared.get()), asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    one.cancel()
    with pytest.raises(asyncio.CancelledError):
        await one
    assert source.cancelled == 0
    two.cancel()
    with pytest.raises(asyncio.CancelledError):
        await two
    await asyncio.sleep(0)
    assert source.cancelled == 1
    source.go.set()
    assert await shared.get() == 2
