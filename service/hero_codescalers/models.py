"""Params and results of the RPC methods: pydantic models, the source of the schemas.

Params are strict (no coercion: "5" is not an integer) and closed (an unknown
param is an error). A params model's field order is the order of positional
params and of the OpenRPC document: required params first, then optional ones;
a param added later goes after every existing one, so that a positional call
keeps its meaning. Results keep the names and types of the original
specification and add fields after them.

Above 350 lines because it is the RPC surface's schema, declarative and read by
method: each params model beside its result, in the order of the document.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator

from .tags import (
    ACTOR_PATTERN,
    JOB_STATUSES,
    KIND_TARGET_PATTERN,
    NAME_MAX_LENGTH,
    RESERVED_ACTORS,
    JobStatus,
    check_actor,
    check_kind_or_target,
)

MAX_AGE_MS = 100 * 365 * 86_400_000  # a century: beyond it "older than" means nothing
SCRIPT_MAX_LENGTH = 65_536
LIST_MAX_LIMIT = 1_000
KEEP_LAST_MAX = 100_000
MAX_JOBS_MAX = 1_000_000_000
PLAN_ID_PATTERN = r"^[0-9a-f]{16}$"
# How a cleanup run ended, one list for the history, the status and the CLI: `ok`
# (complete, no errors), `partial` (stopped short or with errors), `cancelled` (cut
# by the service's shutdown), `error` (failed as a whole), `interrupted` (the process
# ended under it: found at the next start), `skipped` (a policy's run not started).
Outcome = Literal["ok", "partial", "cancelled", "error", "interrupted", "skipped"]

REASON_MAX_LENGTH = 500
# Control characters (newlines and tabs included) and Unicode line separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
POLICY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def check_reason(text: str) -> str:
    """`text` if it is one line of printable text, else ValueError saying why."""
    if _CONTROL.search(text):
        raise ValueError("control characters (newlines and tabs included) are not allowed")
    return text


Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=REASON_MAX_LENGTH,
        description="Why the run is made, free text in one line (no control characters), "
        "logged and kept in the history",
        examples=["disk pressure on node-3, ticket OPS-1234"],
        json_schema_extra={"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"},
    ),
    AfterValidator(check_reason),
]


def _name(pattern: str, description: str, example: str, **extra: Any) -> Any:
    """The Field of a name: its checks are the validator's, this only describes them."""
    schema = {"minLength": 1, "maxLength": NAME_MAX_LENGTH, "pattern": pattern, **extra}
    return Field(description=description, examples=[example], json_schema_extra=schema)


Actor = Annotated[
    str,
    AfterValidator(check_actor),
    _name(
        ACTOR_PATTERN,
        "Who asked: letters, digits, '.' and '-' (no '_'); not 'kind', 'target' or 'keep'",
        "alice",
        **{"not": {"enum": sorted(RESERVED_ACTORS)}},
    ),
]
Kind = Annotated[
    str,
    AfterValidator(check_kind_or_target),
    _name(KIND_TARGET_PATTERN, "The feature: letters, digits, '.', '-', '_'", "user"),
]
Target = Annotated[
    str,
    AfterValidator(check_kind_or_target),
    _name(KIND_TARGET_PATTERN, "What the job acts on: letters, digits, '.', '-', '_'", "web"),
]
OlderThanMs = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_AGE_MS,
        description="Only jobs created at least this many milliseconds ago; "
        "jobs without a creation time are then left alone",
        examples=[86_400_000],
    ),
]


Statuses = Annotated[
    list[JobStatus],
    Field(
        min_length=1,
        max_length=len(JOB_STATUSES),
        description="Only jobs in one of these statuses (default: any status); the "
        "terminal ones are succeeded, failed and cancelled",
        examples=[["succeeded", "failed", "cancelled"]],
    ),
]
FinishedOlderThanMs = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_AGE_MS,
        description="Only jobs that finished at least this many milliseconds ago: a "
        "terminal status (succeeded, failed, cancelled) and a `finished_at_ms` that old. "
        "A job that has not finished (pending, running), or whose `finished_at_ms` is "
        "missing, is never matched by it",
        examples=[604_800_000],
    ),
]
IncludeKept = Annotated[
    bool,
    Field(
        description="Also select jobs tagged `codescaler_keep` (kept by an operator); "
        "they are left out by default, and a retention policy never selects them",
    ),
]


class Params(BaseModel):
    """Base of every params model: strict, closed."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class NoParams(Params):
    """A method without params."""


class Filter(Params):
    """Which codescaler jobs: every given filter must match exactly."""

    kind: Kind | None = None
    target: Target | None = None
    actor: Actor | None = None
    older_than_ms: OlderThanMs | None = None


class CleanupParams(Filter):
    """`jobs.cleanup`: what to remove; everything codescaler when no filter is given."""

    dry_run: bool = Field(default=False, description="List what would be deleted; change nothing")
    reason: Reason | None = None
    statuses: Statuses | None = None
    finished_older_than_ms: FinishedOlderThanMs | None = None
    keep_last: int | None = Field(
        default=None,
        ge=1,
        le=KEEP_LAST_MAX,
        description="Applied after every other filter: of the jobs they select, keep the "
        "newest N of each (kind, actor, target) group and select the rest. Newest: the "
        "later `created_at_ms`, between equal times the larger id; a job without "
        "`created_at_ms` is older than any with one. The run reads the whole listing "
        "once before it deletes anything; jobs created meanwhile are kept if newer",
        examples=[5],
    )
    include_kept: IncludeKept = False
    plan_id: str | None = Field(
        default=None,
        pattern=PLAN_ID_PATTERN,
        description="Apply the plan of a dry run (its `plan_id`): delete only the jobs it "
        "listed that still exist and still match its filters, then their actions. Give it "
        "alone (with `reason`, `ids`); a plan is applied once, before `plan_expires_at_ms`",
        examples=["3e9f0a7c51b2d846"],
    )
    max_jobs: int | None = Field(
        default=None,
        ge=1,
        le=MAX_JOBS_MAX,
        description="Stop after this many matched jobs (and their actions); `has_more` says "
        "whether more remain. Not an error: the run is complete when all it did succeeded",
        examples=[10_000],
    )
    ids: bool = Field(
        default=True,
        description="false: leave the id lists of the summary empty (`ids_omitted` true); "
        "the counts are the same",
    )


class CleanupSummary(Result):
    """What a cleanup matched and did. Every matched job is deleted, already gone, failed,
    or not attempted; a job counts as deleted only when hero_proc said so for that very
    call (`{deleted: true}`), or when a later check found it gone (`jobs_settled_gone`)."""

    jobs_deleted: int = Field(description="Jobs this run deleted")
    actions_deleted: int = Field(description="Actions this run deleted")
    job_ids: list[int] = Field(description="Every matched job, ascending within each pass")
    action_ids: list[str] = Field(description="Every codescaler action of the matched jobs")
    errors: list[str] = Field(
        description="One line per job or action that could not be deleted, and one per "
        "reason the run stopped short (with the count of what was not attempted); an "
        "action kept because other jobs use it is not an error (`actions_in_use`)"
    )
    dry_run: bool
    jobs_matched: int = Field(
        description="= jobs_deleted + jobs_already_gone + jobs_failed + jobs_not_attempted"
    )
    jobs_already_gone: int = Field(description="Matched jobs someone else deleted first")
    jobs_failed: int = Field(
        description="Matched jobs not deleted: refused, still present after a deletion "
        "without a clear answer, or of unknown outcome (each has its line in errors)"
    )
    jobs_not_attempted: int = Field(
        default=0,
        description="Matched jobs whose deletion was never sent: the run stopped "
        "(deadline, shutdown) first; one line in errors gives the count and the reason",
    )
    jobs_settled_gone: int = Field(
        default=0,
        description="Of jobs_deleted: deletions without a clear answer (connection lost, "
        "tries exhausted, an answer outside the contract, stopped in flight) that a "
        "later job.get found gone",
    )
    jobs_skipped_malformed: int = Field(
        default=0,
        description="Listed jobs skipped as malformed (no integer id, tags that are not "
        "strings, no string action); when not 0 the run is not complete",
    )
    actions_matched: int = Field(
        description="= actions_deleted + actions_already_gone + actions_in_use + "
        "actions_failed + actions_not_attempted, after a run that was not dry"
    )
    actions_already_gone: int
    actions_in_use: int = Field(
        description="Actions kept because other jobs still use them (`actions_in_use_ids`): "
        "shared actions working as designed, not errors"
    )
    actions_failed: int = Field(description="Actions not deleted for another reason (in errors)")
    actions_not_attempted: int = Field(
        default=0, description="Actions whose deletion was never sent: the run stopped first"
    )
    actions_settled_gone: int = Field(
        default=0,
        description="Of actions_deleted: deletions without a clear answer that a later "
        "action.get found gone",
    )
    foreign_action_ids: list[str] = Field(
        description="Actions of matched jobs that this service did not create: left in place"
    )
    orphan_actions_deleted: int = Field(
        default=0,
        description="Codescaler actions no job referenced any more, deleted by the orphan "
        "sweep (a real cleanup without any filter, or a policy with orphan_actions)",
    )
    complete: bool = Field(
        description="False when the run did not see or settle everything: hero_proc failed "
        "or broke its contract, the run stopped early, or malformed jobs were skipped"
    )
    duration_ms: int
    run_id: str | None = Field(default=None, description="The run's id in `jobs.cleanup_history`")
    plan_id: str | None = Field(
        default=None,
        description="A dry run's plan: pass it as `plan_id` to delete exactly what this "
        "preview found (null when the state database could not keep it); a plan's apply: "
        "the plan applied",
    )
    plan_expires_at_ms: int | None = Field(
        default=None, description="Until when the dry run's plan can be applied"
    )
    has_more: bool = Field(
        default=False,
        description="The run stopped at `max_jobs` and more jobs match: run it again",
    )
    actions_in_use_ids: list[str] = Field(
        default_factory=list, description="The actions kept because other jobs still use them"
    )
    ids_omitted: bool = Field(
        default=False,
        description="The id lists (job_ids, action_ids, foreign_action_ids, "
        "actions_in_use_ids) were left empty on request (`ids: false`)",
    )


class SubmitParams(Params):
    """`jobs.submit`: enqueue a tagged job, reusing the action of an identical input."""

    kind: Kind
    actor: Actor
    script: str = Field(min_length=1, max_length=SCRIPT_MAX_LENGTH, description="What the job runs")
    target: Target | None = None
    input: JsonValue = Field(
        default=None, description="The feature's input; with `script` it names the action"
    )


class SubmitResult(Result):
    job_id: int
    action_id: str
    tags: list[str] = Field(description="The job's tags")
    deduplicated: bool = Field(description="True when an existing action was reused")


class ListParams(Filter):
    """`jobs.list`: codescaler jobs, oldest first, a page at a time."""

    status: JobStatus | None = Field(
        default=None, description="Only jobs in this status (or give `statuses`, not both)"
    )
    limit: int = Field(default=100, ge=1, le=LIST_MAX_LIMIT)
    cursor: str | None = Field(
        default=None,
        pattern=r"^\d{1,12}:\d{1,19}$",
        description="`next_cursor` of the previous page (opaque: it names the last job "
        "returned, so that no job is skipped or repeated when others are deleted or created)",
    )
    statuses: Statuses | None = None
    finished_older_than_ms: FinishedOlderThanMs | None = None
    include_kept: IncludeKept = False

    @model_validator(mode="after")
    def _one_status_filter(self) -> ListParams:
        if self.status is not None and self.statuses is not None:
            raise ValueError("status and statuses: give one of them (statuses takes a list)")
        return self


class JobView(Result):
    id: int
    action_id: str
    status: str | None
    created_at_ms: int | None
    finished_at_ms: int | None
    tags: list[str]
    kind: str | None
    actor: str | None
    target: str | None
    kept: bool = Field(
        default=False, description="Tagged `codescaler_keep`: no retention policy selects it"
    )


class ListResult(Result):
    jobs: list[JobView]
    next_cursor: str | None = Field(
        description="Pass it as `cursor` for the next page; null at the end. A page may "
        "hold fewer than `limit` jobs and still have a next one (the work of one call is "
        "bounded)"
    )
    jobs_skipped_malformed: int = Field(
        default=0, description="Jobs hero_proc listed malformed, skipped on this page"
    )


class CodescalerCounts(Result):
    jobs: int
    actions: int
    jobs_by_kind: dict[str, int]
    actions_by_kind: dict[str, int]
    jobs_by_status: dict[str, int]
    jobs_skipped_malformed: int = Field(default=0, description="Malformed listed jobs, skipped")
    actions_skipped_malformed: int = Field(
        default=0, description="Malformed listed actions, skipped"
    )


class HeroProcCounts(Result):
    job_count: int
    action_count: int
    running_count: int


class StatsResult(Result):
    codescaler: CodescalerCounts
    hero_proc: HeroProcCounts


class PingResult(Result):
    """The answer to `system.ping`."""

    pong: Literal[True] = True


class HeroProcHealth(Result):
    socket: str
    reachable: bool
    latency_ms: float | None


class HealthResult(Result):
    status: Literal["ok", "degraded"]
    version: str
    uptime_s: float
    hero_proc: HeroProcHealth


class HistoryParams(Params):
    """`jobs.cleanup_history`: the recorded runs, newest first, a page at a time."""

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(
        default=None,
        pattern=r"^\d{1,18}$",  # a row number SQLite can hold
        description="`next_cursor` of the previous page (opaque)",
    )
    outcome: Outcome | None = Field(default=None, description="Only runs that ended so")
    policy: str | None = Field(
        default=None,
        pattern=POLICY_PATTERN,
        description="Only the runs of this retention policy; `manual` for the runs callers "
        "asked for",
    )
    dry_run: bool | None = Field(
        default=None, description="Only dry runs (true) or only real ones (false)"
    )


class CancelledBy(Result):
    """Who asked to cancel a run (`jobs.cleanup_cancel`), and when."""

    uid: int | None = Field(description="The caller's uid (null when unknown)")
    pid: int | None = Field(description="The caller's pid (null when unknown)")
    at_ms: int = Field(description="When the cancel was asked")


class HistoryEntry(Result):
    """One cleanup run as recorded: written before it deleted anything, checkpointed after
    each page, completed when it ended."""

    started_at_ms: int
    finished_at_ms: int | None = Field(description="null while the run goes on")
    peer_uid: int | None = Field(
        description="Who asked (null for a scheduled run; a policy run by `retention.run` has both)"
    )
    peer_pid: int | None
    params: dict[str, Any] = Field(description="The selection it was given")
    outcome: Outcome | None = Field(description="How it ended; null while it goes on")
    error: str | None = Field(default=None, description="Why it failed or was interrupted")
    jobs_matched: int = 0
    jobs_deleted: int = 0
    jobs_failed: int = 0
    actions_deleted: int = 0
    duration_ms: int | None = Field(description="null while the run goes on")
    run_id: str
    policy: str | None = Field(description="The retention policy that ran it; null: a caller")
    reason: str | None = Field(description="The reason it was given")
    dry_run: bool
    jobs_already_gone: int = 0
    jobs_not_attempted: int = 0
    jobs_skipped_malformed: int = 0
    errors_count: int = Field(default=0, description="Lines in its summary's `errors`")
    background: bool = Field(
        default=False, description="Started by `jobs.cleanup_start`: no caller waited for it"
    )
    cancelled_by: CancelledBy | None = Field(
        default=None, description="Who asked to cancel it (`jobs.cleanup_cancel`); null: nobody"
    )


class HistoryResult(Result):
    runs: list[HistoryEntry] = Field(description="Newest first")
    next_cursor: str | None = Field(
        default=None, description="Pass it as `cursor` for the next page; null at the end"
    )


PolicyName = Annotated[
    str,
    Field(pattern=POLICY_PATTERN, description="A retention policy's name", examples=["user-week"]),
]


class RetentionRunParams(Params):
    """`retention.run`: one retention policy, now."""

    name: PolicyName
    dry_run: bool = Field(
        default=False,
        description="List what it would delete; change nothing (a policy set to dry run, "
        "or HERO_CODESCALERS_POLICIES_DRY_RUN, is always one)",
    )
    reason: Reason | None = None


class PolicyView(Result):
    """A retention policy as configured, and where its schedule stands."""

    name: str
    enabled: bool = Field(description="Whether the scheduler fires it")
    dry_run: bool = Field(description="Whether its runs are dry runs (its own or the switch)")
    every_ms: int = Field(description="Its period, in milliseconds")
    orphan_actions: bool = Field(description="Whether its runs also sweep orphan actions")
    params: dict[str, Any] = Field(description="What it selects, as jobs.cleanup's params")
    next_due_ms: int | None = Field(description="When it fires next; null when disabled")
    last_fired_ms: int | None = Field(description="When it last fired; null: never")
    running: bool = Field(description="Whether a run of it goes on now")
    last_run: HistoryEntry | None = Field(description="Its last recorded run (any outcome)")


class RetentionListResult(Result):
    policies: list[PolicyView] = Field(description="By name")
    file: str | None = Field(description="The policies file; null when none is configured")
    dry_run_switch: bool = Field(description="HERO_CODESCALERS_POLICIES_DRY_RUN")


RUN_ID_PATTERN = r"^[0-9a-f]{16}$"
# The steps of a run, as `jobs.cleanup_status` names them: `listing` (reading a page of
# hero_proc's listing, and a `keep_last` run's first reading), `deleting_jobs` (a page's
# matches), `deleting_actions` (the matched jobs' actions), `settling` (checking the
# deletions without a clear answer, then the orphan-action sweep when the run has one),
# `done`. The first two alternate, page by page.
Phase = Literal["listing", "deleting_jobs", "deleting_actions", "settling", "done"]


class CleanupStarted(Result):
    """The answer of `jobs.cleanup_start`: the run is recorded and goes on in the background."""

    run_id: str = Field(
        description="Follow it with `jobs.cleanup_status`, stop it with `jobs.cleanup_cancel`"
    )
    started_at_ms: int


class RunParams(Params):
    """`jobs.cleanup_status` and `jobs.cleanup_cancel`: one cleanup run, by its id."""

    run_id: str = Field(
        pattern=RUN_ID_PATTERN,
        description="The run's id: from `jobs.cleanup_start`, a summary's `run_id`, "
        "`jobs.cleanup_history`, or the data of -32011",
        examples=["5f0c6a1e9b2d4c83"],
    )


class CleanupStatus(Result):
    """Where a cleanup run stands: its phase, its counts so far, its rate, the time it may
    still take, and once done its outcome (and its summary when this process keeps it)."""

    run_id: str
    phase: Phase = Field(description="Its step now; `done` once it has ended")
    source: Literal["memory", "record"] = Field(
        description="`memory`: this process runs it, or ran it and keeps its summary; its "
        "counts are current. `record`: read from the state database (a run that ended "
        "earlier, or a run of another process sharing the state directory: its counts and "
        "phase as of its last checkpoint)"
    )
    outcome: Outcome | None = Field(description="How it ended; null while it goes on")
    error: str | None = Field(description="Why it failed or was interrupted")
    dry_run: bool
    background: bool = Field(description="Started by `jobs.cleanup_start`")
    policy: str | None = Field(description="The retention policy that ran it; null: a caller")
    peer_uid: int | None = Field(description="Who started it (null for a scheduled run)")
    peer_pid: int | None
    started_at_ms: int
    finished_at_ms: int | None = Field(description="null while it goes on")
    elapsed_ms: int = Field(description="Since it started (its duration once it has ended)")
    jobs_listed: int | None = Field(
        description="Jobs listed so far by the reading under way (each pass through the "
        "listing starts again from 0); null from a record"
    )
    jobs_left_at_most: int | None = Field(
        description="At most this many jobs are still to be listed (bounded by hero_proc's "
        "`stats` job count); null when unknown: from a record, while a `keep_last` run reads "
        "the listing first, once the listing is done, or while hero_proc's stats cannot be had"
    )
    jobs_matched: int
    jobs_deleted: int
    jobs_failed: int
    actions_deleted: int
    jobs_per_s: float | None = Field(
        description="Matched jobs per second since it started (a real run deletes each "
        "page's matches before it lists the next page); null before a second has passed "
        "in a record"
    )
    eta_ms: int | None = Field(
        description="An estimate of the time left to list (and delete) the jobs, from the "
        "listing's rate and `jobs_left_at_most`, so rather long than short; the actions "
        "take a little more. null when it cannot be made (see `jobs_left_at_most`)"
    )
    cancelled_by: CancelledBy | None = Field(description="Who asked to cancel it; null: nobody")
    summary: CleanupSummary | None = Field(
        description="The run's summary once done, when this process keeps it: a background "
        "run's (the last few), and in `jobs.cleanup_cancel`'s answer; null otherwise (a "
        "foreground run's summary went to its caller; the counts above are the record's)"
    )


def without_ids(summary: CleanupSummary) -> CleanupSummary:
    """`summary` with its id lists empty, saying so (`ids: false`)."""
    return summary.model_copy(
        update={
            "job_ids": [],
            "action_ids": [],
            "foreign_action_ids": [],
            "actions_in_use_ids": [],
            "ids_omitted": True,
        }
    )


MAX_JOB_ID = 2**63 - 1  # hero_proc's job ids: positive, 64-bit


class DeletedParams(Params):
    """`jobs.deleted`: the tombstones of the jobs real cleanups deleted, newest first."""

    id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_JOB_ID,
        description="Only this job (exact): what happened to job N?",
        examples=[1],
    )
    kind: Kind | None = None
    target: Target | None = None
    actor: Actor | None = None
    deleted_after_ms: int | None = Field(
        default=None,
        ge=0,
        description="Only jobs deleted at or after this time (milliseconds since the epoch)",
        examples=[1_790_000_000_000],
    )
    deleted_before_ms: int | None = Field(
        default=None,
        ge=0,
        description="Only jobs deleted before this time (milliseconds since the epoch)",
        examples=[1_790_086_400_000],
    )
    run_id: str | None = Field(
        default=None,
        pattern=RUN_ID_PATTERN,
        description="Only jobs deleted by this run (`run_id` of a summary or of the history)",
        examples=["5f0c6a1e9b2d4c83"],
    )
    limit: int = Field(default=100, ge=1, le=LIST_MAX_LIMIT)
    cursor: str | None = Field(
        default=None,
        pattern=r"^\d{1,18}:\d{1,9}$",  # a batch number SQLite can hold
        description="`next_cursor` of the previous page (opaque)",
    )


class DeletedJob(Result):
    """The tombstone of a deleted job: the job as the run listed it, and its end."""

    id: int
    action_id: str
    context: str | None = Field(description="The action's context, when it has one")
    status: str | None = Field(description="Its status when the run listed it")
    created_at_ms: int | None
    finished_at_ms: int | None
    tags: list[str]
    kind: str | None
    actor: str | None
    target: str | None
    run_id: str = Field(description="The run that deleted it (see jobs.cleanup_history)")
    deleted_at_ms: int = Field(
        description="When its deletion was recorded: the run's checkpoint after the page "
        "that deleted it (or the run's end, for a deletion found done by a later check)"
    )


class DeletedResult(Result):
    jobs: list[DeletedJob] = Field(description="Newest first")
    next_cursor: str | None = Field(
        default=None, description="Pass it as `cursor` for the next page; null at the end"
    )
