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
skipped. A job listed twice is recognised by its id, which only grows. A pass
ends on a page that brings no job it has not seen (an empty page, at the latest),
never on a short page.

Nothing is counted as deleted unless hero_proc answered `{deleted: true}` for
that very call, or (for a call whose outcome is unknown: the connection dropped,
tries ran out, the answer was outside the contract) a later `job.get` /
`action.get` finds it gone. Listed jobs are checked one by one: a malformed job
is skipped and counted, never fatal. The deadline and a shutdown stop the run
within one hero_proc call timeout, in the middle of a page too: what was not
sent is reported as not attempted.
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
    HeroProcProtocolError,
    HeroProcRpcError,
    HeroProcUnavailable,
    InUse,
    NotAttempted,
    NotFound,
    RunFailed,
    quote,
)
from .heroproc import (
    MAX_ID,
    MAX_LIMIT,
    HeroProcClient,
    JobSummary,
    action_params,
    parse_job,
    sample,
    transient,
    valid_tags,
)
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
# Summary fields that hold one entry per job or action: counted, not logged.
_LISTS = {"job_ids", "action_ids", "errors", "foreign_action_ids"}
HEALTH_TIMEOUT = 1.0
# jobs per hero_proc page `jobs.list` asks for, at least (`limit` if more): small
# pages keep hero_proc's and this loop's turns short under a flood (make soak-flood:
# admin health p99 120 ms with 1,000, 76 ms with 250); LIST_PAGES bounds one call.
LIST_PAGE = 250
LIST_PAGES = 40  # hero_proc pages one `jobs.list` call reads at most (then a cursor)
# `stats` lists in pages of STATS_PAGE: each page is counted without yielding to the
# event loop, so a smaller page keeps other callers' latency low while a walk runs
# (make soak-flood, stats only: an admin's health p99 188 ms with 10,000-job pages,
# 66 ms with 1,000); a walk is shared and reused, so its extra round trips cost
# little. At most STATS_PAGES pages per listing (10 million items).
STATS_PAGE = 1_000
STATS_PAGES = 10_000
OUTSIDE = "hero_proc answered outside its contract"
_CUT = object()  # the outcome of a deletion cut short (cancelled, or a fault of this code)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def input_hash(script: str, input_: Any) -> str:
    """The digest that names an action: same script and input, same action."""
    canonical = json.dumps(
        {"script": script, "input": input_}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def describe(outcome: Any) -> str:
    """A short public reason for a deletion that did not succeed."""
    if isinstance(outcome, InUse):
        reason = "in use by another job"
    elif isinstance(outcome, HeroProcUnavailable):
        reason = f"hero_proc unavailable ({outcome.reason})"
    elif isinstance(outcome, HeroProcRpcError):
        reason = f"hero_proc error {outcome.rpc_code}: {outcome.rpc_message}"
    elif isinstance(outcome, HeroProcProtocolError):
        reason = f"{OUTSIDE} ({outcome.detail})"
    elif isinstance(outcome, NotAttempted):
        reason = f"not attempted: {outcome.reason}"
    elif outcome is _CUT:
        reason = "stopped before hero_proc answered"
    else:
        reason = f"{OUTSIDE} (a result of the wrong shape)"
    return reason


def deleted(outcome: Any) -> bool:
    """Whether a delete's outcome is the contract's success: `{deleted: true}`."""
    return type(outcome) is dict and outcome.get("deleted") is True


def unknown(outcome: Any) -> bool:
    """Whether a delete that did not succeed may still have been carried out: no answer,
    hero_proc's internal error, or an answer outside the contract."""
    if isinstance(outcome, HeroProcRpcError):
        return transient(outcome)
    return not isinstance(outcome, NotAttempted)


@dataclass
class _Run:
    """The tally of one cleanup run."""

    selector: Selector
    dry_run: bool
    deadline: float = float("inf")  # time.monotonic() after which the run stops
    job_ids: array[int] = field(default_factory=lambda: array("q"))  # 8 bytes an id
    failed_jobs: set[int] = field(default_factory=set)  # not deleted: not matched again
    # The codescaler actions of the matched jobs: the name alone when the context is
    # null (the usual case: no tuple a job), else (name, context).
    actions: dict[str | tuple[str, str | None], None] = field(default_factory=dict)
    foreign_actions: dict[str, None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    jobs_deleted: int = 0
    jobs_gone: int = 0
    jobs_failed: int = 0
    jobs_not_attempted: int = 0
    jobs_settled: int = 0
    # Deletions sent whose outcome is unknown, until `job.get` settles them: id -> reason.
    jobs_unknown: dict[int, str] = field(default_factory=dict)
    malformed_ids: set[int] = field(default_factory=set)  # malformed jobs with a valid id
    malformed_idless: int = 0  # the most listed without a valid id in one pass
    actions_deleted: int = 0
    actions_gone: int = 0
    actions_in_use: int = 0
    actions_failed: int = 0
    actions_not_attempted: int = 0
    actions_settled: int = 0
    actions_unknown: dict[tuple[str, str | None], str] = field(default_factory=dict)
    not_attempted: str | None = None  # why calls were not sent, when some were not
    passes: int = 0  # walks through the listing started
    malformed_noted: bool = False  # the errors line on malformed jobs is written
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

    def fail_job(self, job_id: int, reason: str) -> None:
        self.jobs_failed += 1
        self.errors.append(f"job {job_id}: {reason}")
        log.warning("cleanup_job_failed", job_id=job_id, reason=reason)

    def fail_action(self, name: str, reason: str, *, in_use: bool = False) -> None:
        if in_use:
            self.actions_in_use += 1
        else:
            self.actions_failed += 1
        self.errors.append(f"action {quote(name)}: {reason}")
        log.warning("cleanup_action_failed", action=quote(name), reason=reason)

    @property
    def jobs_malformed(self) -> int:
        return len(self.malformed_ids) + self.malformed_idless

    def close(self) -> None:
        """Turn what is still open into lines of `errors` (idempotent): outcomes never
        settled, calls never sent, malformed jobs skipped."""
        for job_id, reason in self.jobs_unknown.items():
            self.fail_job(job_id, f"outcome unknown: {reason}")
        self.jobs_unknown.clear()
        for (name, _), reason in self.actions_unknown.items():
            self.fail_action(name, f"outcome unknown: {reason}")
        self.actions_unknown.clear()
        if self.not_attempted is not None:
            self.complete = False
            if self.jobs_not_attempted:
                self.errors.append(
                    f"{self.jobs_not_attempted} matched jobs not attempted: {self.not_attempted}"
                )
            self.not_attempted = None
        if self.jobs_malformed and not self.malformed_noted:
            self.malformed_noted = True
            self.complete = False
            self.errors.append(
                f"{self.jobs_malformed} listed jobs skipped: malformed "
                "(no integer id, tags that are not strings, or no string action)"
            )

    def summary(self, duration_ms: int) -> CleanupSummary:
        self.close()
        return CleanupSummary(
            jobs_deleted=self.jobs_deleted,
            actions_deleted=self.actions_deleted,
            job_ids=self.job_ids.tolist(),
            action_ids=[key if isinstance(key, str) else key[0] for key in self.actions],
            errors=self.errors,
            dry_run=self.dry_run,
            jobs_matched=len(self.job_ids),
            jobs_already_gone=self.jobs_gone,
            jobs_failed=self.jobs_failed,
            jobs_not_attempted=self.jobs_not_attempted,
            jobs_settled_gone=self.jobs_settled,
            jobs_skipped_malformed=self.jobs_malformed,
            actions_matched=len(self.actions),
            actions_already_gone=self.actions_gone,
            actions_in_use=self.actions_in_use,
            actions_failed=self.actions_failed,
            actions_not_attempted=self.actions_not_attempted,
            actions_settled_gone=self.actions_settled,
            foreign_action_ids=list(self.foreign_actions),
            complete=self.complete,
            duration_ms=duration_ms,
        )

    def counts(self) -> dict[str, int]:
        """What the run had done so far (for a run that failed as a whole)."""
        return {
            "jobs_matched": len(self.job_ids),
            "jobs_deleted": self.jobs_deleted,
            "jobs_already_gone": self.jobs_gone,
            "jobs_failed": self.jobs_failed + len(self.jobs_unknown),
            "jobs_not_attempted": self.jobs_not_attempted,
            "jobs_skipped_malformed": self.jobs_malformed,
            "actions_deleted": self.actions_deleted,
        }


@dataclass
class _Walk:
    """Where one pass through the listing is."""

    seen: int = 0  # distinct jobs listed so far (and entries without a valid id)
    removed: int = 0  # of those, deleted or found gone
    last_id: int = 0  # the highest id listed (ids only grow)
    last_present: int | None = None  # the last job listed and not removed
    kept: int | None = None  # the last page's last new job that stays (it did not match)
    before: int | None = None  # `last_present` before the last page
    still_there: int | None = None  # the last page's last match that could not be deleted
    fresh: bool = False  # the last page had jobs not seen before
    shifted: bool = False  # the listing moved under the walk: jobs may have been skipped
    ids: int = 0  # entries of the last page with a valid id, new or not
    idless: int = 0  # entries without a valid id this pass
    sample: str | None = None  # one malformed entry of the last page, for the log

    @property
    def offset(self) -> int:
        return self.seen - self.removed

    def start_page(self) -> None:
        self.before = self.last_present
        self.kept = self.still_there = None
        self.fresh = False
        self.ids = 0
        self.sample = None

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
        self._detached: set[asyncio.Task[CleanupSummary]] = set()

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
        logger(event, **record["params"], **counts, errors=len(summary.errors), passes=run.passes)
        outcome = "ok" if summary.complete and not summary.errors else "partial"
        self._remember(record, outcome, duration, summary=summary)
        return summary

    def stop(self) -> None:
        """Ask a running cleanup to stop (the service is shutting down): nothing more is
        sent, what is on its way ends within one hero_proc call timeout."""
        self._stopping = True

    async def idle(self) -> None:
        """Wait until no cleanup runs (one being cancelled records itself first)."""
        async with self._cleanup_lock:
            pass

    async def _run(self, run: _Run) -> None:
        passes = 1 if run.dry_run else MAX_PASSES
        for number in range(1, passes + 1):
            run.passes = number
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
            if run.stopped is None and (reason := self._halt(run)) is not None:
                run.stop(f"stopped: {reason}", reason)
            await self._delete_actions(run)
            await self._settle(run)

    def _halt(self, run: _Run) -> str | None:
        """Why the run must send nothing more (the service is shutting down, the deadline
        passed), or None."""
        if self._stopping:
            return "the service is shutting down"
        if time.monotonic() > run.deadline:
            return f"the deadline of {self.deadline:g}s was reached"
        return None

    def _check(self, run: _Run) -> None:
        """Between steps: stop when the service is shutting down or the deadline passed."""
        if (reason := self._halt(run)) is not None:
            raise _Stopped(reason)

    async def _pass(self, run: _Run) -> bool:
        """One walk through the listing; whether it may have skipped jobs.

        Each page's matches are deleted before the next page is listed, and the next
        page starts after the jobs of this pass still listed: those seen, less those
        deleted or found gone. If someone else deletes listed jobs meanwhile, every
        later position moves and the next page would start too far. So each page
        starts one job early, on the last job known to be still there: when that
        is not what hero_proc lists first, the listing moved, this pass may have
        skipped jobs, and another pass follows. A job listed twice is recognised by
        its id, which only grows. The pass ends on a page without a job not seen
        before: an empty one, or one of jobs already seen.
        """
        walk = _Walk()
        try:
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
                if page and not walk.ids:
                    raise HeroProcProtocolError("job.list answered a page without a valid job id")
                if not walk.fresh:
                    if walk.ids > 1:  # more than the anchor, and nothing new
                        raise HeroProcProtocolError(
                            "job.list answered only jobs already listed: it does not advance"
                        )
                    return walk.shifted
        finally:
            run.malformed_idless = max(run.malformed_idless, walk.idless)

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
        if walk.sample is not None:
            # The entries without a valid id of this pass join the run's count at its end.
            skipped = len(run.malformed_ids) + max(run.malformed_idless, walk.idless)
            log.warning("cleanup_jobs_malformed", skipped=skipped, sample=walk.sample)
        walk.end_page()

    @staticmethod
    def _select(  # noqa: PLR0912, PLR0915 -- a cleanup's hot loop: one function, for speed
        run: _Run, walk: _Walk, page: list[Any]
    ) -> list[int]:
        """The ids of the page's matches, each recorded once; updates what the walk has seen.

        Works on the jobs as hero_proc sent them (this loop sees every listed job): a
        job without an integer id in range, with tags that are not a list of strings,
        or without a string action is malformed: skipped and counted. A job needs an
        integer `created_at_ms` to pass an age filter.
        """
        matches: list[int] = []
        kept = None
        actions = run.actions
        required = run.selector.required
        cutoff = run.selector.created_before_ms
        failed = run.failed_jobs
        last_id = walk.last_id
        fresh = ids = idless = 0
        for job in page:
            if type(job) is dict:
                job_id = job.get("id")
                tags = job.get("tags")
            else:
                job_id = tags = None
            if type(job_id) is not int or not 0 < job_id <= MAX_ID:
                idless += 1  # a position of the listing, but not a job
                walk.sample = sample(job)
                continue
            ids += 1
            if job_id <= last_id:
                continue  # seen in this pass already (the window started early)
            last_id = job_id
            fresh += 1
            action = job.get("action_id")
            if (
                type(action) is not str
                or not valid_tags(tags)
                or tags is None
                or not required.issubset(tags)
                or (failed and job_id in failed)
            ):
                if type(action) is not str or not valid_tags(tags):
                    run.malformed_ids.add(job_id)
                    walk.sample = sample(job)
                kept = job_id
                continue
                kept = job_id
                continue
            if cutoff is not None:
                created = job.get("created_at_ms")
                if type(created) is not int or created > cutoff:
                    kept = job_id
                    continue
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
        walk.seen += fresh + idless
        walk.idless += idless
        walk.ids += ids
        if kept is not None:
            walk.kept = kept
        walk.fresh = walk.fresh or fresh > 0
        return matches

    async def _delete_jobs(self, run: _Run, walk: _Walk, jobs: list[int]) -> None:
        """Delete `jobs`, tally the outcomes, and tell the walk how many left the listing."""
        calls = [("job.delete", {"id": job_id, "force": True}) for job_id in jobs]
        try:
            outcomes = await self.client.call_many(calls, stop=lambda: self._halt(run))
        except BaseException:
            self._tally(run, walk, jobs, [_CUT] * len(jobs))  # cut short: outcomes unknown
            raise
        self._tally(run, walk, jobs, outcomes)

    @staticmethod
    def _tally(run: _Run, walk: _Walk, jobs: list[int], outcomes: list[Any]) -> None:
        gone = done = 0
        still_there = None  # the highest id of the page's matches that could not be deleted
        for job_id, outcome in zip(jobs, outcomes, strict=True):
            if type(outcome) is dict and outcome.get("deleted") is True:
                done += 1
                continue
            if isinstance(outcome, NotFound):
                gone += 1
                continue
            still_there = job_id  # as far as this run knows
            run.failed_jobs.add(job_id)
            if isinstance(outcome, NotAttempted):
                run.jobs_not_attempted += 1
                run.not_attempted = outcome.reason
            elif unknown(outcome):
                run.jobs_unknown[job_id] = describe(outcome)
            else:
                run.fail_job(job_id, describe(outcome))
        run.jobs_deleted += done
        run.jobs_gone += gone
        walk.removed += done + gone
        if still_there is not None:
            walk.still_there = max(still_there, walk.still_there or 0)

    async def _delete_actions(self, run: _Run) -> None:
        if not run.actions:
            return
        if run.stopped is not None:
            run.actions_not_attempted = len(run.actions)
            run.errors.append(f"{len(run.actions)} actions not attempted: {run.stopped}")
            return
        keys: list[tuple[str, str | None]] = [
            (key, None) if isinstance(key, str) else key for key in run.actions
        ]
        calls = [("action.delete", action_params(name, ctx)) for name, ctx in keys]
        outcomes = await self.client.call_many(calls, stop=lambda: self._halt(run))
        not_attempted = None
        for key, outcome in zip(keys, outcomes, strict=True):
            if deleted(outcome):
                run.actions_deleted += 1
            elif isinstance(outcome, NotFound):
                run.actions_gone += 1
            elif isinstance(outcome, NotAttempted):
                run.actions_not_attempted += 1
                not_attempted = outcome.reason
            elif unknown(outcome):
                run.actions_unknown[key] = describe(outcome)
            else:
                run.fail_action(key[0], describe(outcome), in_use=isinstance(outcome, InUse))
        if not_attempted is not None:
            run.complete = False
            run.errors.append(f"{run.actions_not_attempted} actions not attempted: {not_attempted}")

    async def _settle(self, run: _Run) -> None:
        """Ask hero_proc about every deletion whose outcome is unknown (batched, within one
        call timeout): gone counts as deleted, present as a failure; what cannot be
        checked stays "outcome unknown" (see `_Run.close`)."""
        if not run.jobs_unknown and not run.actions_unknown:
            return
        budget = time.monotonic() + self.client.timeout

        def stop() -> str | None:
            return "no time left to check" if time.monotonic() > budget else None

        jobs = list(run.jobs_unknown)
        actions = list(run.actions_unknown)
        calls = [("job.get", {"id": job_id}) for job_id in jobs]
        calls += [("action.get", action_params(name, ctx)) for name, ctx in actions]
        outcomes = await self.client.call_many(calls, stop=stop)
        for job_id, outcome in zip(jobs, outcomes, strict=False):
            reason = run.jobs_unknown[job_id]
            if isinstance(outcome, NotFound):
                del run.jobs_unknown[job_id]
                run.jobs_deleted += 1
                run.jobs_settled += 1
            elif type(outcome) is dict and outcome.get("id") == job_id:
                del run.jobs_unknown[job_id]
                run.fail_job(job_id, f"still present after {reason}")
        for key, outcome in zip(actions, outcomes[len(jobs) :], strict=True):
            reason = run.actions_unknown[key]
            if isinstance(outcome, NotFound):
                del run.actions_unknown[key]
                run.actions_deleted += 1
                run.actions_settled += 1
            elif type(outcome) is dict and outcome.get("name") == key[0]:
                del run.actions_unknown[key]
                run.fail_action(key[0], f"still present after {reason}")
        settled = run.jobs_settled + run.actions_settled
        log.info("cleanup_outcomes_checked", checked=len(calls), found_gone=settled)

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
        """Up to `limit` matching jobs after the cursor's job, oldest first.

        The cursor names the last job returned (and where it was listed, a hint).
        hero_proc pages by offset only, so the next page is listed one early, at the
        hint, and checked by id: jobs up to the cursor's are skipped; if the listing
        moved back (jobs before it were deleted: its first job is past the cursor's),
        earlier offsets are listed until the cursor's job is behind. Malformed jobs
        are skipped and counted. At most `LIST_PAGES` pages are read per call: then
        the answer may hold fewer than `limit` jobs, with a cursor to go on.
        """
        hint, last_id = (int(part) for part in cursor.split(":")) if cursor else (0, 0)
        page_size = min(MAX_LIMIT, max(limit, LIST_PAGE))
        offset = max(0, hint - 1)
        back = page_size  # how far to step back when the listing moved under the cursor
        anchored = last_id == 0
        jobs: list[JobView] = []
        skipped = 0
        top: int | None = None  # the highest id of the last page read
        for _ in range(LIST_PAGES):
            page = await self.client.job_page(
                selector.pushdown, limit=page_size, offset=offset, status=status
            )
            parsed = [parse_job(item) for item in page]
            ids = [job.id for job in parsed if job is not None]
            if not anchored:
                if offset > 0 and (not page or (ids and ids[0] > last_id)):
                    # The listing moved back under the cursor: list from earlier.
                    offset, back = max(0, offset - back), back * 2
                    continue
                anchored = True
            if not page:
                return _listing(jobs, None, skipped)
            if not ids:
                raise HeroProcProtocolError("job.list answered a page without a valid job id")
            if top is not None and ids[-1] <= top:
                raise HeroProcProtocolError(f"{OUTSIDE}: job.list does not advance")
            top = ids[-1]
            bad = [item for item, job in zip(page, parsed, strict=True) if job is None]
            if bad:
                skipped += len(bad)
                log.warning("list_jobs_malformed", skipped=len(bad), sample=sample(bad[0]))
            for position, job in enumerate(parsed):
                if job is None or job.id <= last_id:
                    continue
                last_id = job.id
                if selector.matches(job.tags, job.created_at_ms):
                    jobs.append(_view(job))
                    if len(jobs) == limit:
                        return _listing(jobs, f"{offset + position + 1}:{job.id}", skipped)
            offset += len(page)
        return _listing(jobs, f"{offset}:{last_id}", skipped)

    async def stats(self) -> StatsResult:
        hero = await self.client.stats()
        jobs_by_kind: Counter[str] = Counter()
        jobs_by_status: Counter[str] = Counter()
        skipped = [0, 0]  # malformed jobs, malformed actions
        async for job in self._every_job(skipped):
            if SCOPE_TAG in job.tags:
                jobs_by_kind[labels(job.tags).kind or "unknown"] += 1
                jobs_by_status[job.status or "unknown"] += 1
        actions_by_kind: Counter[str] = Counter()
        async for tags in self._every_action(skipped):
            if SCOPE_TAG in tags:
                actions_by_kind[labels(tags).kind or "unknown"] += 1
        return StatsResult(
            codescaler=CodescalerCounts(
                jobs=jobs_by_kind.total(),
                actions=actions_by_kind.total(),
                jobs_by_kind=dict(sorted(jobs_by_kind.items())),
                actions_by_kind=dict(sorted(actions_by_kind.items())),
                jobs_by_status=dict(sorted(jobs_by_status.items())),
                jobs_skipped_malformed=skipped[0],
                actions_skipped_malformed=skipped[1],
            ),
            hero_proc=HeroProcCounts(
                job_count=hero.job_count,
                action_count=hero.action_count,
                running_count=hero.running_count,
            ),
        )

    def _every_job(self, skipped: list[int]) -> AsyncIterator[JobSummary]:
        """Every codescaler-tagged job, once (ids only grow: a job is new when its id
        is above the last one seen); malformed jobs are counted in `skipped[0]`."""
        last_id = 0

        def new(job: JobSummary) -> bool:
            nonlocal last_id
            if job.id <= last_id:
                return False
            last_id = job.id
            return True

        return _every(self.client.job_page, "job.list", parse_job, new, skipped=skipped, slot=0)

    def _every_action(self, skipped: list[int]) -> AsyncIterator[list[str]]:
        """The tags of every codescaler-tagged action, once (by name and context);
        malformed actions are counted in `skipped[1]`."""
        seen: set[tuple[str, str | None]] = set()

        def new(action: tuple[tuple[str, str | None], list[str]]) -> bool:
            if action[0] in seen:
                return False
            seen.add(action[0])
            return True

        actions = _every(
            self.client.action_page, "action.list", _action, new, skipped=skipped, slot=1
        )
        return (tags async for _, tags in actions)

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


async def _every(
    list_page: Callable[..., Awaitable[list[Any]]],
    method: str,
    parse: Callable[[Any], T | None],
    new: Callable[[T], bool],
    *,
    skipped: list[int],
    slot: int,
) -> AsyncIterator[T]:
    """Every codescaler-tagged item of a hero_proc listing that `parse` accepts and
    `new` has not seen, a page of `STATS_PAGE` at a time. Pages end on an empty one;
    a page must bring an item not seen before (else the listing does not advance:
    -32021), and at most `STATS_PAGES` are read. Items `parse` refuses are counted
    in `skipped[slot]`, with one warning line per page carrying a sample."""
    offset = 0
    noun = "jobs" if slot == 0 else "actions"
    for _ in range(STATS_PAGES):
        page = await list_page(SCOPE_TAG, limit=STATS_PAGE, offset=offset)
        if not page:
            return
        fresh = bad = 0
        example = None
        for item in page:
            parsed = parse(item)
            if parsed is None:
                bad += 1
                example = item
            elif new(parsed):
                fresh += 1
                yield parsed
        if bad:
            skipped[slot] += bad
            log.warning(f"stats_{noun}_malformed", skipped=bad, sample=sample(example))
        if not fresh:
            raise HeroProcProtocolError(f"{OUTSIDE}: {method} does not advance")
        offset += len(page)
    raise HeroProcProtocolError(f"{method} did not end within {STATS_PAGES} pages")


def _action(item: Any) -> tuple[tuple[str, str | None], list[str]] | None:
    """A listed action as (its name and context, its tags), or None when malformed."""
    tags = _action_tags(item)
    if tags is None:
        return None
    context = item.get("context")
    return (item["name"], context if type(context) is str else None), tags


def _action_tags(item: Any) -> list[str] | None:
    """An listed action's tags (null as none), or None when it is malformed."""
    if type(item) is not dict or type(item.get("name")) is not str:
        return None
    spec = item.get("spec")
    if spec is None:
        return []
    if type(spec) is not dict:
        return None
    tags = spec.get("tags")
    if not valid_tags(tags):
        return None
    return tags or []


def _listing(jobs: list[JobView], cursor: str | None, skipped: int) -> ListResult:
    return ListResult(jobs=jobs, next_cursor=cursor, jobs_skipped_malformed=skipped)


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
