"""What one cleanup run did: its counts, its failures with their reasons, its summary.

Nothing counts as deleted unless hero_proc answered `{deleted: true}` for that
very call (`deleted`), or a later `job.get` / `action.get` found it gone. A
deletion that did not succeed is, by its outcome: already gone (not found), not
attempted (the run was stopping), of unknown outcome (no answer, hero_proc's
internal error, an answer outside the contract: it may have been carried out,
so it is checked before the summary), or failed with a reason (`describe`). An
action that hero_proc keeps because other jobs still use it ("in use") is none of
these failures: shared actions stay by design, counted and listed on their own.

A real run keeps the matched jobs of the page being deleted as the listing had
them (`page_fields`: their fields in one flat list, no object a job, which the
garbage collector would have to follow); once their outcomes are known, those
deleted become a batch of tombstones (`deleted`), written at the next
checkpoint, and those of unknown outcome wait for the check (`unsettled`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from ..errors import (
    HeroProcProtocolError,
    HeroProcRpcError,
    HeroProcUnavailable,
    InUse,
    NotAttempted,
    NotFound,
    quote,
)
from ..heroproc import OUTSIDE, ActionKey, transient
from ..models import CleanupSummary
from ..state.tombstones import FIELDS, DeletedJobs
from ..tags import ACTION_PREFIX

log = structlog.get_logger(__name__)

CUT = object()  # the outcome of a deletion cut short (cancelled, or a fault of this code)


class Stopped(Exception):
    """The run must send nothing more: `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    elif outcome is CUT:
        reason = "stopped before hero_proc answered"
    else:
        reason = f"{OUTSIDE} (a result of the wrong shape)"
    return reason


def deleted(outcome: Any) -> bool:
    """Whether a delete's outcome is the contract's success: `{deleted: true}`."""
    return isinstance(outcome, dict) and outcome.get("deleted") is True


def unknown(outcome: Any) -> bool:
    """Whether a delete that did not succeed may still have been carried out: no answer,
    hero_proc's internal error, or an answer outside the contract."""
    if isinstance(outcome, HeroProcRpcError):
        return transient(outcome)
    return not isinstance(outcome, NotAttempted)


@dataclass
class Tally:
    """The counts of one cleanup run, kept as its deletions are answered."""

    dry_run: bool
    job_ids: list[int] = field(default_factory=list)  # matched, in listing order
    failed_jobs: set[int] = field(default_factory=set)  # not deleted: not matched again
    # The codescaler actions of the matched jobs, and the other actions they run.
    actions: dict[ActionKey, None] = field(default_factory=dict)
    foreign_actions: dict[str, None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    jobs_deleted: int = 0
    jobs_gone: int = 0
    jobs_failed: int = 0
    jobs_not_attempted: int = 0
    jobs_settled: int = 0
    # Deletions sent whose outcome is unknown, until `job.get` settles them: id -> reason.
    jobs_unknown: dict[int, str] = field(default_factory=dict)
    # The fields (`FIELDS` a job) of the matched jobs of the page being deleted, in the
    # order of job_ids, added by `Walk.select` (none in a dry run); those of unknown
    # outcome, by id; the batches of tombstones not yet written.
    page_fields: list[Any] = field(default_factory=list)
    unsettled: dict[int, list[Any]] = field(default_factory=dict)
    deleted: list[DeletedJobs] = field(default_factory=list)
    malformed_ids: set[int] = field(default_factory=set)  # malformed jobs with a valid id
    malformed_idless: int = 0  # the most entries without a valid id listed in one pass
    actions_deleted: int = 0
    actions_gone: int = 0
    actions_in_use: dict[ActionKey, None] = field(default_factory=dict)  # other jobs use them
    actions_failed: int = 0
    actions_not_attempted: int = 0
    actions_settled: int = 0
    actions_unknown: dict[ActionKey, str] = field(default_factory=dict)
    orphans_deleted: int = 0  # by the orphan sweep (see orphans.py)
    not_attempted: str | None = None  # why calls were not sent, when some were not
    passes: int = 0  # walks through the listing started
    malformed_noted: bool = False  # the errors line on malformed jobs is written
    complete: bool = True
    stopped: str | None = None  # why the run stopped early, when it did
    # Where the run is, for `jobs.cleanup_status` (models.Phase; the engine sets `done`):
    phase: str = "listing"
    listed: int = 0  # jobs listed by the reading under way (a pass, or keep_last's reading)
    present: int = 0  # of those, still in the listing (not deleted nor found gone)
    pass_started: float = 0.0  # time.monotonic() when the pass under way started
    max_jobs: int | None = None  # the run matches at most this many jobs
    has_more: bool = False  # it stopped at max_jobs, and another job matched
    plan_id: str | None = None  # the plan a dry run made, or the plan applied
    plan_expires_at_ms: int | None = None

    @property
    def full(self) -> bool:
        """The run has matched `max_jobs` jobs: it matches no more."""
        return self.max_jobs is not None and len(self.job_ids) >= self.max_jobs

    def match(self, job_id: int, action: str, context: str | None) -> None:
        """Record a matched job and the action it runs."""
        self.job_ids.append(job_id)
        if action.startswith(ACTION_PREFIX):
            self.actions[(action, context)] = None
        else:
            self.foreign_actions[action] = None

    def stop(self, error: str, reason: str | None = None) -> None:
        """The run ends short of complete: `error` says why in the summary; a `reason`
        also means the actions are not attempted (it names why)."""
        self.complete = False
        self.errors.append(error)
        if reason is not None:
            self.stopped = reason
        log.warning("cleanup_stopped", error=error)

    def job_outcomes(self, jobs: list[int], outcomes: list[Any]) -> tuple[int, int | None]:
        """Count each job's delete outcome: how many left the listing (deleted or found
        gone), and the highest id of those still there as far as this run knows. `jobs`
        are the page's matches, in the order they were matched."""
        removed = 0
        still_there = None
        before = self.jobs_deleted
        for job_id, outcome in zip(jobs, outcomes, strict=True):
            if deleted(outcome):
                self.jobs_deleted += 1
                removed += 1
            elif isinstance(outcome, NotFound):
                self.jobs_gone += 1
                removed += 1
            else:
                still_there = job_id
                self.failed_jobs.add(job_id)
                if isinstance(outcome, NotAttempted):
                    self.jobs_not_attempted += 1
                    self.not_attempted = outcome.reason
                elif unknown(outcome):
                    self.jobs_unknown[job_id] = describe(outcome)
                else:
                    self.fail_job(job_id, describe(outcome))
        self._page_deleted(jobs, outcomes, self.jobs_deleted - before)
        return removed, still_there

    def _page_deleted(self, jobs: list[int], outcomes: list[Any], count: int) -> None:
        """The page's outcomes are known: its deleted jobs become a batch of tombstones,
        those of unknown outcome wait for the check."""
        listed, self.page_fields = self.page_fields, []
        if len(listed) != FIELDS * len(jobs):
            raise RuntimeError("the page's deletions are not its matches")
        if count < len(jobs):  # some not deleted (rare): pick
            done = DeletedJobs([], [])
            for n, (job_id, outcome) in enumerate(zip(jobs, outcomes, strict=True)):
                fields = listed[FIELDS * n : FIELDS * (n + 1)]
                if deleted(outcome):
                    done.ids.append(job_id)
                    done.fields.extend(fields)
                elif job_id in self.jobs_unknown:
                    self.unsettled[job_id] = fields
            jobs, listed = done
        if jobs:
            self.deleted.append(DeletedJobs(jobs, listed))

    def action_outcomes(self, keys: list[ActionKey], outcomes: list[Any]) -> None:
        """Count each action's delete outcome."""
        not_attempted = None
        for key, outcome in zip(keys, outcomes, strict=True):
            if deleted(outcome):
                self.actions_deleted += 1
            elif isinstance(outcome, NotFound):
                self.actions_gone += 1
            elif isinstance(outcome, NotAttempted):
                self.actions_not_attempted += 1
                not_attempted = outcome.reason
            elif isinstance(outcome, InUse):
                self.actions_in_use[key] = None  # shared: not a failure
            elif unknown(outcome):
                self.actions_unknown[key] = describe(outcome)
            else:
                self.fail_action(key[0], describe(outcome))
        if not_attempted is not None:
            self.complete = False
            self.errors.append(
                f"{self.actions_not_attempted} actions not attempted: {not_attempted}"
            )

    def settle_jobs(self, jobs: list[int], outcomes: list[Any]) -> None:
        """What `job.get` found of deletions whose outcome was unknown: gone counts as
        deleted, present as a failure; without an answer the outcome stays unknown."""
        gone = DeletedJobs([], [])
        for job_id, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, NotFound):
                del self.jobs_unknown[job_id]
                self.jobs_deleted += 1
                self.jobs_settled += 1
                gone.ids.append(job_id)
                gone.fields.extend(self.unsettled.pop(job_id))
            elif isinstance(outcome, dict) and outcome.get("id") == job_id:
                reason = self.jobs_unknown.pop(job_id)
                del self.unsettled[job_id]
                self.fail_job(job_id, f"still present after {reason}")
        if gone.ids:
            self.deleted.append(gone)

    def settle_actions(self, keys: list[ActionKey], outcomes: list[Any]) -> None:
        """As `settle_jobs`, for actions and `action.get`."""
        for key, outcome in zip(keys, outcomes, strict=True):
            if isinstance(outcome, NotFound):
                del self.actions_unknown[key]
                self.actions_deleted += 1
                self.actions_settled += 1
            elif isinstance(outcome, dict) and outcome.get("name") == key[0]:
                reason = self.actions_unknown.pop(key)
                self.fail_action(key[0], f"still present after {reason}")

    def fail_job(self, job_id: int, reason: str) -> None:
        self.jobs_failed += 1
        self.errors.append(f"job {job_id}: {reason}")
        log.warning("cleanup_job_failed", job_id=job_id, reason=reason)

    def fail_action(self, name: str, reason: str) -> None:
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
        self.unsettled.clear()
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

    def summary(self, duration_ms: int, run_id: str | None = None) -> CleanupSummary:
        self.close()
        return CleanupSummary(
            jobs_deleted=self.jobs_deleted,
            actions_deleted=self.actions_deleted,
            job_ids=self.job_ids,
            action_ids=[name for name, _ in self.actions],
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
            actions_in_use=len(self.actions_in_use),
            actions_failed=self.actions_failed,
            actions_not_attempted=self.actions_not_attempted,
            actions_settled_gone=self.actions_settled,
            foreign_action_ids=list(self.foreign_actions),
            orphan_actions_deleted=self.orphans_deleted,
            complete=self.complete,
            duration_ms=duration_ms,
            run_id=run_id,
            plan_id=self.plan_id,
            plan_expires_at_ms=self.plan_expires_at_ms,
            has_more=self.has_more,
            actions_in_use_ids=[name for name, _ in self.actions_in_use],
        )

    def take_deleted(self) -> list[DeletedJobs]:
        """The batches of tombstones made since the last call, to be written."""
        taken, self.deleted = self.deleted, []
        return taken

    def give_back(self, batches: list[DeletedJobs]) -> None:
        """Batches taken that could not be written: written with the next ones."""
        self.deleted[:0] = batches

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
            "orphan_actions_deleted": self.orphans_deleted,
        }
