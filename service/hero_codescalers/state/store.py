"""`State`: what the engine asks of the state database, each a whole transaction."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import StateUnavailable
from . import lease, plans, runs, tombstones
from .database import Database
from .plans import Plan
from .runs import Cancel, RunStart
from .tombstones import DeletedJobs


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Kept(NamedTuple):
    """A run's lease renewed: whether this process still holds it, and the cancel asked
    of the run (through any process), if any."""

    held: bool
    cancel: Cancel | None


class State:
    """The state database of one service process: the runs' audit trail, the tombstones of
    the jobs they deleted, and the lease.

    `clock` gives the wall time in milliseconds (tests inject one); `lease_ttl_ms` is
    how long the lease lasts unless renewed.
    """

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], int] = wall_ms,
        lease_ttl_ms: int,
        holder: str | None = None,
    ) -> None:
        self.database = database
        self.clock = clock
        self.lease_ttl_ms = lease_ttl_ms
        self.holder = holder or lease.holder_id()
        lease.LIVE_HERE.add(self.holder)

    @classmethod
    async def open(
        cls, directory: Path, *, clock: Callable[[], int] = wall_ms, lease_ttl_ms: int
    ) -> State:
        """The state under `directory`; StateUnusable when it cannot serve."""
        return cls(await Database.open(directory), clock=clock, lease_ttl_ms=lease_ttl_ms)

    @property
    def path(self) -> Path:
        return self.database.path

    async def close(self) -> None:
        lease.LIVE_HERE.discard(self.holder)
        await self.database.close()

    async def begin(self, run: RunStart, *, applying: str | None = None) -> list[dict[str, Any]]:
        """Take the lease and write the run's record, in one transaction: CleanupRunning
        while another process holds the lease, StateUnavailable when the database cannot
        be written. The open runs of a holder whose lease was taken over are completed as
        interrupted; they are returned. `applying`: the plan the run applies, marked
        applied in the same transaction (PlanUnusable when it cannot be)."""

        def begin(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            now = self.clock()
            previous = lease.acquire(connection, self.holder, run.run_id, now, self.lease_ttl_ms)
            if applying is not None:
                plans.apply(connection, applying, run.run_id, now)
            cut = runs.interrupt(connection, {self.holder}) if previous else []
            runs.insert(connection, run, self.holder)
            return cut

        return await self.database.write(begin)

    async def note(self, run: RunStart, outcome: str, error: str) -> None:
        """Record a run that did nothing, complete at once (a policy's run `skipped`
        because another cleanup holds the lock): no lease is taken."""
        await self.database.write(lambda c: runs.insert_ended(c, run, self.holder, outcome, error))

    async def checkpoint(
        self,
        run_id: str,
        counts: dict[str, int],
        errors_count: int,
        phase: str | None = None,
        deleted: Sequence[DeletedJobs] = (),
    ) -> Kept:
        """Record the run's counts so far (and its phase) and the tombstones of the jobs it
        `deleted` since its last checkpoint, and renew the lease: `held` False when the
        lease was taken over by another process (this one must stop); `cancel` when a
        cancel of the run was asked."""

        def checkpoint(connection: sqlite3.Connection) -> Kept:
            now = self.clock()
            runs.checkpoint(connection, run_id, counts, errors_count, now, phase=phase)
            for batch in deleted:
                tombstones.insert(connection, run_id, now, batch)
            held = lease.renew(connection, self.holder, now, self.lease_ttl_ms)
            return Kept(held, runs.cancel_of(connection, run_id))

        return await self.database.write(checkpoint)

    async def watch(self, run_id: str) -> Kept:
        """Renew the lease of the run `run_id`, and read whether a cancel of it was asked."""

        def watch(connection: sqlite3.Connection) -> Kept:
            held = lease.renew(connection, self.holder, self.clock(), self.lease_ttl_ms)
            return Kept(held, runs.cancel_of(connection, run_id))

        return await self.database.write(watch)

    async def request_cancel(self, run_id: str, cancel: Cancel) -> bool:
        """Write on the run's record who asked to cancel it (the first asker is kept);
        whether it was written (not when the run has ended or was asked before)."""
        return await self.database.write(lambda c: runs.request_cancel(c, run_id, cancel))

    async def run(self, run_id: str) -> dict[str, Any] | None:
        """The record of the run `run_id`, or None."""
        return await self.database.read(lambda c: runs.find(c, run_id))

    async def renew(self) -> bool:
        """Renew the lease; False when it was taken over."""
        return await self.database.write(
            lambda c: lease.renew(c, self.holder, self.clock(), self.lease_ttl_ms)
        )

    async def finish(
        self,
        run_id: str,
        *,
        outcome: str,
        error: str | None,
        counts: dict[str, int],
        errors_count: int,
        duration_ms: int,
        deleted: Sequence[DeletedJobs] = (),
    ) -> None:
        """Complete the run's record, with the tombstones of the jobs it `deleted` since
        its last checkpoint, and release the lease."""

        def finish(connection: sqlite3.Connection) -> None:
            now = self.clock()
            for batch in deleted:
                tombstones.insert(connection, run_id, now, batch)
            runs.complete(
                connection,
                run_id,
                outcome=outcome,
                error=error,
                counts=counts,
                errors_count=errors_count,
                duration_ms=duration_ms,
                now_ms=now,
            )
            lease.release(connection, self.holder)

        await self.database.write(finish)

    async def release(self) -> None:
        await self.database.write(lambda c: lease.release(c, self.holder))

    async def sweep(self) -> list[dict[str, Any]]:
        """Complete as interrupted the open runs of processes that have ended (or whose
        lease expired); those runs."""

        def sweep(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            live = lease.live_holders(connection, self.holder, self.clock()) | {self.holder}
            return runs.interrupt(connection, live)

        return await self.database.write(sweep)

    async def prune(self, keep_ms: int) -> int:
        """Delete the runs that finished more than `keep_ms` ago, and their tombstones, and
        give their pages back to the file system; how many runs."""

        def prune(connection: sqlite3.Connection) -> int:
            pruned = runs.prune(connection, self.clock() - keep_ms)
            if pruned:
                tombstones.prune(connection)
            return pruned

        deleted = await self.database.write(prune)
        if deleted:
            await self.database.vacuum()
        return deleted

    async def history(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        outcome: str | None = None,
        policy: str | None = None,
        dry_run: bool | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of runs, newest first (see `runs.page`); the cursor is opaque."""
        found, after = await self.database.read(
            lambda c: runs.page(
                c,
                limit=limit,
                before_seq=None if cursor is None else int(cursor),
                outcome=outcome,
                policy=policy,
                dry_run=dry_run,
            )
        )
        return found, None if after is None else str(after)

    async def last_finished(self) -> list[dict[str, Any]]:
        return await self.database.read(runs.last_finished)

    async def fires(self) -> dict[str, int]:
        """When each retention policy last fired."""
        return await self.database.read(runs.fires)

    async def fired(self, policy: str, at_ms: int) -> None:
        """Persist that `policy` fired at `at_ms` (before its run starts)."""
        await self.database.write(lambda c: runs.fired(c, policy, at_ms))

    async def unfire(self, policy: str, at_ms: int, previous: int | None) -> None:
        """Take back the fire of `policy` at `at_ms`, which did not run: its last fire is
        `previous` again (None: never fired)."""
        await self.database.write(lambda c: runs.unfire(c, policy, at_ms, previous))

    # the plans of dry runs (see plans.py) ---------------------------------------------

    async def save_plan(
        self,
        plan_id: str,
        *,
        run_id: str | None,
        params: dict[str, Any],
        created_at_ms: int,
        expires_at_ms: int,
        job_ids: list[int],
    ) -> None:
        """Write a dry run's plan and its jobs (StateUnavailable when it cannot be)."""
        await self.database.write(
            lambda c: plans.insert(
                c,
                plan_id=plan_id,
                run_id=run_id,
                params=params,
                created_at_ms=created_at_ms,
                expires_at_ms=expires_at_ms,
                job_ids=job_ids,
            )
        )

    async def plan(self, plan_id: str) -> Plan:
        """The plan `plan_id`, with its jobs; PlanUnusable when it cannot be applied now."""
        return await self.database.read(lambda c: plans.read(c, plan_id, self.clock()))

    async def unapply(self, plan_id: str, run_id: str) -> None:
        """Give back the plan that the run `run_id` applied without doing anything of it."""
        await self.database.write(lambda c: plans.unapply(c, plan_id, run_id))

    async def prune_plans(self, keep_ms: int) -> tuple[int, int]:
        """Drop the jobs of the plans that expired or were applied, and the plans made more
        than `keep_ms` ago, giving the pages back; how many job rows and plans."""
        now = self.clock()
        dropped = await self.database.write(lambda c: plans.prune(c, now, now - keep_ms))
        if any(dropped):
            await self.database.vacuum()
        return dropped

    # the tombstones of deleted jobs (see tombstones.py) ----------------------------------

    async def tombstones(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        job_id: int | None = None,
        run_id: str | None = None,
        tags: Collection[str] = (),
        deleted_after_ms: int | None = None,
        deleted_before_ms: int | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of tombstones, newest first (see `tombstones.page`); the cursor is opaque."""
        at = None
        if cursor is not None:
            seq, _, position = cursor.partition(":")
            at = (int(seq), int(position))
        page = await self.database.read(
            lambda c: tombstones.page(
                c,
                limit=limit,
                cursor=at,
                job_id=job_id,
                run_id=run_id,
                tags=tags,
                deleted_after_ms=deleted_after_ms,
                deleted_before_ms=deleted_before_ms,
            )
        )
        if page.unindexed:
            # The batches it read are indexed for the next reads by tag, when the database
            # can be written (the read is whole without).
            with contextlib.suppress(StateUnavailable):
                await self.database.write(lambda c: tombstones.index(c, page.unindexed))
        after = page.after
        return page.found, None if after is None else f"{after[0]}:{after[1]}"

    async def run_exists(self, run_id: str) -> bool:
        """Whether the history holds the run `run_id`."""
        return await self.database.read(lambda c: runs.exists(c, run_id))
