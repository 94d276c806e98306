"""The scheduler: fires each enabled retention policy when it is due, through the engine.

When a policy is due: one never fired before is due as the scheduler starts, after
its jitter; after that, when its last fire (persisted in the state database) plus
its `every` has passed. A policy overdue at the start (the service was down) fires
once, after its jitter, not once per missed period. The scheduler sleeps until the
next due time (`Clock.sleep_until`), woken early by a reload or its stop: no tick.

A fire persists its time, then starts the policy's run as a task of its own (the
engine's `cleanup`, the same lock, lease and record as any run, the policy as the
actor), so the scheduler goes on while it runs. A policy whose last run is still
going, or that meets another cleanup, is skipped: logged, recorded as `skipped`,
and tried again `RETRY_MS` later (or `every`, when shorter), not a whole `every`.
A fire whose run another process's lease refuses is taken back: the policy did
not run, so a restart before the retry does not count it.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog

from ..engine import CleanupRequest, Engine
from ..errors import CleanupRunning, StateUnavailable
from ..models import CleanupSummary
from ..state import RunStart
from .policies import Policy

log = structlog.get_logger(__name__)

RETRY_MS = 30_000  # a skipped policy is tried again this much later (within a minute)
MAX_JITTER_MS = 30_000  # the most a policy's fires are offset (a tenth of `every` below)

Event = Literal["scheduled", "skipped"]


def jitter_ms(policy: Policy) -> int:
    """A fixed offset of the policy's first fire, from its name: up to a tenth of its
    `every` and at most MAX_JITTER_MS, so policies of one period do not fire together."""
    spread = min(policy.every // 10, MAX_JITTER_MS)
    digest = hashlib.sha256(policy.name.encode()).digest()
    return int.from_bytes(digest[:4], "big") % (spread + 1)


class Clock(Protocol):
    """The wall time in milliseconds, and a sleep until a time (tests drive their own)."""

    def now_ms(self) -> int: ...

    async def sleep_until(self, when_ms: int) -> None: ...


class WallClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_until(self, when_ms: int) -> None:
        await asyncio.sleep(max(0, when_ms - self.now_ms()) / 1000)


def _first_due(policy: Policy, fired_ms: int | None, now: int) -> int:
    """When a policy newly tracked is due: its last fire plus `every`, never before now
    plus its jitter."""
    due = now + jitter_ms(policy)
    return due if fired_ms is None else max(fired_ms + policy.every, due)


@dataclass
class _Entry:
    """A policy as the scheduler tracks it."""

    policy: Policy
    due_ms: int
    fired_ms: int | None = None  # its last fire, persisted
    task: asyncio.Task[None] | None = None  # its last run

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


class Scheduler:
    """Fires the policies given (by name) through `engine`. `force_dry_run` makes every
    run a dry run; `on_event` is told of each fire, `scheduled` or `skipped`."""

    def __init__(
        self,
        policies: dict[str, Policy],
        *,
        engine: Engine,
        clock: Clock,
        force_dry_run: bool,
        on_event: Callable[[str, Event], None] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.force_dry_run = force_dry_run
        self.on_event = on_event
        self._policies = policies
        self._entries: dict[str, _Entry] = {}
        self._fires: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._ready = False  # the persisted fires are read

    @property
    def policies(self) -> dict[str, Policy]:
        return self._policies

    def start(self) -> None:
        """Start firing: the loop reads the persisted fires first (none when the database
        cannot be read: each policy is then new)."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._run_loop())

    async def stop(self) -> None:
        """Fire nothing more; runs under way go on (the engine's shutdown stops them)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None

    async def join(self) -> None:
        """Wait for the runs the scheduler started (a run's task ends without raising)."""
        await asyncio.gather(*(e.task for e in self._entries.values() if e.task is not None))

    def reload(self, policies: dict[str, Policy]) -> None:
        """Use `policies` from now on: a policy kept keeps its fires and its run."""
        self._policies = policies
        log.info("policies_reloaded", policies=sorted(policies))
        if self._loop is None:
            if policies:
                self.start()
        elif self._ready:
            self._arrange(policies)
            self._wake.set()

    def due_ms(self, name: str) -> int | None:
        """When the policy is next due (None: disabled, or not a policy)."""
        entry = self._entries.get(name)
        if entry is None or not entry.policy.enabled:
            return None
        return entry.due_ms

    def fired_ms(self, name: str) -> int | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.fired_ms

    def running(self, name: str) -> bool:
        entry = self._entries.get(name)
        return entry is not None and entry.running

    def dry_run(self, policy: Policy, asked: bool = False) -> bool:
        """Whether a run of `policy` is a dry run: asked, set on the policy, or forced."""
        return asked or policy.dry_run or self.force_dry_run

    async def run_now(
        self,
        name: str,
        *,
        dry_run: bool,
        reason: str | None = None,
        peer_uid: int | None = None,
        peer_pid: int | None = None,
    ) -> CleanupSummary:
        """Run the policy `name` now, for a caller (recorded with the caller's uid and
        pid beside the policy, and `reason`); its schedule does not change, and a
        disabled policy runs too. KeyError for a name not configured; CleanupRunning
        when its last run or another cleanup is still going."""
        policy = self._policies[name]
        entry = self._entries.get(name)
        if entry is not None and entry.running:
            raise self.engine.running_error("this policy's last run is still going")
        return await self._cleanup(
            policy,
            self.dry_run(policy, dry_run),
            reason=reason,
            peer_uid=peer_uid,
            peer_pid=peer_pid,
        )

    # the loop -----------------------------------------------------------------------

    def _arrange(self, policies: dict[str, Policy]) -> None:
        """Track `policies`. A policy kept as it was keeps its due time (a retry, maybe);
        one new, enabled again, or with another `every` is due at its last fire plus
        `every`, and never before now plus its jitter."""
        now = self.clock.now_ms()
        old = self._entries
        self._entries = {}
        for name, policy in policies.items():
            entry = old.get(name)
            if entry is None:
                fired = self._fires.get(name)
                entry = _Entry(policy, _first_due(policy, fired, now), fired)
            else:
                if not entry.policy.enabled or entry.policy.every != policy.every:
                    entry.due_ms = _first_due(policy, entry.fired_ms, now)
                entry.policy = policy
            self._entries[name] = entry

    async def _run_loop(self) -> None:
        await self._read_fires()
        while True:
            self._wake.clear()
            wake = await self._fire_due(self.clock.now_ms())
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
            if wake is not None:
                waits.add(asyncio.ensure_future(self.clock.sleep_until(wake)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()

    async def _read_fires(self) -> None:
        """The persisted fires, then the policies arranged by them."""
        try:
            self._fires = await self.engine.state.fires()
        except StateUnavailable as exc:
            log.warning("policy_fires_unread", path=exc.path, error=exc.reason)
        self._ready = True
        self._arrange(self._policies)
        log.info(
            "scheduler_started",
            policies=sorted(self._policies),
            enabled=sorted(n for n, p in self._policies.items() if p.enabled),
            dry_run=self.force_dry_run,
        )

    async def _fire_due(self, now: int) -> int | None:
        """Fire the enabled policies due at `now`, the earliest first; when the next is
        due (None: none is enabled)."""
        enabled = [e for e in self._entries.values() if e.policy.enabled]
        for entry in sorted(enabled, key=lambda e: (e.due_ms, e.policy.name)):
            if entry.due_ms <= now:
                await self._fire(entry, now)
        return min((e.due_ms for e in enabled), default=None)

    async def _fire(self, entry: _Entry, now: int) -> None:
        policy = entry.policy
        dry_run = self.dry_run(policy)
        holder = self.engine.current_run
        if entry.running or holder is not None:
            why = "its last run is still going" if entry.running else f"run {holder} is going"
            await self._skip(policy, now, dry_run, why)
            entry.due_ms = now + min(RETRY_MS, policy.every)
            return
        previous, entry.fired_ms = entry.fired_ms, now
        entry.due_ms = now + policy.every
        try:
            await self.engine.state.fired(policy.name, now)
        except StateUnavailable as exc:  # a real run is refused by the engine, and says so
            log.warning("policy_fire_unrecorded", policy=policy.name, error=exc.reason)
        if self.on_event is not None:
            self.on_event(policy.name, "scheduled")
        entry.task = asyncio.create_task(self._scheduled(entry, dry_run, now, previous))

    async def _scheduled(
        self, entry: _Entry, dry_run: bool, now: int, previous: int | None
    ) -> None:
        """One scheduled run of the entry's policy, whatever it ends with; a run refused
        by another process's lease takes its fire back (`previous`: the fire before)."""
        policy = entry.policy
        try:
            await self._cleanup(policy, dry_run)
        except CleanupRunning as exc:  # another process holds the lease
            entry.fired_ms = previous
            try:
                await self.engine.state.unfire(policy.name, now, previous)
            except StateUnavailable as unwritable:
                log.warning("policy_fire_unrecorded", policy=policy.name, error=unwritable.reason)
            await self._skip(policy, now, dry_run, exc.detail)
            entry.due_ms = now + min(RETRY_MS, policy.every)
            self._wake.set()
        except Exception as exc:  # recorded by the engine; the scheduler goes on
            log.warning("policy_run_failed", policy=policy.name, error=type(exc).__name__)

    async def _cleanup(
        self,
        policy: Policy,
        dry_run: bool,
        *,
        reason: str | None = None,
        peer_uid: int | None = None,
        peer_pid: int | None = None,
    ) -> CleanupSummary:
        return await self.engine.cleanup(
            CleanupRequest(
                policy.selector(self.engine.clock()),  # the cutoffs as a caller's run has them
                dry_run=dry_run,
                params=policy.params(),
                policy=policy.name,
                reason=reason,
                sweep_orphans=policy.orphan_actions,
                peer_uid=peer_uid,
                peer_pid=peer_pid,
            )
        )

    async def _skip(self, policy: Policy, now: int, dry_run: bool, why: str) -> None:
        error = f"skipped: {why}"
        log.info("policy_skipped", policy=policy.name, reason=why)
        if self.on_event is not None:
            self.on_event(policy.name, "skipped")
        start = RunStart(
            run_id=secrets.token_hex(8),
            started_at_ms=now,
            dry_run=dry_run,
            params=policy.params(),
            policy=policy.name,
        )
        try:
            await self.engine.state.note(start, "skipped", error)
        except StateUnavailable as exc:
            log.warning("policy_skip_unrecorded", policy=policy.name, error=exc.reason)
