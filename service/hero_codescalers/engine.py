"""What the service does, on top of one hero_proc client: plain async code.

The engine knows hero_proc (through `HeroProcClient`) and the tag scheme, and
nothing of HTTP or JSON-RPC. It owns the cleanup's lifecycle (one run at a time,
a run that outlives a caller who leaves, its log lines and its history entry),
and hands the work to `cleanup/`; the reads are in `reads.py`; submission and
health are here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from . import __version__, reads
from .cleanup import CleanupRun
from .cleanup.tally import Tally
from .errors import CleanupRunning, HeroProcError, NotFound, RunFailed
from .heroproc import MAX_LIMIT, HeroProcClient
from .models import (
    CleanupSummary,
    HealthResult,
    HeroProcHealth,
    HistoryEntry,
    ListResult,
    StatsResult,
    SubmitResult,
)
from .tags import Selector, action_name, action_tags, job_tags

log = structlog.get_logger(__name__)

HEALTH_TIMEOUT = 1.0  # system.health answers within this, whatever hero_proc does (README)
# Summary fields that hold one entry per job or action: counted, not logged.
_LISTS = {"job_ids", "action_ids", "errors", "foreign_action_ids"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def input_hash(script: str, input_: Any) -> str:
    """The digest that names an action: same script and input, same action."""
    canonical = json.dumps(
        {"script": script, "input": input_}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Engine:
    """What the service does, on top of one hero_proc client."""

    def __init__(
        self,
        client: HeroProcClient,
        *,
        page_size: int = MAX_LIMIT,
        history_size: int = 50,
        deadline: float = 900.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.client = client
        self.page_size = min(page_size, MAX_LIMIT)
        self.deadline = deadline
        self._stopping = False
        self.clock = clock
        self.started_at = time.monotonic()
        self.history: deque[HistoryEntry] = deque(maxlen=history_size)
        self._cleanup_lock = asyncio.Lock()
        self._detached: set[asyncio.Task[CleanupSummary]] = set()

    @property
    def cleanup_running(self) -> bool:
        return self._cleanup_lock.locked()

    async def cleanup(
        self,
        selector: Selector,
        *,
        dry_run: bool,
        params: dict[str, Any],
        peer_uid: int | None = None,
        peer_pid: int | None = None,
    ) -> CleanupSummary:
        """Run one cleanup; CleanupRunning at once if another one holds the lock.

        The run is its own task: if the caller goes away (its call is cancelled), the
        run goes on to its end or its deadline and is recorded. Only the service's
        shutdown (after `stop`) cancels it.
        """
        if self._cleanup_lock.locked():
            raise CleanupRunning
        await self._cleanup_lock.acquire()
        task = asyncio.create_task(self._cleanup(selector, dry_run, params, peer_uid, peer_pid))
        # Released when the run's task ends, however it ends (even cancelled unstarted).
        task.add_done_callback(lambda _: self._cleanup_lock.release())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._stopping:
                task.cancel()  # the shutdown grace ran out: the run records itself
            else:
                self._detached.add(task)  # the caller left: the run goes on
                task.add_done_callback(self._detached.discard)
            raise

    async def _cleanup(
        self,
        selector: Selector,
        dry_run: bool,
        params: dict[str, Any],
        peer_uid: int | None,
        peer_pid: int | None,
    ) -> CleanupSummary:
        record = {
            "started_at_ms": self.clock(),
            "peer_uid": peer_uid,
            "peer_pid": peer_pid,
            "params": params,
        }
        t0 = time.monotonic()
        log.info("cleanup_started", **params, dry_run=dry_run, pushdown_tag=selector.pushdown)
        deadline = t0 + self.deadline
        work = CleanupRun(
            self.client,
            selector,
            dry_run=dry_run,
            page_size=self.page_size,
            halt=lambda: self._halt(deadline),
        )
        run = work.tally
        try:
            await work.run()
        except asyncio.CancelledError:
            # Cut short (the shutdown grace ran out): still leave the record.
            run.complete = False
            run.errors.append("cancelled: the shutdown grace ran out")
            self._finish(run, record, t0, log.warning, "cleanup_cancelled")
            raise
        except HeroProcError as exc:
            duration = int((time.monotonic() - t0) * 1000)
            log.error(
                "cleanup_failed",
                **params,
                dry_run=dry_run,
                error=exc.detail,
                duration_ms=duration,
            )
            self._remember(record, "error", duration, error=exc.detail, counts=run.counts())
            raise
        except Exception:
            # A fault of this service: the run still ends as every run does.
            duration = int((time.monotonic() - t0) * 1000)
            counts = run.counts()
            log.exception(
                "cleanup_failed",
                **params,
                dry_run=dry_run,
                error="internal error",
                duration_ms=duration,
                **counts,
            )
            self._remember(record, "error", duration, error="internal error", counts=counts)
            raise RunFailed(counts) from None
        return self._finish(run, record, t0, log.info, "cleanup_finished")

    def _finish(
        self,
        run: Tally,
        record: dict[str, Any],
        t0: float,
        logger: Callable[..., Any],
        event: str,
    ) -> CleanupSummary:
        """Log the run's counts as `event`, add it to the history, and summarise it."""
        duration = int((time.monotonic() - t0) * 1000)
        summary = run.summary(duration)
        counts = summary.model_dump(exclude=_LISTS)
        logger(event, **record["params"], **counts, errors=len(summary.errors), passes=run.passes)
        outcome = "ok" if summary.complete and not summary.errors else "partial"
        self._remember(record, outcome, duration, summary=summary)
        return summary

    def stop(self) -> None:
        """Ask a running cleanup to stop (the service is shutting down): nothing more is
        sent, what is on its way ends within one hero_proc call timeout."""
        self._stopping = True

    def _halt(self, deadline: float) -> str | None:
        """Why a run must send nothing more (the service is shutting down, the deadline
        passed), or None."""
        if self._stopping:
            return "the service is shutting down"
        if time.monotonic() > deadline:
            return f"the deadline of {self.deadline:g}s was reached"
        return None

    async def idle(self) -> None:
        """Wait until no cleanup runs (one being cancelled records itself first)."""
        async with self._cleanup_lock:
            pass

    def _remember(
        self,
        record: dict[str, Any],
        outcome: str,
        duration_ms: int,
        *,
        summary: CleanupSummary | None = None,
        error: str | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        entry: dict[str, Any] = {}
        if summary is not None:
            counts = summary.model_dump(
                include={"jobs_matched", "jobs_deleted", "jobs_failed", "actions_deleted"}
            )
        if counts is not None:
            keep = ("jobs_matched", "jobs_deleted", "jobs_failed", "actions_deleted")
            entry = {k: counts[k] for k in keep}
        self.history.appendleft(
            HistoryEntry(
                **record,
                finished_at_ms=self.clock(),
                outcome=outcome,
                error=error,
                duration_ms=duration_ms,
                **entry,
            )
        )

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

    async def list_jobs(
        self, selector: Selector, *, status: str | None, limit: int, cursor: str | None
    ) -> ListResult:
        """Up to `limit` matching jobs after the cursor's job (see `reads.list_jobs`)."""
        return await reads.list_jobs(
            self.client, selector, status=status, limit=limit, cursor=cursor
        )

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
