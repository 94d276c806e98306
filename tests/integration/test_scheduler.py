"""The retention scheduler, driven by a clock the test moves (never by sleeping): when a
policy is due, what a restart does, skips, reloads, the global dry-run switch. Runs go
through the real engine to the simulator on its socket, and are read back through
`jobs.cleanup_history` like an operator would."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.errors import CleanupRunning, StateUnavailable
from hero_codescalers.retention import Policy
from hero_codescalers.retention.scheduler import (
    MAX_JITTER_MS,
    RETRY_MS,
    Scheduler,
    WallClock,
    jitter_ms,
)
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator
from hero_codescalers.state import RunStart, State

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


@pytest.mark.parametrize("every", ["1s", "10s", "1m", "5m", "5m1s", "1h", "1d"])
def test_jitter_is_the_documented_hash_of_the_name(every: str) -> None:
    """As its docstring says: the first four bytes of the name's sha256, big-endian, modulo
    one more than the spread (a tenth of `every`, at most MAX_JITTER_MS); an int."""
    for name in ("users", "a", "nightly-services", "Week.2"):
        p = policy(name, every=every)
        spread = min(p.every // 10, MAX_JITTER_MS)
        digest = hashlib.sha256(name.encode()).digest()
        offset = jitter_ms(p)
        assert type(offset) is int
        assert offset == int.from_bytes(digest[:4], "big") % (spread + 1)


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
    with capture_logs() as logs:
        clock.move_to(first)
        assert await clock.next_sleep() == first + RETRY_MS
    [skipped, held] = await runs(caller)
    assert skipped["outcome"] == "skipped"
    assert skipped["policy"] == "users"
    assert skipped["error"] == f"skipped: run {held['run_id']} is going"
    assert [e for e in logs if e["event"] == "policy_skipped"] == [
        {
            "event": "policy_skipped",
            "log_level": "info",
            "policy": "users",
            "reason": f"run {held['run_id']} is going",
        }
    ]
    assert schedulers.events == [("users", "skipped")]
    hold.release.set()
    await manual
    clock.move_to(first + RETRY_MS)
    assert await clock.next_sleep() == first + RETRY_MS + 3_600_000
    await scheduler.join()
    ran = (await runs(caller, policy="users", outcome="ok"))[0]
    assert ran["started_at_ms"] == first + RETRY_MS
    assert schedulers.events[-1] == ("users", "scheduled")


async def test_a_fire_that_another_process_lease_refuses_is_taken_back(
    settings: Settings,
    simulator: Simulator,
    caller: Caller,
    clock: ManualClock,
    schedulers: Schedulers,
) -> None:
    """Another process sharing the state directory holds the lease when the policy is due:
    its run is refused and recorded as `skipped`, retried RETRY_MS later, and its fire is
    taken back (the policy did not run): a restart before the retry sees it never fired,
    and one after an earlier fire sees that earlier one."""
    seed(simulator, 4)
    other = await State.open(settings.state_dir, lease_ttl_ms=3_600_000)
    other.holder = "elsewhere pid:[1] 42 cafe"
    try:
        await other.begin(RunStart("0123456789abcdef", T0, False, {}))
        p = policy(every="10m")
        scheduler = await schedulers.start(p)
        fire = await clock.next_sleep()
        clock.move_to(fire)
        assert await clock.next_sleep() == fire + 10 * MINUTE  # fired: due a period on
        assert await clock.next_sleep() == fire + RETRY_MS  # refused: retried soon
        await scheduler.join()
        [skipped, held] = await runs(caller)
        assert (skipped["outcome"], held["run_id"]) == ("skipped", "0123456789abcdef")
        assert "another hero_codescalers process (pid 42 on elsewhere)" in skipped["error"]
        assert scheduler.fired_ms("users") is None
        assert await other.fires() == {}
        await scheduler.stop()
        await scheduler.join()

        earlier = fire - 5 * MINUTE
        await other.fired(p.name, earlier)
        scheduler = await schedulers.start(p)  # a restart, after an earlier fire
        again = await clock.next_sleep()
        assert again == earlier + 10 * MINUTE
        clock.move_to(again)
        assert await clock.next_sleep() == again + 10 * MINUTE
        assert await clock.next_sleep() == again + RETRY_MS
        await scheduler.join()
        assert await other.fires() == {p.name: earlier}
        assert scheduler.fired_ms("users") == earlier
    finally:
        await other.close()


async def test_a_fire_that_cannot_be_taken_back_is_logged(
    settings: Settings,
    service: Service,
    simulator: Simulator,
    caller: Caller,
    clock: ManualClock,
    schedulers: Schedulers,
) -> None:
    """The lease refuses the run and the database then cannot take the fire back: a warning
    names the policy and the reason, the scheduler forgets the fire all the same, and the
    skip is recorded."""
    seed(simulator, 2)
    state = service.engine.state

    async def unwritable(*args: Any, **kwargs: Any) -> None:
        raise StateUnavailable(str(state.path), "disk I/O error")

    state.unfire = unwritable  # type: ignore[method-assign]
    other = await State.open(settings.state_dir, lease_ttl_ms=3_600_000)
    other.holder = "elsewhere pid:[1] 42 cafe"
    try:
        await other.begin(RunStart("0123456789abcdef", T0, False, {}))
        scheduler = await schedulers.start(policy(every="10m"))
        fire = await clock.next_sleep()
        with capture_logs() as logs:
            clock.move_to(fire)
            await clock.next_sleep()
            assert await clock.next_sleep() == fire + RETRY_MS
            await scheduler.join()
        assert [e for e in logs if e["event"] == "policy_fire_unrecorded"] == [
            {
                "event": "policy_fire_unrecorded",
                "log_level": "warning",
                "policy": "users",
                "error": "disk I/O error",
            }
        ]
        assert scheduler.fired_ms("users") is None
        assert [r["outcome"] for r in await runs(caller)] == ["skipped", None]
    finally:
        await other.close()


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
    skipped, ran = await runs(caller, policy="users")
    assert (skipped["outcome"], ran["outcome"]) == ("skipped", "ok")
    assert skipped["error"] == "skipped: its last run is still going"
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


async def test_policies_due_together_fire_the_earliest_first_and_the_next_is_skipped(
    simulator: Simulator, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """Two policies due at one wake fire in the order of their due times (not of the
    file): the first takes the single-cleanup lock, the second meets it and is recorded
    as skipped (its fire time, its dry run), retried RETRY_MS later. While the first
    runs, running it by hand is refused as its own run still going."""
    seed(simulator, 2)
    hold = HoldListing(1)
    simulator.hooks.append(hold)
    a, b = policy("a", dry_run=True), policy("b")
    assert jitter_ms(b) < jitter_ms(a)
    scheduler = await schedulers.start(a, b)  # "a" first in the file, "b" due first
    assert await clock.next_sleep() == T0 + jitter_ms(b)
    now = T0 + jitter_ms(a)
    with capture_logs() as logs:
        clock.move_to(now)
        assert await clock.next_sleep() == now + 3_600_000
        assert await clock.next_sleep() == now + RETRY_MS
    assert schedulers.events == [("b", "scheduled"), ("a", "scheduled"), ("a", "skipped")]
    assert scheduler.due_ms("a") == now + RETRY_MS
    assert scheduler.due_ms("b") == now + 3_600_000
    await hold.entered.wait()
    with pytest.raises(CleanupRunning) as refused:
        await scheduler.run_now("b", dry_run=True)
    hold.release.set()
    await scheduler.join()
    skipped, ran = await runs(caller)
    assert (ran["policy"], ran["outcome"], ran["dry_run"]) == ("b", "ok", False)
    assert refused.value.detail == (
        f"a cleanup is already running: this policy's last run is still going: run {ran['run_id']}"
    )
    lock_held = f"a cleanup is already running: this service is running one: run {ran['run_id']}"
    assert [e for e in logs if e["event"] == "policy_skipped"] == [
        {"event": "policy_skipped", "log_level": "info", "policy": "a", "reason": lock_held}
    ]
    assert skipped == {
        **skipped,
        "policy": "a",
        "outcome": "skipped",
        "started_at_ms": now,
        "dry_run": True,
        "error": f"skipped: {lock_held}",
    }
    assert re.fullmatch("[0-9a-f]{16}", skipped["run_id"])  # a run id like any other
    assert re.fullmatch("[0-9a-f]{16}", ran["run_id"])


async def test_a_reload_keeps_a_policy_unchanged_and_re_derives_one_whose_every_changed(
    simulator: Simulator, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """After both fired: reloaded as it was, "a" keeps its fire and its due time; "b" with
    a shorter `every` is due at its last fire plus the new `every`, and wakes the
    scheduler from its hour-long sleep. The scheduler answers with the new policies."""
    a, b = policy("a"), policy("b")
    scheduler = await schedulers.start(a, b)
    fired_b = await clock.next_sleep()
    clock.move_to(fired_b)
    fired_a = await clock.next_sleep()
    await scheduler.join()
    clock.move_to(fired_a)
    assert await clock.next_sleep() == fired_b + 3_600_000
    await scheduler.join()
    clock.move_to(fired_a + 10 * MINUTE)
    reloaded = {"a": a, "b": policy("b", every="20m")}
    with capture_logs() as logs:
        scheduler.reload(reloaded)
    assert scheduler.policies is reloaded
    assert logs == [{"event": "policies_reloaded", "log_level": "info", "policies": ["a", "b"]}]
    assert await clock.next_sleep() == fired_b + 20 * MINUTE
    assert scheduler.due_ms("a") == fired_a + 3_600_000
    assert scheduler.fired_ms("a") == fired_a
    assert scheduler.due_ms("b") == fired_b + 20 * MINUTE
    assert scheduler.fired_ms("b") == fired_b
    assert (scheduler.due_ms("c"), scheduler.fired_ms("c"), scheduler.running("c")) == (
        None,
        None,
        False,
    )


async def test_a_reload_before_the_fires_are_read_keeps_the_persisted_fire(
    service: Service, clock: ManualClock, schedulers: Schedulers
) -> None:
    """A fire persisted by an earlier process: reloaded before the scheduler has read it
    (SIGHUP at the start), the policy is still due at that fire plus `every`. The start
    is logged with the policies, those enabled and the dry-run switch."""
    fired = T0 - 10 * MINUTE
    await service.engine.state.fired("users", fired)
    p = policy()
    with capture_logs() as logs:
        scheduler = await schedulers.start(p, policy("off", enabled=False))
        scheduler.reload({"users": p, "off": policy("off", enabled=False)})
        assert await clock.next_sleep() == fired + 3_600_000
    assert scheduler.fired_ms("users") == fired
    assert [e for e in logs if e["event"] == "scheduler_started"] == [
        {
            "event": "scheduler_started",
            "log_level": "info",
            "policies": ["off", "users"],
            "enabled": ["users"],
            "dry_run": False,
        }
    ]


async def test_with_no_policy_enabled_the_scheduler_waits_for_a_reload(
    service: Service, clock: ManualClock, schedulers: Schedulers
) -> None:
    """Nothing enabled: nothing is due and the scheduler sleeps without a time; a reload
    that enables the policy makes it due after its jitter."""
    state = service.engine.state
    read_fires = state.fires
    read = asyncio.Event()

    async def fires() -> dict[str, int]:
        try:
            return await read_fires()
        finally:
            read.set()  # from here the loop goes on to its sleep without a pause

    state.fires = fires  # type: ignore[method-assign]
    scheduler = await schedulers.start(policy(enabled=False))
    await read.wait()
    p = policy()
    scheduler.reload({"users": p})
    assert await clock.next_sleep() == T0 + jitter_ms(p)


async def test_a_state_database_that_cannot_be_written_stops_no_schedule(
    service: Service, caller: Caller, clock: ManualClock, schedulers: Schedulers
) -> None:
    """The fires cannot be read (each policy is new), a fire and a skip cannot be
    recorded, a real run is refused: each is logged with the policy and the reason, and
    the scheduler goes on to the next due times."""
    state = service.engine.state

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StateUnavailable(str(state.path), "disk I/O error")

    for method in ("fires", "fired", "note", "begin"):
        setattr(state, method, unavailable)
    a, b = policy("a"), policy("b")
    with capture_logs() as logs:
        scheduler = await schedulers.start(a, b)
        assert await clock.next_sleep() == T0 + jitter_ms(b)
        now = T0 + jitter_ms(a)
        clock.move_to(now)
        assert await clock.next_sleep() == now + 3_600_000
        await scheduler.join()
        assert await clock.next_sleep() == now + RETRY_MS
    ours = {
        "policy_fires_unread",
        "policy_fire_unrecorded",
        "policy_skip_unrecorded",
        "policy_run_failed",
    }
    warned = [e for e in logs if e["event"] in ours]
    error = "disk I/O error"
    assert warned[0] == {
        "event": "policy_fires_unread",
        "log_level": "warning",
        "path": str(state.path),
        "error": error,
    }
    assert sorted(warned[1:], key=lambda e: (e["event"], e["policy"])) == [
        {"event": "policy_fire_unrecorded", "log_level": "warning", "policy": "a", "error": error},
        {"event": "policy_fire_unrecorded", "log_level": "warning", "policy": "b", "error": error},
        {
            "event": "policy_run_failed",
            "log_level": "warning",
            "policy": "b",
            "error": "StateUnavailable",
        },
        {"event": "policy_skip_unrecorded", "log_level": "warning", "policy": "a", "error": error},
    ]


# The wall clock ------------------------------------------------------------------------


def test_the_wall_clock_reads_whole_milliseconds_of_the_epoch() -> None:
    before = time.time_ns() // 1_000_000
    now = WallClock().now_ms()
    after = time.time_ns() // 1_000_000
    assert type(now) is int
    assert before <= now <= after


async def test_the_wall_clock_sleeps_until_the_time_and_not_for_a_time_past() -> None:
    """A time past returns at once; a time 100 ms ahead returns once it is reached (only
    the order is checked, never how long it took)."""
    clock = WallClock()
    await clock.sleep_until(clock.now_ms() - 3_600_000)
    target = clock.now_ms() + 100
    await clock.sleep_until(target)
    assert clock.now_ms() >= target
