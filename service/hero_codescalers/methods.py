"""The RPC methods: thin handlers from validated params to the engine and back.

`stats` walks every codescaler job and action of hero_proc: the one expensive
read. Calls of it share one walk while it runs (single flight), and its result
is reused for `stats_reuse_s` seconds (2 by default, 0 for never); a cleanup or
a submission through this service discards it, so that a caller never sees
counts older than its own change.

Above 350 lines because each method's docstring is its description in the
OpenRPC document (and the SDK's): the handlers are a few lines each, their
documentation is most of the file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import errors as e
from . import examples as ex
from .engine import CleanupRequest, Engine
from .metrics import Metrics
from .models import (
    CleanupParams,
    CleanupStarted,
    CleanupStatus,
    CleanupSummary,
    DeletedParams,
    DeletedResult,
    HealthResult,
    HistoryParams,
    HistoryResult,
    ListParams,
    ListResult,
    NoParams,
    PingResult,
    PolicyView,
    RetentionListResult,
    RetentionRunParams,
    RunParams,
    StatsResult,
    SubmitParams,
    SubmitResult,
    without_ids,
)
from .registry import CallContext, Registry
from .retention.scheduler import Scheduler
from .tags import Selector

registry = Registry()

UPSTREAM = (e.HERO_PROC_UNAVAILABLE, e.HERO_PROC_ERROR)


T = TypeVar("T")


class Shared(Generic[T]):
    """One computation of `fetch` shared by concurrent callers, its result reused for
    `reuse_s` seconds unless `discard()` is called meanwhile.

    A caller that goes away leaves the computation to the others; when the last one
    has gone, it is cancelled. A failure goes to the callers that waited for it and
    is never reused.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[T]],
        reuse_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_fetch: Callable[[], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self.reuse_s = reuse_s
        self._clock = clock
        self._on_fetch = on_fetch
        self._task: asyncio.Task[T] | None = None  # the computation a new caller joins
        self._waiters: dict[asyncio.Task[T], int] = {}
        self._generation = 0
        self._value: T | None = None
        self._expires = 0.0

    async def get(self) -> T:
        if self._value is not None and self._clock() < self._expires:
            return self._value
        task = self._task
        if task is None:
            task = self._task = asyncio.ensure_future(self._run(self._generation))
        self._waiters[task] = self._waiters.get(task, 0) + 1
        try:
            return await asyncio.shield(task)
        finally:
            self._waiters[task] -= 1
            if not self._waiters[task]:
                del self._waiters[task]
                if not task.done():  # every caller has gone: stop the work
                    task.cancel()
                    if self._task is task:
                        self._task = None

    async def _run(self, generation: int) -> T:
        if self._on_fetch is not None:
            self._on_fetch()
        started = self._clock()
        try:
            value = await self._fetch()
        finally:
            if self._task is asyncio.current_task():
                self._task = None
        if self.reuse_s > 0 and generation == self._generation:
            self._value, self._expires = value, started + self.reuse_s
        return value

    def discard(self) -> None:
        """Forget the reusable result; a computation running now is left to its present
        callers, never joined nor reused: the next call starts afresh."""
        self._generation += 1
        self._value = None
        self._task = None


@dataclass
class Services:
    """What handlers reach through `ctx.services`."""

    engine: Engine
    document: dict[str, Any]
    metrics: Metrics
    scheduler: Scheduler
    policies_file: str | None = None
    stats_reuse_s: float = 2.0
    stats: Shared[StatsResult] = field(init=False)

    def __post_init__(self) -> None:
        self.stats = Shared(self._walk, self.stats_reuse_s, on_fetch=self.metrics.stats_walks.inc)

    async def _walk(self) -> StatsResult:
        return await self.engine.stats()  # looked up on each walk: tests may replace it

    def changed(self) -> None:
        """hero_proc was changed through this service: counts read before are stale."""
        self.stats.discard()


def _services(ctx: CallContext) -> Services:
    services: Services = ctx.services
    return services


def selector(
    ctx: CallContext, params: CleanupParams | ListParams, *, now: int | None = None
) -> Selector:
    """The exact selection params mean, the age cutoffs taken at `now` (by default the
    engine's clock)."""
    if now is None:
        now = _services(ctx).engine.clock()

    def cutoff(age_ms: int | None) -> int | None:
        return None if age_ms is None else now - age_ms

    statuses: list[str] | None = list(params.statuses) if params.statuses is not None else None
    keep_last = None
    if isinstance(params, ListParams):
        if params.status is not None:
            statuses = [params.status]
    else:
        keep_last = params.keep_last
    return Selector.build(
        kind=params.kind,
        target=params.target,
        actor=params.actor,
        created_before_ms=cutoff(params.older_than_ms),
        statuses=statuses,
        finished_before_ms=cutoff(params.finished_older_than_ms),
        include_kept=params.include_kept,
        keep_last=keep_last,
    )


@registry.method("rpc.discover", summary="This service's OpenRPC document", examples=ex.DISCOVER)
async def rpc_discover(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    """The OpenRPC document that declares every method of this service."""
    return _services(ctx).document


@registry.method(
    "system.health",
    summary="Version, uptime and whether hero_proc answers",
    examples=ex.HEALTH,
)
async def system_health(ctx: CallContext, params: NoParams) -> HealthResult:
    """Version, uptime, and hero_proc's reachability and latency from a quick `stats` call
    (at most one second). `status` is `degraded` while hero_proc does not answer."""
    services = _services(ctx)
    health = await services.engine.health()
    services.metrics.hero_proc_up.set(health.hero_proc.reachable)
    return health


PONG = PingResult()


@registry.method(
    "system.ping",
    summary="Answer at once, touching nothing",
    examples=ex.PING,
)
async def system_ping(ctx: CallContext, params: NoParams) -> PingResult:
    """A trivial call: for liveness checks, and for measuring the cost of the RPC layer
    itself (it does not reach hero_proc)."""
    return PONG


@registry.method(
    "jobs.submit",
    summary="Enqueue a tagged job, reusing the action of an identical input",
    mutates=True,
    errors=(e.INVALID_PARAMS, *UPSTREAM),
    examples=ex.SUBMIT,
)
async def jobs_submit(ctx: CallContext, params: SubmitParams) -> SubmitResult:
    """Creates (or reuses) the action `codescaler_<kind>_<hash>` named by the script and
    input, tagged `codescaler` and `codescaler_kind_<kind>`, and a job of it tagged
    `codescaler_<actor>` (and `codescaler_target_<target>`) on top of the action's tags."""
    services = _services(ctx)
    try:
        return await services.engine.submit(
            kind=params.kind,
            actor=params.actor,
            target=params.target,
            script=params.script,
            input_=params.input,
        )
    finally:
        services.changed()


@registry.method(
    "jobs.list",
    summary="Codescaler jobs, filtered like a cleanup, a page at a time",
    errors=(e.INVALID_PARAMS, *UPSTREAM),
    examples=ex.LIST,
)
async def jobs_list(ctx: CallContext, params: ListParams) -> ListResult:
    """Codescaler jobs only (the literal `codescaler` tag, every filter matched exactly, as
    a cleanup would select them: jobs tagged `codescaler_keep` only with `include_kept`),
    oldest first. `status` (one) and `statuses` (a list) are two ways of one filter: give
    one of them. Pass `next_cursor` back as `cursor` for the next page."""
    return await _services(ctx).engine.list_jobs(
        selector(ctx, params), limit=params.limit, cursor=params.cursor
    )


@registry.method(
    "stats",
    summary="Codescaler job and action counts, and hero_proc's totals",
    errors=UPSTREAM,
    examples=ex.STATS,
)
async def stats(ctx: CallContext, params: NoParams) -> StatsResult:
    """Codescaler jobs (by kind and status) and actions (by kind) present in hero_proc,
    and hero_proc's own totals. Concurrent calls share one reading of hero_proc, which
    may be reused for up to 2 seconds (a cleanup or submission through this service
    discards it)."""
    return await _services(ctx).stats.get()


@registry.method(
    "jobs.cleanup",
    summary="Delete codescaler jobs and their actions (admin)",
    admin=True,
    mutates=True,
    errors=(
        e.INVALID_PARAMS,
        e.ADMIN_REQUIRED,
        e.CLEANUP_RUNNING,
        e.STATE_UNAVAILABLE,
        e.PLAN_UNUSABLE,
        *UPSTREAM,
    ),
    examples=ex.CLEANUP,
)
async def jobs_cleanup(ctx: CallContext, params: CleanupParams) -> CleanupSummary:
    """Deletes every job carrying the literal `codescaler` tag and every given filter
    (kind, target, actor exactly; created at least `older_than_ms` ago; in one of
    `statuses`, by default any, pending and running jobs included; finished at least
    `finished_older_than_ms` ago), except jobs tagged `codescaler_keep` unless
    `include_kept`, and, with `keep_last`, the newest N of each (kind, actor, target)
    group among those. It deletes them with `force`, then each codescaler action of
    those jobs, best effort: an action still used by another job stays (counted in
    `actions_in_use`, listed in `actions_in_use_ids`: not an error). Already gone
    counts as done. One cleanup runs at a time, also across the service processes of
    one state directory. With `dry_run` nothing changes, and the answer's `plan_id`
    names the plan of what it found: `jobs.cleanup {plan_id}` (alone, or with `reason`
    and `ids`) then deletes only the jobs of that plan that still exist and still
    match its filters, never one created since; a plan is applied once, within an
    hour (-32014 with `data.reason` unknown, expired or applied otherwise).
    `max_jobs` stops the run after that many matched jobs (`has_more` says whether
    more remain). `ids: false` leaves the summary's id lists empty. The run is
    recorded in the state database before it deletes anything (with `reason`, the
    caller's uid and pid); a real run is refused (-32013) when that record cannot be
    written. A real run without any selection (`include_kept` aside: no filter, no
    `max_jobs`, no plan) ends with the orphan-action sweep: codescaler actions that
    no job references any more (left by a run cut short) are deleted too
    (`orphan_actions_deleted`). To run it in the background and follow it, call
    `jobs.cleanup_start` with the same params."""
    services = _services(ctx)
    request = await cleanup_request(ctx, params)
    try:
        summary = await services.engine.cleanup(request)
    finally:
        if not params.dry_run:
            services.changed()
    return summary if params.ids else without_ids(summary)


@registry.method(
    "jobs.cleanup_history",
    summary="The recorded cleanup runs: who, when, why, what, result (admin)",
    admin=True,
    errors=(e.INVALID_PARAMS, e.ADMIN_REQUIRED, e.STATE_UNAVAILABLE),
    examples=ex.HISTORY,
)
async def jobs_cleanup_history(ctx: CallContext, params: HistoryParams) -> HistoryResult:
    """The cleanup runs recorded in the state database (they survive restarts), newest
    first, a page at a time: pass `next_cursor` back as `cursor`. Each says who ran it
    (the peer's uid and pid, or the retention policy), why (`reason`), whether it was a
    dry run, its params, outcome and counts. A run still going has no outcome yet; one
    whose process ended under it is `interrupted`, with the counts of its last
    checkpoint. Runs that finished more than HERO_CODESCALERS_HISTORY_DAYS ago are
    dropped."""
    return await _services(ctx).engine.record.history(
        limit=params.limit,
        cursor=params.cursor,
        outcome=params.outcome,
        policy=params.policy,
        dry_run=params.dry_run,
    )


@registry.method(
    "retention.list",
    summary="The retention policies, their schedule and last run (admin)",
    admin=True,
    errors=(e.INVALID_PARAMS, e.ADMIN_REQUIRED, e.STATE_UNAVAILABLE),
    examples=ex.RETENTION_LIST,
)
async def retention_list(ctx: CallContext, params: NoParams) -> RetentionListResult:
    """The retention policies of the policies file (HERO_CODESCALERS_POLICIES, read again
    on SIGHUP), by name: what each selects, its period, when it fires next (null when
    disabled), when it last fired, whether a run of it goes on, and its last recorded run
    (a `skipped` one included)."""
    services = _services(ctx)
    scheduler = services.scheduler
    views = []
    for name, policy in sorted(scheduler.policies.items()):
        last = await services.engine.record.history(limit=1, policy=name)
        views.append(
            PolicyView(
                name=name,
                enabled=policy.enabled,
                dry_run=scheduler.dry_run(policy),
                every_ms=policy.every,
                orphan_actions=policy.orphan_actions,
                params=policy.params(),
                next_due_ms=scheduler.due_ms(name),
                last_fired_ms=scheduler.fired_ms(name),
                running=scheduler.running(name),
                last_run=last.runs[0] if last.runs else None,
            )
        )
    return RetentionListResult(
        policies=views, file=services.policies_file, dry_run_switch=scheduler.force_dry_run
    )


@registry.method(
    "retention.run",
    summary="Run one retention policy now (admin)",
    admin=True,
    mutates=True,
    errors=(e.INVALID_PARAMS, e.ADMIN_REQUIRED, e.CLEANUP_RUNNING, e.STATE_UNAVAILABLE, *UPSTREAM),
    examples=ex.RETENTION_RUN,
)
async def retention_run(ctx: CallContext, params: RetentionRunParams) -> CleanupSummary:
    """Runs the retention policy `name` now, as its schedule would (its filters, terminal
    statuses unless it names others, never a job tagged `codescaler_keep`), enabled or
    not, and answers the run's summary; its schedule does not change. The run is
    recorded with the policy and the caller's uid and pid. A policy set to dry run (or
    HERO_CODESCALERS_POLICIES_DRY_RUN) runs dry whatever `dry_run` says. An unknown
    name is -32602 naming it."""
    services = _services(ctx)
    scheduler = services.scheduler
    if params.name not in scheduler.policies:
        known = ", ".join(sorted(scheduler.policies)) or "none is configured"
        raise e.InvalidParams(f"name: no retention policy {params.name!r} (policies: {known})")
    dry_run = scheduler.dry_run(scheduler.policies[params.name], params.dry_run)
    try:
        return await scheduler.run_now(
            params.name,
            dry_run=params.dry_run,
            reason=params.reason,
            peer_uid=ctx.peer.uid,
            peer_pid=ctx.peer.pid,
        )
    finally:
        if not dry_run:
            services.changed()


async def cleanup_request(ctx: CallContext, params: CleanupParams) -> CleanupRequest:
    """What `jobs.cleanup` and `jobs.cleanup_start` ask of the engine, alike: the
    selection (a plan's, when `plan_id` is given: PlanUnusable when it cannot be
    applied), the params as recorded, who asks, whether the run ends with the
    orphan-action sweep (a real run without any selection, `include_kept` aside), its
    bound, the time a dry run's plan takes its cutoffs at, the plan it applies."""
    given = params.model_dump(exclude_defaults=True, exclude={"dry_run", "reason", "ids"})
    engine = _services(ctx).engine
    now = engine.clock()
    applying = None
    if params.plan_id is not None:
        others = sorted(set(given) - {"plan_id"} | ({"dry_run"} if params.dry_run else set()))
        if others:
            raise e.InvalidParams(
                f"plan_id: give it alone (with reason or ids), the plan holds its selection; "
                f"not with {', '.join(others)}"
            )
        plan = await engine.record.plan(params.plan_id)
        # The plan's own filters, their cutoffs as the dry run took them, on its jobs only.
        chosen = selector(ctx, CleanupParams.model_validate(plan.params), now=plan.created_at_ms)
        chosen = chosen.within(plan.job_ids)
        applying = plan.plan_id
    else:
        chosen = selector(ctx, params, now=now)
    return CleanupRequest(
        chosen,
        dry_run=params.dry_run,
        params=given,
        reason=params.reason,
        peer_uid=ctx.peer.uid,
        peer_pid=ctx.peer.pid,
        sweep_orphans=not set(given) - {"include_kept"},
        max_jobs=params.max_jobs,
        plan_at_ms=now,
        applying=applying,
    )


@registry.method(
    "jobs.cleanup_start",
    summary="Start a cleanup in the background; its run id at once (admin)",
    admin=True,
    mutates=True,
    errors=(
        e.INVALID_PARAMS,
        e.ADMIN_REQUIRED,
        e.CLEANUP_RUNNING,
        e.STATE_UNAVAILABLE,
        e.PLAN_UNUSABLE,
    ),
    examples=ex.CLEANUP_START,
)
async def jobs_cleanup_start(ctx: CallContext, params: CleanupParams) -> CleanupStarted:
    """Starts the cleanup that `jobs.cleanup` makes with the same params, and answers as
    soon as the run is recorded, with its `run_id`: the run goes on in the background,
    to its end or the service's deadline for a cleanup. Follow it with
    `jobs.cleanup_status` (its summary once done), stop it with `jobs.cleanup_cancel`.
    It is refused as `jobs.cleanup` is before anything is deleted (-32011 while another
    run holds the lock, -32013 when the record cannot be written, -32014 for a plan
    that cannot be applied); hero_proc failing
    later is in its status (outcome `error`, or `partial`). It is a method of its own,
    not a flag of `jobs.cleanup`, so that each method answers one shape. With `ids:
    false` its summary in `jobs.cleanup_status` has empty id lists."""
    services = _services(ctx)
    request = await cleanup_request(ctx, params)
    on_end = None if params.dry_run else services.changed
    started = await services.engine.start(request, ids=params.ids, on_end=on_end)
    if on_end is not None:
        on_end()
    return started


@registry.method(
    "jobs.cleanup_status",
    summary="Where a cleanup run stands: phase, counts, rate, time left, summary (admin)",
    admin=True,
    errors=(e.INVALID_PARAMS, e.ADMIN_REQUIRED, e.STATE_UNAVAILABLE),
    examples=ex.CLEANUP_STATUS,
)
async def jobs_cleanup_status(ctx: CallContext, params: RunParams) -> CleanupStatus:
    """Any cleanup run, background or not, by its `run_id`: its phase (`listing`,
    `deleting_jobs`, `deleting_actions`, `settling`, `done`), its counts so far, its rate,
    an estimate of the time left while it lists and deletes jobs, and once done its
    outcome and, for the last background runs of this service process, its summary. A
    run this process does not hold in memory (one that ended earlier, a foreground one,
    one of another process sharing the state directory) is answered from its record
    (`source: record`). An unknown `run_id` is -32602 naming it."""
    return await _services(ctx).engine.status(params.run_id)


@registry.method(
    "jobs.cleanup_cancel",
    summary="Stop a cleanup run at its next step; its partial summary (admin)",
    admin=True,
    mutates=True,
    errors=(e.INVALID_PARAMS, e.ADMIN_REQUIRED, e.STATE_UNAVAILABLE),
    examples=ex.CLEANUP_CANCEL,
)
async def jobs_cleanup_cancel(ctx: CallContext, params: RunParams) -> CleanupStatus:
    """Asks the run `run_id` (background or not) to stop at its next step: nothing more
    is sent to hero_proc, what is in flight is answered, its actions are not attempted,
    and it ends `cancelled` with a partial summary (its foreground caller gets that
    summary). Its record says who cancelled it (`cancelled_by`: the caller's uid and
    pid). Answers its status once it has ended, with its summary, or after 5 seconds
    with it still stopping (follow it with `jobs.cleanup_status`). A run of another
    service process sharing the state directory stops at its next checkpoint; a run
    that has ended is left as it was. An unknown `run_id` is -32602 naming it."""
    return await _services(ctx).engine.cancel(
        params.run_id, peer_uid=ctx.peer.uid, peer_pid=ctx.peer.pid
    )


@registry.method(
    "jobs.deleted",
    summary="What happened to a job: the tombstones of the jobs cleanups deleted (admin)",
    admin=True,
    errors=(e.INVALID_PARAMS, e.ADMIN_REQUIRED, e.STATE_UNAVAILABLE),
    examples=ex.DELETED,
)
async def jobs_deleted(ctx: CallContext, params: DeletedParams) -> DeletedResult:
    """Every job a real cleanup deleted (hero_proc answered deleted, or a later check found
    it gone) left a tombstone in the state database: the job as the run listed it (id,
    action, context, tags, status, created and finished times), its kind, actor and
    target read from its tags, the run that deleted it and when. By `id`, or by
    filters (every one given must hold): `kind`, `target`, `actor` (the job carried
    that tag, as a cleanup selects), a time window (`deleted_after_ms` inclusive,
    `deleted_before_ms` exclusive), `run_id` (-32602 when the history has no such run).
    Newest first, a page at a time: pass `next_cursor` back as `cursor`. Dry runs leave
    none; a job already gone when the run came leaves none (someone else deleted it).
    Tombstones are kept as long as the run that wrote them (HERO_CODESCALERS_HISTORY_DAYS)."""
    return await _services(ctx).engine.record.deleted(
        limit=params.limit,
        cursor=params.cursor,
        job_id=params.id,
        kind=params.kind,
        target=params.target,
        actor=params.actor,
        deleted_after_ms=params.deleted_after_ms,
        deleted_before_ms=params.deleted_before_ms,
        run_id=params.run_id,
    )
