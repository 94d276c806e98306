"""The retention scheduler, driven by a clock the test moves (never by sleeping): when a
policy is due, what a restart does, skips, reloads, the global dry-run switch. Runs go
through the real engine to the simulator on its socket, and are read back through
`jobs.cleanup_history` like an operator would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hero_codescalers.retention import Policy
from hero_codescalers.retention.scheduler import MAX_JITTER_MS, RETRY_MS, Scheduler, jitter_ms
from hero_codescalers.simulator import Simulator

from ..conftest import Caller, Service
from .population import add_job
from .test_state import HoldListing, history

T0 = 1_900_000_000_000  # the wall time the tests start at (milliseconds)
MINUTE = 60_000


class ManualClock:
    """The wall time as the test sets it; `sleep_until` returns once the test moves the
    time there. `sleeps` holds each time the scheduler went to sleep until, in order."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.sleeps: asyncio.Queue[int] = asyncio.Queue()
        self._sleepers: list[tuple[int, asyncio.Future[None]]] = []

    def now_ms(self) -> int:
        return self.now

    async def sleep_until(self, when_ms: int) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._sleepers.append((when_ms, waiter))
        self.sleeps.put_nowait(when_ms)
        try:
            await waiter
        finally:
            self._sleepers.remove((when_ms, waiter))

    def move_to(self, when_ms: int) -> None:
        self.now = when_ms
        for due, waiter in self._sleepers:
            if due <= when_ms and not waiter.done():
                waiter.set_result(None)

    async def next_sleep(self) -> int:
        """Until when the scheduler sleeps next: it has done all it had to do before."""
        return await self.sleeps.get()


def policy(name: str = "users", **fields: Any) -> Policy:
    return Policy(name=name, **{"every": "1h", **fields})


class Schedulers:
    """Schedulers over the test's service and clock, stopped at the end."""

    def __init__(self, service: Service, clock: ManualClock) -> None:
        self.service = service
        self.clock = clock
        self.started: list[Scheduler] = []
        self.events: list[tuple[str, str]] = []

    async def start(self, *policies: Policy, force_dry_run: bool = False) -> Scheduler:
        scheduler = Scheduler(
            {p.name: p for p in policies},
            engine=self.service.engine,
            clock=self.clock,
            force_dry_run=force_dry_run,
            on_event=lambda name, event: self.events.append((name, event)),
        )
        scheduler.start()
        self.started.append(scheduler)
        return scheduler


@pytest.fixture
def clock(service: Service) -> ManualClock:
    clock = ManualClock(T0)
    service.engine.clock = clock.now_ms
    return clock


@pytest.fixture
async def schedulers(service: Service, clock: ManualClock) -> AsyncIterator[Schedulers]:
    made = Schedulers(service, clock)
    yield made
    for scheduler in made.started:
        await scheduler.stop()
        await scheduler.join()


def seed(simulator: Simulator, n: int, kind: str = "user") -> list[int]:
    return [add_job(simulator.store, kind=kind, created_at_ms=T0 - MINUTE) for _ in range(n)]


async def runs(caller: Caller, **filters: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await history(caller, **filters))["runs"]
    return found


# When a policy is due ----------------------------------------------------------------


async def test_a_new_policy_fires_after_its_jitter_then_every_period(
    simulator: Simulator, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """Never fired: due at the start plus its jitter; it deletes what it selects and
    nothing else, is recorded under its name, and is next due one `every` later."""
    users = seed(simulator, 5)
    services = seed(simulator, 3, kind="service")
    p = policy(kind="user")
    scheduler = await schedulers.start(p)
    first = T0 + jitter_ms(p)
    assert await clock.next_sleep() == first
    assert simulator.calls["job.delete"] == 0
    clock.move_to(first)
    assert await clock.next_sleep() == first + 3_600_000
    await scheduler.join()
    assert not set(users) & set(simulator.store.jobs)
    assert set(services) <= set(simulator.store.jobs)
    [run] = await runs(caller)
    assert run["policy"] == "users"
    assert run["outcome"] == "ok"
    assert run["jobs_deleted"] == 5
    assert run["started_at_ms"] == first
    assert run["params"]["kind"] == "user"
    assert run["peer_uid"] is None
    assert schedulers.events == [("users", "scheduled")]
    assert scheduler.fired_ms("users") == first
    assert scheduler.due_ms("users") == first + 3_600_000


async def test_it_does_not_fire_before_it_is_due(
    simulator: Simulator, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """Moving the time short of the due time wakes nothing: one run in 59 minutes, a second
    one at the hour."""
    p = policy(every="1h")
    scheduler = await schedulers.start(p)
    first = await clock.next_sleep()
    clock.move_to(first)
    second = await clock.next_sleep()
    await scheduler.join()
    clock.move_to(second - 1)
    seed(simulator, 2)
    assert clock.sleeps.empty()
    assert len(await runs(caller)) == 1
    clock.move_to(second)
    assert await clock.next_sleep() == second + 3_600_000
    await scheduler.join()
    assert [r["outcome"] for r in await runs(caller)] == ["ok", "ok"]


async def test_a_restart_derives_due_from_the_persisted_fire(
    simulator: Simulator, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """A scheduler started again (a restart) half a period after the last fire does not
    fire at once: it sleeps until the last fire plus `every`."""
    p = policy(every="10m")
    first_scheduler = await schedulers.start(p)
    fired = await clock.next_sleep()
    clock.move_to(fired)
    await clock.next_sleep()
    await first_scheduler.stop()
    await first_scheduler.join()
    clock.move_to(fired + 5 * MINUTE)
    await schedulers.start(p)
    assert await clock.next_sleep() == fired + 10 * MINUTE
    assert len(await runs(caller)) == 1


async def test_after_downtime_an_overdue_policy_fires_once(
    simulator: Simulator, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """Ten periods down: the restart fires the policy once (after its jitter), not ten
    times, and it is next due one period after that fire."""
    p = policy(every="10m")
    first_scheduler = await schedulers.start(p)
    await clock.next_sleep()
    fired = T0 + jitter_ms(p)
    clock.move_to(fired)
    await clock.next_sleep()
    await first_scheduler.stop()
    await first_scheduler.join()
    restart = fired + 100 * MINUTE
    clock.move_to(restart)
    scheduler = await schedulers.start(p)
    again = restart + jitter_ms(p)
    assert await clock.next_sleep() == again
    clock.move_to(again)
    assert await clock.next_sleep() == again + 10 * MINUTE
    await scheduler.join()
    assert [r["started_at_ms"] for r in await runs(caller)] == [again, fired]


def test_jitter_is_fixed_per_name_and_bounded() -> None:
    """The offset depends on the name alone, is at most a tenth of `every` and at most
    MAX_JITTER_MS, and spreads names."""
    offsets = {jitter_ms(policy(f"p{i}", every="1h")) for i in range(50)}
    assert len(offsets) > 40
    assert max(offsets) <= MAX_JITTER_MS
    assert jitter_ms(policy("a", every="1h")) == jitter_ms(policy("a", every="1h"))
    assert max(jitter_ms(policy(f"p{i}", every="10s")) for i in range(50)) <= 1_000
    assert jitter_ms(policy("a", every="5s")) <= 500


# Skips -------------------------------------------------------------------------------


async def test_a_policy_meeting_a_manual_cleanup_is_skipped_and_retried_soon(
    simulator: Simulator, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """A manual cleanup holds the lock when the policy is due: the policy is recorded as
    `skipped` (naming the run that holds the lock), retried RETRY_MS later, and runs then."""
    seed(simulator, 4)
    hold = HoldListing(1)
    simulator.hooks.append(hold)
    manual = asyncio.create_task(caller.call("jobs.cleanup", {"kind": "service"}))
    await hold.entered.wait()
    p = policy(every="1h")
    scheduler = await schedulers.start(p)
    first = await clock.next_sleep()
    clock.move_to(first)
    assert await clock.next_sleep() == first + RETRY_MS
    [skipped, held] = await runs(caller)
    assert skipped["outcome"] == "skipped"
    assert skipped["policy"] == "users"
    assert skipped["error"] == f"skipped: run {held['run_id']} is going"
    assert schedulers.events == [("users", "skipped")]
    hold.release.set()
    await manual
    clock.move_to(first + RETRY_MS)
    assert await clock.next_sleep() == first + RETRY_MS + 3_600_000
    await scheduler.join()
    ran = (await runs(caller, policy="users", outcome="ok"))[0]
    assert ran["started_at_ms"] == first + RETRY_MS
    assert schedulers.events[-1] == ("users", "scheduled")


async def test_a_policy_whose_last_run_still_goes_is_skipped(
    simulator: Simulator, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """every = 2s and its run is held: at the next due time it is skipped (retried after
    `every`, shorter than RETRY_MS), not started a second time."""
    seed(simulator, 3)
    hold = HoldListing(1)
    simulator.hooks.append(hold)
    p = policy(every="2s")
    scheduler = await schedulers.start(p)
    first = await clock.next_sleep()
    clock.move_to(first)
    assert await clock.next_sleep() == first + 2_000
    await hold.entered.wait()
    clock.move_to(first + 2_000)
    assert await clock.next_sleep() == first + 4_000
    assert scheduler.running("users")
    hold.release.set()
    await scheduler.join()
    outcomes = [r["outcome"] for r in await runs(caller, policy="users")]
    assert outcomes == ["skipped", "ok"]
    assert schedulers.events == [("users", "scheduled"), ("users", "skipped")]


# Reloads, disabled policies, the dry-run switch --------------------------------------


async def test_a_reload_wakes_the_scheduler_for_a_policy_enabled(
    simulator: Simulator, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """A disabled policy is never due. Reloaded enabled, it is due at once (after its
    jitter): the scheduler wakes from its hour-long sleep for it; a policy reloaded away
    is no longer due."""
    seed(simulator, 2)
    a = policy("a", every="1h")
    scheduler = await schedulers.start(a, policy("b", enabled=False))
    assert scheduler.due_ms("b") is None
    first = await clock.next_sleep()
    clock.move_to(first)
    assert await clock.next_sleep() == first + 3_600_000
    await scheduler.join()
    b = policy("b", every="1h")
    scheduler.reload({"b": b})
    assert scheduler.due_ms("a") is None
    assert await clock.next_sleep() == first + jitter_ms(b)
    clock.move_to(first + jitter_ms(b))
    assert await clock.next_sleep() == first + jitter_ms(b) + 3_600_000
    await scheduler.join()
    assert [r["policy"] for r in await runs(caller)] == ["b", "a"]


@pytest.mark.parametrize(
    ("force", "own"), [pytest.param(True, False, id="switch"), pytest.param(False, True, id="own")]
)
async def test_a_dry_run_policy_deletes_nothing(
    simulator: Simulator,
    caller: Caller,
    clock: ManualClock,
    schedulers: Schedulers,
    force: bool,
    own: bool,
) -> None:
    """HERO_CODESCALERS_POLICIES_DRY_RUN, or the policy's own `dry_run`: the run is
    recorded as a dry run that matched the jobs, and deletes nothing."""
    ids = seed(simulator, 3)
    scheduler = await schedulers.start(policy(dry_run=own), force_dry_run=force)
    first = await clock.next_sleep()
    clock.move_to(first)
    await clock.next_sleep()
    await scheduler.join()
    [run] = await runs(caller)
    assert run["dry_run"] is True
    assert run["jobs_matched"] == 3
    assert set(ids) <= set(simulator.store.jobs)
    assert simulator.calls["job.delete"] == 0
