"""What the service does, on top of one hero_proc client: plain async code.

The engine knows hero_proc (through `HeroProcClient`), the tag scheme and the
state database (through `State`), and nothing of HTTP or JSON-RPC. It owns the
cleanup's lifecycle (one run at a time, in this process and across the
processes of a state directory; a run that outlives a caller who leaves; its log
lines; its record, written before it deletes anything, checkpointed after each
page and completed at its end), and hands the work to `cleanup/`; the reads are
in `reads.py`; submission and health are here.

Above 350 lines because the lifecycle's steps (lock and lease, record, checkpoint,
end, failure) read best beside each other: the retention scheduler will start runs
through the same `cleanup`, so its one entry point stays here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from . import __version__, reads
from .cleanup import CleanupRun
from .cleanup.tally import Tally
from .errors import (
    CleanupRunning,
    HeroProcError,
    NotFound,
    PlanUnusable,
    RunFailed,
    StateUnavailable,
)
from .heroproc import MAX_LIMIT, HeroProcClient
from .models import (
    CleanupSummary,
    HealthResult,
    HeroProcHealth,
    HistoryEntry,
    HistoryResult,
    ListResult,
    StatsResult,
    SubmitResult,
)
from .state import Plan, RunStart, State
from .tags import Selector, action_name, action_tags, job_tags
from .tuning import PLAN_LIFETIME_S

log = structlog.get_logger(__name__)

HEALTH_TIMEOUT = 1.0  # system.health answers within this, whatever hero_proc does (README)
# Summary fields that hold one entry per job or action: counted, not logged.
_LISTS = {"job_ids", "action_ids", "errors", "foreign_action_ids", "actions_in_use_ids"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _entry(row: dict[str, Any]) -> HistoryEntry:
    """A run's record as `jobs.cleanup_history` shows it."""
    counts = row["counts"]
    return HistoryEntry(
        **{k: row[k] for k in HistoryEntry.model_fields if k in row},
        **{k: counts[k] for k in HistoryEntry.model_fields if k in counts and k not in row},
    )


def input_hash(script: str, input_: Any) -> str:
    """The digest that names an action: same script and input, same action."""
    canonical = json.dumps(
        {"script": script, "input": input_}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunEnded:
    """A cleanup run that ended, as the metrics see it."""

    policy: str | None  # None: a caller's run
    outcome: str
    dry_run: bool
    finished_at_ms: int
    duration_ms: int
    summary: CleanupSummary | None  # None when it failed as a whole


@dataclass
class _Run:
    """A cleanup run under way: what it was asked, whether it has a record, and what
    stops it besides the deadline and the shutdown (the state database)."""

    start: RunStart
    recorded: bool = False
    problem: str | None = None  # set when its record or lease cannot be kept up
    plan_at_ms: int | None = None  # a dry run that writes its plan: its cutoffs' time
    applying: str | None = None  # the plan the run applies


class Engine:
    """What the service does, on top of one hero_proc client and the state database."""

    def __init__(
        self,
        client: HeroProcClient,
        state: State,
        *,
        page_size: int = MAX_LIMIT,
        deadline: float = 900.0,
        history_days: int = 90,
        clock: Callable[[], int] = now_ms,
        on_run: Callable[[RunEnded], None] | None = None,
    ) -> None:
        self.client = client
        self.state = state
        self.page_size = min(page_size, MAX_LIMIT)
        self.deadline = deadline
        self.history_days = history_days
        self._stopping = False
        self.clock = clock
        self.on_run = on_run
        self.started_at = time.monotonic()
        self._cleanup_lock = asyncio.Lock()
        self._current: str | None = None  # the id of the run holding the lock
        self._detached: set[asyncio.Task[CleanupSummary]] = set()
        self.plan_lifetime_ms = PLAN_LIFETIME_S * 1000

    @property
    def cleanup_running(self) -> bool:
        return self._cleanup_lock.locked()

    @property
    def current_run(self) -> str | None:
        """The id of the run holding this process's cleanup lock, if any."""
        return self._current

    async def cleanup(
        self,
        selector: Selector,
        *,
        dry_run: bool,
        params: dict[str, Any],
        reason: str | None = None,
        peer_uid: int | None = None,
        peer_pid: int | None = None,
        policy: str | None = None,
        sweep_orphans: bool = False,
        max_jobs: int | None = None,
        plan_at_ms: int | None = None,
        applying: str | None = None,
    ) -> CleanupSummary:
        """Run one cleanup; CleanupRunning at once if another one holds the lock (in this
        process, or the lease in another), StateUnavailable for a real run when the state
        database cannot be written (nothing is deleted without a record).

        `max_jobs` bounds the jobs it matches. A dry run given `plan_at_ms` (the time its
        selector's cutoffs were taken) writes its plan: `params` and the jobs it matched.
        `applying` is the plan a real run applies (its selector `within` the plan's jobs):
        marked applied as the run is recorded, PlanUnusable when it cannot be.

        The run is its own task: if the caller goes away (its call is cancelled), the
        run goes on to its end or its deadline and is recorded. Only the service's
        shutdown (after `stop`) cancels it.
        """
        if self._cleanup_lock.locked():
            raise CleanupRunning("this service is running one", run_id=self._current)
        await self._cleanup_lock.acquire()
        run = _Run(
            RunStart(
                run_id=secrets.token_hex(8),
                started_at_ms=self.clock(),
                dry_run=dry_run,
                params=params,
                reason=reason,
                policy=policy,
                peer_uid=peer_uid,
                peer_pid=peer_pid,
            ),
            plan_at_ms=plan_at_ms if dry_run else None,
            applying=applying,
        )
        self._current = run.start.run_id
        task = asyncio.create_task(self._cleanup(run, selector, sweep_orphans, max_jobs))
        # Released when the run's task ends, however it ends (even cancelled unstarted).
        task.add_done_callback(lambda _: self._release())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._stopping:
                task.cancel()  # the shutdown grace ran out: the run records itself
            else:
                self._detached.add(task)  # the caller left: the run goes on
                task.add_done_callback(self._detached.discard)
            raise

    def _release(self) -> None:
        self._current = None
        self._cleanup_lock.release()

    async def _cleanup(
        self, run: _Run, selector: Selector, sweep_orphans: bool, max_jobs: int | None
    ) -> CleanupSummary:
        start = run.start
        fields = {"run_id": start.run_id, **start.params, "dry_run": start.dry_run}
        if start.reason is not None:
            fields["reason"] = start.reason
        if start.policy is not None:
            fields["policy"] = start.policy
        await self._record_start(run, fields)
        t0 = time.monotonic()
        log.info("cleanup_started", **fields, pushdown_tag=selector.pushdown, recorded=run.recorded)
        deadline = t0 + self.deadline
        work = CleanupRun(
            self.client,
            selector,
            dry_run=start.dry_run,
            page_size=self.page_size,
            halt=lambda: self._halt(deadline, run),
            progress=(lambda tally: self._checkpoint(run, tally, fields)) if run.recorded else None,
            sweep_orphans=sweep_orphans and not start.dry_run,
            max_jobs=max_jobs,
        )
        tally = work.tally
        tally.plan_id = run.applying
        renewal = asyncio.create_task(self._renew(run)) if run.recorded else None
        try:
            await work.run()
        except asyncio.CancelledError:
            # Cut short (the shutdown grace ran out): still leave the record.
            tally.complete = False
            tally.errors.append("cancelled: the shutdown grace ran out")
            await self._finish(run, tally, t0, fields, "cancelled")
            raise
        except HeroProcError as exc:
            await self._failed(run, tally, t0, fields, error=exc.detail, logger=log.error)
            raise
        except Exception:
            # A fault of this service: the run still ends as every run does.
            await self._failed(run, tally, t0, fields, error="internal error", logger=log.exception)
            raise RunFailed(tally.counts()) from None
        finally:
            if renewal is not None:
                renewal.cancel()
        if run.plan_at_ms is not None and run.recorded:
            await self._save_plan(run, tally, run.plan_at_ms)
        return await self._finish(run, tally, t0, fields)

    async def _save_plan(self, run: _Run, tally: Tally, at_ms: int) -> None:
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

    async def _record_start(self, run: _Run, fields: dict[str, Any]) -> None:
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

    async def _checkpoint(self, run: _Run, tally: Tally, fields: dict[str, Any]) -> None:
        """After each page: the run's counts so far in its record, the lease renewed."""
        counts = tally.counts()
        try:
            held = await self.state.checkpoint(run.start.run_id, counts, len(tally.errors))
        except StateUnavailable as exc:
            run.problem = f"the state database cannot be written ({exc.reason})"
        else:
            if not held:
                run.problem = "another process took the cleanup lease over"
        log.info("cleanup_progress", run_id=run.start.run_id, **counts)

    async def _renew(self, run: _Run) -> None:
        """Renew the run's lease while it goes (a page may take longer than the lease)."""
        while run.problem is None:
            await asyncio.sleep(self.state.lease_ttl_ms / 1000 / 3)
            try:
                if not await self.state.renew():
                    run.problem = "another process took the cleanup lease over"
            except StateUnavailable as exc:
                run.problem = f"the state database cannot be written ({exc.reason})"

    async def _failed(
        self,
        run: _Run,
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
            error=error,
        )

    async def _finish(
        self,
        run: _Run,
        tally: Tally,
        t0: float,
        fields: dict[str, Any],
        outcome: str | None = None,
    ) -> CleanupSummary:
        """Log the run's counts, complete its record, and summarise it. Its outcome, unless
        given: `ok` when complete without errors, else `partial`."""
        duration = int((time.monotonic() - t0) * 1000)
        summary = tally.summary(duration, run_id=run.start.run_id)
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
            summary=summary,
        )
        return summary

    async def _record_end(
        self,
        run: _Run,
        outcome: str,
        *,
        duration_ms: int,
        counts: dict[str, int],
        errors_count: int,
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
                )
            except StateUnavailable as exc:
                log.error("cleanup_not_recorded", run_id=start.run_id, error=exc.reason)
        if self.on_run is not None:
            self.on_run(
                RunEnded(start.policy, outcome, start.dry_run, self.clock(), duration_ms, summary)
            )

    def stop(self) -> None:
        """Ask a running cleanup to stop (the service is shutting down): nothing more is
        sent, what is on its way ends within one hero_proc call timeout."""
        self._stopping = True

    def _halt(self, deadline: float, run: _Run) -> str | None:
        """Why a run must send nothing more (the service is shutting down, the deadline
        passed, its record or lease cannot be kept up), or None."""
        if self._stopping:
            return "the service is shutting down"
        if time.monotonic() > deadline:
            return f"the deadline of {self.deadline:g}s was reached"
        return run.problem

    async def idle(self) -> None:
        """Wait until no cleanup runs (one being cancelled records itself first)."""
        async with self._cleanup_lock:
            pass

    # the state database --------------------------------------------------------------

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

    # submit, list, stats, health ------------------------------------------------

    async def submit(
        self, *, kind: str, actor: str, target: str | None, script: str, input_: Any
    ) -> SubmitResult:
        """Enqueue a job, creating its action unless an identical one exists."""
        name = action_name(kind, input_hash(script, input_))
        extra_tags = job_tags(actor, target)
        deduplicated = True
        for attempt in range(2):
            try:
                await self.client.action_get(name)
            except NotFound:
                deduplicated = False
                await self.client.action_set(name, script=script, tags=action_tags(kind))
            try:
                job_id = await self.client.job_create(name, tags=extra_tags)
                break
            except NotFound:
                # A cleanup removed the action between the two calls: make it again.
                if attempt:
                    raise
        return SubmitResult(
            job_id=job_id,
            action_id=name,
            tags=[*action_tags(kind), *extra_tags],
            deduplicated=deduplicated,
        )

    async def list_jobs(self, selector: Selector, *, limit: int, cursor: str | None) -> ListResult:
        """Up to `limit` matching jobs after the cursor's job (see `reads.list_jobs`)."""
        return await reads.list_jobs(self.client, selector, limit=limit, cursor=cursor)

    async def stats(self) -> StatsResult:
        """hero_proc's counts and the codescaler jobs and actions (see `reads.stats`)."""
        return await reads.stats(self.client)

    async def health(self) -> HealthResult:
        """Version, uptime, and whether hero_proc answers a quick `stats` in time: one
        try, within `HEALTH_TIMEOUT`, whatever hero_proc does."""
        t0 = time.monotonic()
        try:
            await self.client.stats(timeout=min(HEALTH_TIMEOUT, self.client.timeout), attempts=1)
        except HeroProcError:
            latency = None
        else:
            latency = round((time.monotonic() - t0) * 1000, 3)
        return HealthResult(
            status="ok" if latency is not None else "degraded",
            version=__version__,
            uptime_s=round(time.monotonic() - self.started_at, 3),
            hero_proc=HeroProcHealth(
                socket=str(self.client.socket_path),
                reachable=latency is not None,
                latency_ms=latency,
            ),
        )
