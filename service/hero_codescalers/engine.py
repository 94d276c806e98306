"""Cleanup, submission, listing and counting of codescaler jobs: plain async code.

The engine knows hero_proc (through `HeroProcClient`) and the tag scheme, and
nothing of HTTP or JSON-RPC.

A cleanup pages through hero_proc with the most specific tag as the server-side
filter, re-checks every job exactly (the selector's required tags and cutoff),
deletes each match with `force: true` and then each codescaler action of the
matches, best effort. Offsets shift as jobs are deleted: the next page starts
after the jobs of this pass still there, one job early, on the last one known
present. If hero_proc lists another job there, the listing moved under the run
(someone else deleted jobs) and a further pass finds what the moved window
skipped. A job listed twice is recognised by its id, which only grows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from array import array
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from . import __version__
from .errors import (
    CleanupRunning,
    HeroProcError,
    HeroProcRpcError,
    HeroProcUnavailable,
    InUse,
    NotFound,
)
from .heroproc import MAX_LIMIT, HeroProcClient, JobSummary, action_params
from .models import (
    CleanupSummary,
    CodescalerCounts,
    HealthResult,
    HeroProcCounts,
    HeroProcHealth,
    HistoryEntry,
    JobView,
    ListResult,
    StatsResult,
    SubmitResult,
)
from .tags import (
    ACTION_PREFIX,
    SCOPE_TAG,
    Selector,
    action_name,
    action_tags,
    job_tags,
    labels,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

MAX_PASSES = 3
SLICE = 2_000  # jobs of a page selected before their deletions are sent
SEND_STEPS = 4  # event loop turns given to a slice's deletions to get on the wire
_UNKNOWN = object()  # the outcome of a deletion cut short by cancellation
# Summary fields that hold one entry per job or action: counted, not logged.
_LISTS = {"job_ids", "action_ids", "errors", "foreign_action_ids"}
HEALTH_TIMEOUT = 1.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def input_hash(script: str, input_: Any) -> str:
    """The digest that names an action: same script and input, same action."""
    canonical = json.dumps(
        {"script": script, "input": input_}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def describe(exc: HeroProcError) -> str:
    """A short public reason for a failed deletion."""
    if isinstance(exc, InUse):
        return "in use by another job"
    if isinstance(exc, HeroProcUnavailable):
        return f"hero_proc unavailable ({exc.reason}); outcome unknown"
    if isinstance(exc, HeroProcRpcError):
        return f"hero_proc error {exc.rpc_code}: {exc.rpc_message[:200]}"
    return "hero_proc answered outside the contract"


@dataclass
class _Run:
    """The tally of one cleanup run."""

    selector: Selector
    dry_run: bool
    deadline: float = float("inf")  # time.monotonic() after which the run stops
    job_ids: array[int] = field(default_factory=lambda: array("q"))  # 8 bytes an id
    failed_jobs: set[int] = field(default_factory=set)
    # The codescaler actions of the matched jobs: the name alone when the context is
    # null (the usual case: no tuple a job), else (name, context).
    actions: dict[str | tuple[str, str | None], None] = field(default_factory=dict)
    foreign_actions: dict[str, None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    jobs_deleted: int = 0
    jobs_gone: int = 0
    actions_deleted: int = 0
    actions_gone: int = 0
    actions_in_use: int = 0
    actions_failed: int = 0
    complete: bool = True
    stopped: str | None = None  # why the run stopped early, when it did

    def stop(self, error: str, reason: str | None = None) -> None:
        """The run ends short of complete: `error` says why in the summary; a `reason`
        also means the actions are not attempted (it names why)."""
        self.complete = False
        self.errors.append(error)
        if reason is not None:
            self.stopped = reason
        log.warning("cleanup_stopped", error=error)

    def summary(self, duration_ms: int) -> CleanupSummary:
        return CleanupSummary(
            jobs_deleted=self.jobs_deleted,
            actions_deleted=self.actions_deleted,
            job_ids=self.job_ids.tolist(),
            action_ids=[key if isinstance(key, str) else key[0] for key in self.actions],
            errors=self.errors,
            dry_run=self.dry_run,
            jobs_matched=len(self.job_ids),
            jobs_already_gone=self.jobs_gone,
            jobs_failed=len(self.failed_jobs),
            actions_matched=len(self.actions),
            actions_already_gone=self.actions_gone,
            actions_in_use=self.actions_in_use,
            actions_failed=self.actions_failed,
            foreign_action_ids=list(self.foreign_actions),
            complete=self.complete,
            duration_ms=duration_ms,
        )


@dataclass
class _Walk:
    """Where one pass through the listing is."""

    seen: int = 0  # distinct jobs listed so far
    removed: int = 0  # of those, deleted or found gone
    last_id: int = 0  # the highest id listed (ids only grow)
    last_present: int | None = None  # the last job listed and not removed
    kept: int | None = None  # the last page's last new job that stays (it did not match)
    before: int | None = None  # `last_present` before the last page
    still_there: int | None = None  # the last page's last match that could not be deleted
    fresh: bool = False  # the last page had jobs not seen before
    shifted: bool = False  # the listing moved under the walk: jobs may have been skipped

    @property
    def offset(self) -> int:
        return self.seen - self.removed

    def start_page(self) -> None:
        self.before = self.last_present
        self.kept = self.still_there = None
        self.fresh = False

    def end_page(self) -> None:
        """The page's matches were deleted, but for those up to `still_there`: the last
        job known present is the later of that and the last that did not match."""
        if self.fresh:
            candidates = [i for i in (self.kept, self.still_there) if i is not None]
            self.last_present = max(candidates) if candidates else self.before


def _job_id(job: Any) -> Any:
    return job.get("id") if type(job) is dict else None


class _Stopped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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

    # cleanup -------------------------------------------------------------------

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
        """Run one cleanup; CleanupRunning at once if another one holds the lock."""
        if self._cleanup_lock.locked():
            raise CleanupRunning
        async with self._cleanup_lock:
            record = {
                "started_at_ms": self.clock(),
                "peer_uid": peer_uid,
                "peer_pid": peer_pid,
                "params": params,
            }
            t0 = time.monotonic()
            log.info("cleanup_started", **params, dry_run=dry_run, pushdown_tag=selector.pushdown)
            run = _Run(selector, dry_run, deadline=t0 + self.deadline)
            try:
                await self._run(run)
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
                self._remember(record, "error", duration, error=exc.detail)
                raise
            return self._finish(run, record, t0, log.info, "cleanup_finished")

    def _finish(
        self,
        run: _Run,
        record: dict[str, Any],
        t0: float,
        logger: Callable[..., Any],
        event: str,
    ) -> CleanupSummary:
        """Log the run's counts as `event`, add it to the history, and summarise it."""
        duration = int((time.monotonic() - t0) * 1000)
        summary = run.summary(duration)
        counts = summary.model_dump(exclude=_LISTS)
        logger(event, **record["params"], **counts, errors=len(summary.errors))
        outcome = "ok" if summary.complete and not summary.errors else "partial"
        self._remember(record, outcome, duration, summary=summary)
        return summary

    def stop(self) -> None:
        """Ask a running cleanup to stop at its next step (the service is shutting down)."""
        self._stopping = True

    async def idle(self) -> None:
        """Wait until no cleanup runs (one being cancelled records itself first)."""
        async with self._cleanup_lock:
            pass

    async def _run(self, run: _Run) -> None:
        passes = 1 if run.dry_run else MAX_PASSES
        for number in range(1, passes + 1):
            try:
                shifted = await self._pass(run)
            except _Stopped as stop:
                run.stop(f"stopped: {stop.reason}", stop.reason)
                break
            except HeroProcError as exc:
                if not run.job_ids:
                    raise  # nothing could be done: the caller gets the error itself
                unavailable = isinstance(exc, HeroProcUnavailable)
                run.stop(
                    f"listing stopped: {describe(exc)}",
                    "hero_proc became unavailable" if unavailable else None,
                )
                break
            if not shifted:
                break
            if number == passes:
                # The listing kept moving under this run: say so rather than loop.
                run.stop(f"stopped after {passes} passes: jobs kept disappearing during the run")
        if not run.dry_run:
            if run.stopped is None:
                try:
                    self._check(run)
                except _Stopped as stop:
                    run.stop(f"stopped: {stop.reason}", stop.reason)
            await self._delete_actions(run)

    def _check(self, run: _Run) -> None:
        """Between steps: stop when the service is shutting down or the deadline passed."""
        if self._stopping:
            raise _Stopped("the service is shutting down")
        if time.monotonic() > run.deadline:
            raise _Stopped(f"the deadline of {self.deadline:g}s was reached")

    async def _pass(self, run: _Run) -> bool:
        """One walk through the listing; whether it may have skipped jobs.

        Each page's matches are deleted before the next page is listed, and the next
        page starts after the jobs of this pass still listed: those seen, less those
        deleted or found gone. If someone else deletes listed jobs meanwhile, every
        later position moves and the next page would start too far. So each page
        starts one job early, on the last job known to be still there: when that
        is not what hero_proc lists first, the listing moved, this pass may have
        skipped jobs, and another pass follows. A job listed twice is recognised by
        its id, which only grows.
        """
        walk = _Walk()
        while True:
            self._check(run)
            anchor = walk.last_present
            offset = walk.offset - 1 if anchor is not None else walk.offset
            page = await self.client.job_page(
                run.selector.pushdown, limit=self.page_size, offset=offset
            )
            if anchor is not None and (not page or _job_id(page[0]) != anchor):
                walk.shifted = True
            await self._page(run, walk, page)
            if len(page) < self.page_size:
                return walk.shifted

    async def _page(self, run: _Run, walk: _Walk, page: list[Any]) -> None:
        """Select a page's matches a slice at a time; each slice's deletions are on their
        way while the next slice is selected. All are settled before the page ends."""
        walk.start_page()
        deleting: list[asyncio.Task[None]] = []
        try:
            for start in range(0, len(page), SLICE):
                matches = self._select(run, walk, page[start : start + SLICE])
                if matches and not run.dry_run:
                    deleting.append(asyncio.create_task(self._delete_jobs(run, walk, matches)))
                    for _ in range(SEND_STEPS):  # let the deletions reach hero_proc
                        await asyncio.sleep(0)
            if deleting:
                await asyncio.gather(*deleting)
        except BaseException:
            for task in deleting:
                task.cancel()
            await asyncio.gather(*deleting, return_exceptions=True)
            raise
        walk.end_page()

    @staticmethod
    def _select(run: _Run, walk: _Walk, page: list[Any]) -> list[int]:
        """The ids of the page's matches, each recorded once; updates what the walk has seen.

        Works on the jobs as hero_proc sent them (this loop sees every listed job):
        a job must have an integer id and a list of tags to be seen at all, a string
        action to match, and an integer `created_at_ms` to pass an age filter.
        """
        matches: list[int] = []
        kept = None
        actions = run.actions
        required = run.selector.required
        cutoff = run.selector.created_before_ms
        failed = run.failed_jobs
        last_id = walk.last_id
        fresh = 0
        for job in page:
            try:
                job_id = job["id"]
                tags = job["tags"]
            except (KeyError, TypeError):
                job_id, tags = _job_id(job), None
            if type(job_id) is not int or job_id <= last_id:
                continue  # not a job, or seen in this pass already (the window started early)
            last_id = job_id
            fresh += 1
            if (
                type(tags) is not list
                or not required.issubset(tags)
                or (failed and job_id in failed)
            ):
                kept = job_id
                continue
            if cutoff is not None:
                created = job.get("created_at_ms")
                if type(created) is not int or created > cutoff:
                    kept = job_id
                    continue
            action = job.get("action_id")
            if type(action) is not str:
                kept = job_id
                continue  # a job without its action cannot be accounted for: not ours to delete
            matches.append(job_id)
            context = job.get("context")
            if context is None and action in actions:
                continue  # the common case: an action already recorded
            if not action.startswith(ACTION_PREFIX):
                run.foreign_actions[action] = None
            elif context is None:
                actions[action] = None
            else:
                actions[(action, context if type(context) is str else None)] = None
        run.job_ids.extend(matches)
        walk.last_id = last_id
        walk.seen += fresh
        if kept is not None:
            walk.kept = kept
        walk.fresh = walk.fresh or fresh > 0
        return matches

    async def _delete_jobs(self, run: _Run, walk: _Walk, jobs: list[int]) -> None:
        """Delete `jobs`, tally the outcomes, and tell the walk how many left the listing."""
        calls = [("job.delete", {"id": job_id, "force": True}) for job_id in jobs]
        try:
            outcomes = await self.client.call_many(calls)
        except BaseException:
            self._tally(run, walk, jobs, [_UNKNOWN] * len(jobs))  # cancelled mid-way
            raise
        self._tally(run, walk, jobs, outcomes)

    @staticmethod
    def _tally(run: _Run, walk: _Walk, jobs: list[int], outcomes: list[Any]) -> None:
        deleted = gone = 0
        still_there = None  # the highest id of the page's matches that could not be deleted
        for job_id, outcome in zip(jobs, outcomes, strict=True):
            if type(outcome) is dict or (
                not isinstance(outcome, HeroProcError) and outcome is not _UNKNOWN
            ):
                deleted += 1
            elif isinstance(outcome, NotFound):
                gone += 1
            else:
                still_there = job_id
                run.failed_jobs.add(job_id)
                reason = (
                    describe(outcome)
                    if isinstance(outcome, HeroProcError)
                    else "stopped before hero_proc answered; outcome unknown"
                )
                run.errors.append(f"job {job_id}: {reason}")
                log.warning("cleanup_job_failed", job_id=job_id, reason=reason)
        run.jobs_deleted += deleted
        run.jobs_gone += gone
        walk.removed += deleted + gone
        if still_there is not None:
            walk.still_there = max(still_there, walk.still_there or 0)

    async def _delete_actions(self, run: _Run) -> None:
        if not run.actions:
            return
        if run.stopped is not None:
            run.actions_failed = len(run.actions)
            run.errors.append(f"{len(run.actions)} actions not attempted: {run.stopped}")
            return
        keys: list[tuple[str, str | None]] = [
            (key, None) if isinstance(key, str) else key for key in run.actions
        ]
        calls = [("action.delete", action_params(name, ctx)) for name, ctx in keys]
        outcomes = await self.client.call_many(calls)
        for (name, _), outcome in zip(keys, outcomes, strict=True):
            if isinstance(outcome, NotFound):
                run.actions_gone += 1
                continue
            if not isinstance(outcome, HeroProcError):
                run.actions_deleted += 1
                continue
            if isinstance(outcome, InUse):
                run.actions_in_use += 1
            else:
                run.actions_failed += 1
            reason = describe(outcome)
            run.errors.append(f"action {name}: {reason}")
            log.warning("cleanup_action_failed", action=name, reason=reason)

    def _remember(
        self,
        record: dict[str, Any],
        outcome: str,
        duration_ms: int,
        *,
        summary: CleanupSummary | None = None,
        error: str | None = None,
    ) -> None:
        counts: dict[str, Any] = {}
        if summary is not None:
            counts = {
                "jobs_matched": summary.jobs_matched,
                "jobs_deleted": summary.jobs_deleted,
                "jobs_failed": summary.jobs_failed,
                "actions_deleted": summary.actions_deleted,
            }
        self.history.appendleft(
            HistoryEntry(
                **record,
                finished_at_ms=self.clock(),
                outcome=outcome,
                error=error,
                duration_ms=duration_ms,
                **counts,
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
        offset, last_id = (int(part) for part in cursor.split(":")) if cursor else (0, 0)
        page_size = min(MAX_LIMIT, max(limit, 1_000))
        jobs: list[JobView] = []
        while True:
            page = await self.client.job_list(
                tag=selector.pushdown, status=status, limit=page_size, offset=offset
            )
            for position, job in enumerate(page):
                if job.id <= last_id or not selector.matches(job.tags, job.created_at_ms):
                    continue
                jobs.append(_view(job))
                if len(jobs) == limit:
                    return ListResult(jobs=jobs, next_cursor=f"{offset + position + 1}:{job.id}")
            offset += len(page)
            if len(page) < page_size:
                return ListResult(jobs=jobs, next_cursor=None)

    async def stats(self) -> StatsResult:
        hero = await self.client.stats()
        jobs_by_kind: Counter[str] = Counter()
        jobs_by_status: Counter[str] = Counter()
        async for job in _every(self.client.job_list):
            if SCOPE_TAG in job.tags:
                jobs_by_kind[labels(job.tags).kind or "unknown"] += 1
                jobs_by_status[job.status or "unknown"] += 1
        actions_by_kind: Counter[str] = Counter()
        async for action in _every(self.client.action_list):
            if SCOPE_TAG in action.spec.tags:
                actions_by_kind[labels(action.spec.tags).kind or "unknown"] += 1
        return StatsResult(
            codescaler=CodescalerCounts(
                jobs=jobs_by_kind.total(),
                actions=actions_by_kind.total(),
                jobs_by_kind=dict(sorted(jobs_by_kind.items())),
                actions_by_kind=dict(sorted(actions_by_kind.items())),
                jobs_by_status=dict(sorted(jobs_by_status.items())),
            ),
            hero_proc=HeroProcCounts(
                job_count=hero.job_count,
                action_count=hero.action_count,
                running_count=hero.running_count,
            ),
        )

    async def health(self) -> HealthResult:
        """Version, uptime, and whether hero_proc answers a quick `stats` in time."""
        t0 = time.monotonic()
        try:
            await self.client.stats(timeout=min(HEALTH_TIMEOUT, self.client.timeout))
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


async def _every(list_page: Callable[..., Awaitable[list[T]]]) -> AsyncIterator[T]:
    """Every codescaler-tagged item of a hero_proc listing, a full page at a time."""
    offset = 0
    while True:
        page = await list_page(tag=SCOPE_TAG, limit=MAX_LIMIT, offset=offset)
        for item in page:
            yield item
        offset += len(page)
        if len(page) < MAX_LIMIT:
            return


def _view(job: JobSummary) -> JobView:
    lab = labels(job.tags)
    return JobView(
        id=job.id,
        action_id=job.action_id,
        status=job.status,
        created_at_ms=job.created_at_ms,
        finished_at_ms=job.finished_at_ms,
        tags=job.tags,
        kind=lab.kind,
        actor=lab.actor,
        target=lab.target,
    )
