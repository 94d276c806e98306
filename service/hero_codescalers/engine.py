"""What the service does, on top of one hero_proc client: plain async code.

The engine knows hero_proc (through `HeroProcClient`), the tag scheme and the
state database (through `State`), and nothing of HTTP or JSON-RPC. It owns the
cleanup's lifecycle: one run at a time, in this process and across the
processes of a state directory (the lock, the lease); a run that outlives a
caller who leaves, or that no caller waits for (a background run); when a run
must stop (`_halt`: shutdown, deadline, cancel, its record lost); its status
and its cancel. It hands the work to `cleanup/`, the run's record and log lines
to `record.py` (`Engine.record`, which also reads the records back), what a
status says to `progress.py`, the reads to `reads.py`; submission and health
are here.

Above 350 lines because the lifecycle's steps (lock and lease, a foreground and
a background start, the run's task, its halt, a status, a cancel) read best
beside each other: the retention scheduler starts runs through the same
`cleanup`, and a cancel acts on the same run that `_halt` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from . import __version__, progress, reads
from .cleanup import CleanupRun
from .errors import (
    CleanupRunning,
    HeroProcError,
    InvalidParams,
    NotFound,
    RunFailed,
)
from .heroproc import MAX_LIMIT, HeroProcClient
from .models import (
    CleanupStarted,
    CleanupStatus,
    CleanupSummary,
    HealthResult,
    HeroProcHealth,
    ListResult,
    StatsResult,
    SubmitResult,
)
from .progress import LiveRun
from .record import Recorder, RunEnded, who
from .state import Cancel, RunStart, State
from .tags import Selector, action_name, action_tags, job_tags
from .tuning import PLAN_LIFETIME_S

log = structlog.get_logger(__name__)

HEALTH_TIMEOUT = 1.0  # system.health answers within this, whatever hero_proc does (README)
# Ended background runs whose summary this process keeps for `jobs.cleanup_status`: the
# last few (a summary holds every matched job's id: a million jobs are tens of MB).
KEPT_RUNS = 3
# `jobs.cleanup_cancel` answers once the run has ended, or after this long (seconds).
CANCEL_WAIT_S = 5.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ended(task: asyncio.Task[Any], on_end: Callable[[], None] | None) -> None:
    """A background run's task has ended. How it failed, if it did, is logged, recorded
    and in its status: taken here so that asyncio does not report it again."""
    if not task.cancelled():
        task.exception()
    if on_end is not None:
        on_end()


def input_hash(script: str, input_: Any) -> str:
    """The digest that names an action: same script and input, same action."""
    canonical = json.dumps(
        {"script": script, "input": input_}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CleanupRequest:
    """What a cleanup is asked: its selection, its params as recorded, who asks and why
    (a policy's name for its runs), and what it does besides its selection: the
    orphan-action sweep, a bound on the jobs it matches (`max_jobs`), the time its
    cutoffs were taken (`plan_at_ms`: a dry run writes its plan, the params and the
    jobs it matched), the plan a real run applies (`applying`: its selector `within`
    the plan's jobs; marked applied as the run is recorded, PlanUnusable when it
    cannot be)."""

    selector: Selector
    dry_run: bool
    params: dict[str, Any]
    reason: str | None = None
    peer_uid: int | None = None
    peer_pid: int | None = None
    policy: str | None = None
    sweep_orphans: bool = False
    max_jobs: int | None = None
    plan_at_ms: int | None = None
    applying: str | None = None


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
        self._stopping = False
        self.clock = clock
        self.started_at = time.monotonic()
        self.run_ids: Callable[[], str] = lambda: secrets.token_hex(8)  # a run's id
        self.cancel_wait = CANCEL_WAIT_S  # seconds `cancel` waits for the run's end
        self._cleanup_lock = asyncio.Lock()
        self._run: LiveRun | None = None  # the run holding the lock
        self._kept: dict[str, LiveRun] = {}  # ended background runs, oldest first
        self._detached: set[asyncio.Task[CleanupSummary]] = set()
        # A run's record and log lines, on the engine's clock (tests set it).
        self.record = Recorder(
            state,
            clock=lambda: self.clock(),  # noqa: PLW0108 -- the clock as set at each call
            on_run=on_run,
            plan_lifetime_ms=PLAN_LIFETIME_S * 1000,
            history_days=history_days,
        )

    @property
    def cleanup_running(self) -> bool:
        return self._cleanup_lock.locked()

    @property
    def current_run(self) -> str | None:
        """The id of the run holding this process's cleanup lock, if any."""
        return None if self._run is None else self._run.start.run_id

    def running_error(self, reason: str = "this service is running one") -> CleanupRunning:
        """-32011 for a caller who meets this process's run: `reason`, and which run holds
        the lock (its id, who started it and when, its policy if any)."""
        run = self._run
        if run is None:
            return CleanupRunning(reason)
        start = run.start
        return CleanupRunning(
            f"{reason}: run {start.run_id}",
            run_id=start.run_id,
            started_at_ms=start.started_at_ms,
            peer_uid=start.peer_uid,
            peer_pid=start.peer_pid,
            policy=start.policy,
            background=start.background,
        )

    async def cleanup(self, request: CleanupRequest) -> CleanupSummary:
        """Run one cleanup; CleanupRunning at once if another one holds the lock (in this
        process, or the lease in another), StateUnavailable for a real run when the state
        database cannot be written (nothing is deleted without a record). What it does is
        `request` (see `CleanupRequest`).

        The run is its own task: if the caller goes away (its call is cancelled), the
        run goes on to its end or its deadline and is recorded. Only the service's
        shutdown (after `stop`) cancels it.
        """
        _, task = await self._launch(request)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._stopping:
                task.cancel()  # the shutdown grace ran out: the run records itself
            else:
                self._detached.add(task)  # the caller left: the run goes on
                task.add_done_callback(self._detached.discard)
            raise

    async def start(
        self,
        request: CleanupRequest,
        *,
        ids: bool = True,
        on_end: Callable[[], None] | None = None,
    ) -> CleanupStarted:
        """Start one cleanup in the background (the request of `cleanup`): answered once its
        record is written (the errors of `cleanup` before it deletes anything are raised
        here), it goes on to its end or its deadline, followed with `status` and stopped
        with `cancel`. Without `ids` its summary keeps no id lists. `on_end` is called
        when it has ended, however it ends."""
        run, task = await self._launch(request, background=True, ids=ids)
        task.add_done_callback(lambda done: _ended(done, on_end))
        if run.begun is not None:  # always, for a background run
            await asyncio.shield(run.begun)  # a caller gone meanwhile leaves the run going
        return CleanupStarted(run_id=run.start.run_id, started_at_ms=run.start.started_at_ms)

    async def _launch(
        self, request: CleanupRequest, *, background: bool = False, ids: bool = True
    ) -> tuple[LiveRun, asyncio.Task[CleanupSummary]]:
        """The run of `request`, once this process's lock is taken (CleanupRunning at once
        if another run holds it), started as a task of its own, which releases the lock
        when it ends."""
        run = LiveRun(
            RunStart(
                run_id=self.run_ids(),
                started_at_ms=self.clock(),
                dry_run=request.dry_run,
                params=request.params,
                reason=request.reason,
                policy=request.policy,
                peer_uid=request.peer_uid,
                peer_pid=request.peer_pid,
                background=background,
            ),
            sweep_orphans=request.sweep_orphans,
            max_jobs=request.max_jobs,
            plan_at_ms=request.plan_at_ms if request.dry_run else None,
            applying=request.applying,
            ids=ids,
        )
        if self._cleanup_lock.locked():
            raise self.running_error()
        await self._cleanup_lock.acquire()
        if background:
            run.begun = asyncio.get_running_loop().create_future()
        self._run = run
        task = asyncio.create_task(self._cleanup(run, request.selector))
        # Released when the run's task ends, however it ends (even cancelled unstarted).
        task.add_done_callback(lambda _: self._release(run))
        return run, task

    def _release(self, run: LiveRun) -> None:
        self._run = None
        self._cleanup_lock.release()
        if run.begun is not None and not run.begun.done():
            run.begun.cancel()  # cancelled before it could begin
        if run.start.background and run.end is not None:
            self._kept[run.start.run_id] = run
            while len(self._kept) > KEPT_RUNS:
                del self._kept[next(iter(self._kept))]

    async def _cleanup(self, run: LiveRun, selector: Selector) -> CleanupSummary:
        start = run.start
        fields = {"run_id": start.run_id, **start.params, "dry_run": start.dry_run}
        if start.reason is not None:
            fields["reason"] = start.reason
        if start.policy is not None:
            fields["policy"] = start.policy
        if start.background:
            fields["background"] = True
        await self.record.begin(run, fields)
        t0 = run.t0 = time.monotonic()
        log.info("cleanup_started", **fields, pushdown_tag=selector.pushdown, recorded=run.recorded)
        deadline = t0 + self.deadline
        work = run.work = CleanupRun(
            self.client,
            selector,
            dry_run=start.dry_run,
            page_size=self.page_size,
            halt=lambda: self._halt(deadline, run),
            progress=(lambda tally: self.record.checkpoint(run, tally, fields))
            if run.recorded
            else None,
            sweep_orphans=run.sweep_orphans and not start.dry_run,
            max_jobs=run.max_jobs,
        )
        tally = work.tally
        tally.plan_id = run.applying
        renewal = asyncio.create_task(self.record.renew(run)) if run.recorded else None
        try:
            await work.run()
        except asyncio.CancelledError:
            # Cut short (the shutdown grace ran out): still leave the record.
            tally.complete = False
            tally.errors.append("cancelled: the shutdown grace ran out")
            await self.record.finish(run, tally, t0, fields, "cancelled")
            raise
        except HeroProcError as exc:
            await self.record.failed(run, tally, t0, fields, error=exc.detail, logger=log.error)
            raise
        except Exception:
            # A fault of this service: the run still ends as every run does.
            await self.record.failed(
                run, tally, t0, fields, error="internal error", logger=log.exception
            )
            raise RunFailed(tally.counts()) from None
        finally:
            if renewal is not None:
                renewal.cancel()
        if run.plan_at_ms is not None and run.recorded:
            await self.record.save_plan(run, tally, run.plan_at_ms)
        return await self.record.finish(run, tally, t0, fields)

    def stop(self) -> None:
        """Ask a running cleanup to stop (the service is shutting down): nothing more is
        sent, what is on its way ends within one hero_proc call timeout."""
        self._stopping = True

    def _halt(self, deadline: float, run: LiveRun) -> str | None:
        """Why a run must send nothing more (the service is shutting down, the deadline
        passed, a caller cancelled it, its record or lease cannot be kept up), or None."""
        if self._stopping:
            return "the service is shutting down"
        if time.monotonic() > deadline:
            return f"the deadline of {self.deadline:g}s was reached"
        if run.cancel is not None:
            return run.cancel.reason
        return run.problem

    async def idle(self) -> None:
        """Wait until no cleanup runs (one being cancelled records itself first)."""
        async with self._cleanup_lock:
            pass

    # a run's status, its cancel ------------------------------------------------------

    def _known(self, run_id: str) -> LiveRun | None:
        """The run `run_id` if this process runs it, or ran it in the background and keeps it."""
        run = self._run
        if run is not None and run.start.run_id == run_id:
            return run
        return self._kept.get(run_id)

    async def _record_of(self, run_id: str) -> dict[str, Any]:
        found = await self.state.run(run_id)
        if found is None:
            raise InvalidParams(
                f"run_id: no cleanup run {run_id} in this service's memory or its history "
                f"(finished runs are kept {self.record.history_days} days)"
            )
        return found

    async def status(self, run_id: str) -> CleanupStatus:
        """Where the run `run_id` stands: from this process's memory (its run, or a
        background run it ran and keeps), else from its record; InvalidParams naming it
        when neither knows it. The first call of a pass through the listing asks
        hero_proc's job count (within HEALTH_TIMEOUT, once) to bound what is left."""
        run = self._known(run_id)
        if run is None:
            return progress.of_record(await self._record_of(run_id), self.clock())
        if run.needs_bound:
            try:
                stats = await self.client.stats(
                    timeout=min(HEALTH_TIMEOUT, self.client.timeout), attempts=1
                )
            except HeroProcError:
                pass  # no estimate this time; the next call asks again
            else:
                run.bind(stats.job_count)
        return progress.of_run(run)

    async def cancel(
        self, run_id: str, *, peer_uid: int | None, peer_pid: int | None
    ) -> CleanupStatus:
        """Ask the run `run_id` to stop at its next step, and record who asked: the run
        ends short with a partial summary (outcome `cancelled`). A run of this process is
        waited for up to `cancel_wait` seconds and its status answered (with its summary once it
        has ended); a run of another process sharing the state directory reads the
        cancel from its record at its next checkpoint, and its record is answered. A run
        that has ended is left as it is. InvalidParams naming an unknown run."""
        cancel = Cancel(peer_uid, peer_pid, self.clock())
        run = self._known(run_id)
        if run is None:
            found = await self._record_of(run_id)
            if found["outcome"] is None and await self.state.request_cancel(run_id, cancel):
                log.info("cleanup_cancel_requested", run_id=run_id, **who(cancel), here=False)
                found = await self._record_of(run_id)
            return progress.of_record(found, self.clock())
        if run.end is None and run.cancel is None:
            run.cancel = cancel
            log.info("cleanup_cancel_requested", run_id=run_id, **who(cancel), here=True)
            if run.recorded:
                await self.record.note_cancel(run, cancel)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.cancel_wait):
                await run.ended.wait()
        return progress.of_run(run)

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
