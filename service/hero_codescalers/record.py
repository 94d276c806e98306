"""What a cleanup run leaves behind: its record in the state database and its log lines.

A run is recorded before it deletes anything (`begin`: the lease taken, its
record written; a real run that cannot be recorded is refused), checkpointed
after each page (`checkpoint`: its counts and phase, the tombstones of the jobs
it deleted, the lease renewed, a cancel asked through another process taken
in; `renew` keeps the lease between pages), and completed at its end (`finish`,
or `failed` for a run that failed as a whole), which logs its counts, keeps
the summary in its `LiveRun` and tells the metrics (`RunEnded`). A dry run's
plan is saved here too (`save_plan`), and a cancel's author (`note_cancel`).
The records are read back here (`history`, `deleted`: the tombstones, `plan`)
and kept in bounds (`housekeep`: the runs of processes that ended under them
interrupted, the history, its tombstones and the plans pruned).

The engine decides when a run starts, stops and ends; this module keeps its
account of it. A little over 350 lines: the writes of a record and its reads
back share its shape (counts, outcome, tombstones), so they stay together.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from .cleanup.tally import Tally
from .errors import CleanupRunning, InvalidParams, PlanUnusable, StateUnavailable
from .models import (
    CleanupSummary,
    DeletedJob,
    DeletedResult,
    HistoryEntry,
    HistoryResult,
    without_ids,
)
from .progress import Ended, LiveRun
from .state import Cancel, Kept, Plan, State
from .state.tombstones import DeletedJobs
from .tags import SCOPE_TAG, Selector, labels

log = structlog.get_logger(__name__)

# Summary fields that hold one entry per job or action: counted, not logged.
_LISTS = {"job_ids", "action_ids", "errors", "foreign_action_ids", "actions_in_use_ids"}


@dataclass(frozen=True)
class RunEnded:
    """A cleanup run that ended, as the metrics see it."""

    policy: str | None  # None: a caller's run
    outcome: str
    dry_run: bool
    finished_at_ms: int
    duration_ms: int
    summary: CleanupSummary | None  # None when it failed as a whole


def who(cancel: Cancel) -> dict[str, Any]:
    """Who asked to cancel a run, as log fields."""
    return {"by_uid": cancel.uid, "by_pid": cancel.pid}


def _entry(row: dict[str, Any]) -> HistoryEntry:
    """A run's record as `jobs.cleanup_history` shows it."""
    counts = row["counts"]
    return HistoryEntry(
        **{k: row[k] for k in HistoryEntry.model_fields if k in row},
        **{k: counts[k] for k in HistoryEntry.model_fields if k in counts and k not in row},
    )


class Recorder:
    """The record and log lines of the runs of one engine: `clock` gives the wall time in
    milliseconds (the engine's, which tests set), `on_run` is told of each run's end,
    a dry run's plan lasts `plan_lifetime_ms`, a finished run and its tombstones are
    kept `history_days`."""

    def __init__(
        self,
        state: State,
        *,
        clock: Callable[[], int],
        on_run: Callable[[RunEnded], None] | None,
        plan_lifetime_ms: int,
        history_days: int,
    ) -> None:
        self.state = state
        self.clock = clock
        self.on_run = on_run
        self.plan_lifetime_ms = plan_lifetime_ms
        self.history_days = history_days

    async def save_plan(self, run: LiveRun, tally: Tally, at_ms: int) -> None:
        """Keep a dry run's plan: its selection (cutoffs taken at `at_ms`) and the jobs it
        matched. A database that cannot be written leaves the dry run without a plan
        (`plan_id` null), logged."""
        plan_id = secrets.token_hex(8)
        expires = at_ms + self.plan_lifetime_ms
        try:
            await self.state.save_plan(
                plan_id,
                run_id=run.start.run_id,
                params=run.start.params,
                created_at_ms=at_ms,
                expires_at_ms=expires,
                job_ids=tally.job_ids,
            )
        except StateUnavailable as exc:
            log.warning("cleanup_plan_not_kept", run_id=run.start.run_id, error=exc.reason)
            return
        tally.plan_id, tally.plan_expires_at_ms = plan_id, expires

    async def begin(self, run: LiveRun, fields: dict[str, Any]) -> None:
        """Record the run before it does anything (`_record_start`), tell a background
        run's starter how that went, and record a cancel asked meanwhile."""
        try:
            await self._record_start(run, fields)
        except Exception as exc:
            if run.begun is not None:
                run.begun.set_exception(exc)
            raise
        if run.begun is not None:
            run.begun.set_result(None)
        if run.cancel is not None and run.recorded:
            await self.note_cancel(run, run.cancel)

    async def _record_start(self, run: LiveRun, fields: dict[str, Any]) -> None:
        """Take the lease and write the run's record before it does anything. A real run
        that cannot be recorded is refused (StateUnavailable); a dry run goes on unrecorded."""
        try:
            cut = await self.state.begin(run.start, applying=run.applying)
        except PlanUnusable as exc:
            log.warning("cleanup_refused", **fields, error=exc.detail)
            raise
        except StateUnavailable as exc:
            if not run.start.dry_run:
                log.warning("cleanup_refused", **fields, path=exc.path, error=exc.reason)
                raise
            log.warning("cleanup_not_recorded", **fields, path=exc.path, error=exc.reason)
            return
        except CleanupRunning as exc:
            log.warning("cleanup_refused", **fields, error=exc.detail)
            raise
        run.recorded = True
        for old in cut:
            log.warning("cleanup_interrupted", run_id=old["run_id"], **old["counts"])

    async def checkpoint(self, run: LiveRun, tally: Tally, fields: dict[str, Any]) -> None:
        """After each page: the run's counts so far in its record, with the tombstones of the
        jobs it deleted, the lease renewed, a cancel asked through another process taken in."""
        counts = tally.counts()
        deleted = tally.take_deleted()
        try:
            kept = await self.state.checkpoint(
                run.start.run_id, counts, len(tally.errors), tally.phase, deleted
            )
        except StateUnavailable as exc:
            tally.give_back(deleted)  # tried again with the run's end
            run.problem = f"the state database cannot be written ({exc.reason})"
        else:
            self._kept_up(run, kept)
        log.info("cleanup_progress", run_id=run.start.run_id, **counts)

    async def renew(self, run: LiveRun) -> None:
        """Renew the run's lease while it goes (a page may take longer than the lease), and
        take in a cancel asked through another process."""
        while run.problem is None:
            await asyncio.sleep(self.state.lease_ttl_ms / 1000 / 3)
            try:
                self._kept_up(run, await self.state.watch(run.start.run_id))
            except StateUnavailable as exc:
                run.problem = f"the state database cannot be written ({exc.reason})"

    def _kept_up(self, run: LiveRun, kept: Kept) -> None:
        if not kept.held:
            run.problem = "another process took the cleanup lease over"
        if kept.cancel is not None and run.cancel is None:
            run.cancel = kept.cancel
            log.info("cleanup_cancel_requested", run_id=run.start.run_id, **who(kept.cancel))

    async def failed(
        self,
        run: LiveRun,
        tally: Tally,
        t0: float,
        fields: dict[str, Any],
        *,
        error: str,
        logger: Callable[..., Any],
    ) -> None:
        duration = int((time.monotonic() - t0) * 1000)
        counts = tally.counts()
        logger("cleanup_failed", **fields, error=error, duration_ms=duration, **counts)
        if run.applying is not None and run.recorded and not tally.job_ids:
            # Failed before it matched any job: nothing of the plan was done, give it back.
            try:
                await self.state.unapply(run.applying, run.start.run_id)
            except StateUnavailable as exc:
                log.error("cleanup_plan_not_given_back", plan_id=run.applying, error=exc.reason)
        await self._record_end(
            run,
            "error",
            duration_ms=duration,
            counts=counts,
            errors_count=len(tally.errors),
            deleted=tally.take_deleted(),
            error=error,
        )

    async def finish(
        self,
        run: LiveRun,
        tally: Tally,
        t0: float,
        fields: dict[str, Any],
        outcome: str | None = None,
    ) -> CleanupSummary:
        """Log the run's counts, complete its record, and summarise it. Its outcome, unless
        given: `cancelled` when a caller's cancel stopped it short, `ok` when complete
        without errors, else `partial`."""
        duration = int((time.monotonic() - t0) * 1000)
        summary = tally.summary(duration, run_id=run.start.run_id)
        if outcome is None and run.cancel is not None and not summary.complete:
            outcome = "cancelled"
        if outcome is None:
            outcome = "ok" if summary.complete and not summary.errors else "partial"
        counts = summary.model_dump(
            exclude=_LISTS | {"run_id", "dry_run", "ids_omitted"} | set(fields)
        )
        logger = log.info if outcome in ("ok", "partial") else log.warning
        event = "cleanup_cancelled" if outcome == "cancelled" else "cleanup_finished"
        logger(
            event,
            **fields,
            **counts,
            outcome=outcome,
            errors=len(summary.errors),
            passes=tally.passes,
        )
        await self._record_end(
            run,
            outcome,
            duration_ms=duration,
            counts=tally.counts(),
            errors_count=len(summary.errors),
            deleted=tally.take_deleted(),
            summary=summary,
        )
        return summary

    async def _record_end(
        self,
        run: LiveRun,
        outcome: str,
        *,
        duration_ms: int,
        counts: dict[str, int],
        errors_count: int,
        deleted: list[DeletedJobs],
        error: str | None = None,
        summary: CleanupSummary | None = None,
    ) -> None:
        start = run.start
        if run.recorded:
            try:
                await self.state.finish(
                    start.run_id,
                    outcome=outcome,
                    error=error,
                    counts=counts,
                    errors_count=errors_count,
                    duration_ms=duration_ms,
                    deleted=deleted,
                )
            except StateUnavailable as exc:
                log.error(
                    "cleanup_not_recorded",
                    run_id=start.run_id,
                    error=exc.reason,
                    tombstones_lost=sum(len(batch.ids) for batch in deleted),
                )
        kept = summary if summary is None or run.ids else without_ids(summary)
        run.end = Ended(outcome, error, counts, self.clock(), duration_ms, kept)
        run.work = None  # its tally's lists: the summary has them
        run.ended.set()
        if self.on_run is not None:
            self.on_run(
                RunEnded(start.policy, outcome, start.dry_run, self.clock(), duration_ms, summary)
            )

    async def note_cancel(self, run: LiveRun, cancel: Cancel) -> None:
        try:
            await self.state.request_cancel(run.start.run_id, cancel)
        except StateUnavailable as exc:
            log.warning("cleanup_cancel_not_recorded", run_id=run.start.run_id, error=exc.reason)

    # the records read back, and their upkeep ---------------------------------------

    async def housekeep(self) -> None:
        """Complete the runs of processes that ended under them (`interrupted`) and drop
        the history older than `history_days`. A database that cannot be written is
        logged, not fatal: reads and dry runs go on."""
        try:
            for old in await self.state.sweep():
                log.warning("cleanup_interrupted", run_id=old["run_id"], **old["counts"])
            pruned = await self.state.prune(self.history_days * 86_400_000)
            plan_jobs, plans = await self.state.prune_plans(self.history_days * 86_400_000)
        except StateUnavailable as exc:
            log.warning(
                "state_read_only",
                path=exc.path,
                error=exc.reason,
                effect="real cleanups are refused (-32013); dry runs and reads go on",
            )
            return
        if pruned:
            log.info("history_pruned", runs=pruned, older_than_days=self.history_days)
        if plan_jobs or plans:
            log.info("plans_pruned", plan_jobs=plan_jobs, plans=plans)

    async def plan(self, plan_id: str) -> Plan:
        """The plan of a dry run, with its jobs; PlanUnusable when it cannot be applied."""
        return await self.state.plan(plan_id)

    async def history(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        outcome: str | None = None,
        policy: str | None = None,
        dry_run: bool | None = None,
    ) -> HistoryResult:
        """A page of recorded runs, newest first."""
        found, next_cursor = await self.state.history(
            limit=limit, cursor=cursor, outcome=outcome, policy=policy, dry_run=dry_run
        )
        return HistoryResult(runs=[_entry(row) for row in found], next_cursor=next_cursor)

    async def deleted(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        job_id: int | None = None,
        kind: str | None = None,
        target: str | None = None,
        actor: str | None = None,
        deleted_after_ms: int | None = None,
        deleted_before_ms: int | None = None,
        run_id: str | None = None,
    ) -> DeletedResult:
        """A page of the tombstones of deleted jobs, newest first: those of job `job_id`,
        deleted by `run_id`, with the tags a cleanup with `kind`, `target` and `actor`
        selects, deleted in the time window; -32602 for a run the history does not hold."""
        if run_id is not None and not await self.state.run_exists(run_id):
            raise InvalidParams(f"run_id: no run {run_id!r} in the history")
        selector = Selector.build(kind=kind, target=target, actor=actor)
        found, next_cursor = await self.state.tombstones(
            limit=limit,
            cursor=cursor,
            job_id=job_id,
            run_id=run_id,
            tags=selector.required - {SCOPE_TAG},
            deleted_after_ms=deleted_after_ms,
            deleted_before_ms=deleted_before_ms,
        )
        jobs = []
        for row in found:
            names = labels(row["tags"])
            jobs.append(DeletedJob(**row, kind=names.kind, actor=names.actor, target=names.target))
        return DeletedResult(jobs=jobs, next_cursor=next_cursor)
