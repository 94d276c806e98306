"""A cleanup run as this process knows it, and what `jobs.cleanup_status` says of a run.

`LiveRun` is a run of this process, from its start to its end: what it was
asked, its work (`CleanupRun`, whose tally counts and names its phase), who
asked to cancel it, how it ended. `of_run` tells where it stands from that;
`of_record` tells the same, as far as it can, from the run's record in the state
database (a run that ended and that this process does not keep, or a run of
another process sharing the state directory).

The time left is estimated only while the jobs are listed and deleted, from the
listing's rate in the pass under way and a bound on what is left to list: the
jobs hero_proc holds (its `stats` job count, asked once a pass by the first
status call, see `Engine.status`) less those listed and still there. Every job
the walk may still meet is among them, so the estimate errs long: jobs that
other filters leave out count too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .cleanup import CleanupRun
from .models import CancelledBy, CleanupStatus, CleanupSummary
from .state import Cancel, RunStart

# Phases during which the estimate of the time left can be made.
LISTING = ("listing", "deleting_jobs")


@dataclass(frozen=True)
class Ended:
    """How a run ended."""

    outcome: str
    error: str | None
    counts: dict[str, int]
    finished_at_ms: int
    duration_ms: int
    summary: CleanupSummary | None  # None when it failed as a whole


@dataclass(frozen=True)
class Bound:
    """At most `left` jobs were still to be listed when `listed` had been, in pass `passes`."""

    passes: int
    listed: int
    left: int


@dataclass
class LiveRun:
    """A cleanup run of this process: what it was asked, its work, and how it ended."""

    start: RunStart
    # What it does besides its selection (see `Engine.cleanup`):
    sweep_orphans: bool = False
    max_jobs: int | None = None
    plan_at_ms: int | None = None  # a dry run that writes its plan: its cutoffs' time
    applying: str | None = None  # the plan the run applies
    ids: bool = True  # False: the summary it keeps has no id lists (`ids: false`)
    recorded: bool = False  # its record is written (a dry run may go on without)
    problem: str | None = None  # set when its record or lease cannot be kept up
    cancel: Cancel | None = None  # set when a caller asked to cancel it
    work: CleanupRun | None = None  # set once it is recorded
    t0: float = field(default_factory=time.monotonic)
    # For a background run: done once it is recorded (or has failed to be), which its
    # starter waits for.
    begun: asyncio.Future[None] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end: Ended | None = None
    bound: Bound | None = None

    @property
    def needs_bound(self) -> bool:
        """Whether a status call should ask hero_proc's job count: the jobs are being
        listed in a pass that has no bound yet."""
        if self.end is not None or self.work is None:
            return False
        tally = self.work.tally
        return (
            tally.passes >= 1
            and tally.phase in LISTING
            and (self.bound is None or self.bound.passes != tally.passes)
        )

    def bind(self, job_count: int) -> None:
        """hero_proc holds `job_count` jobs now: bound what the pass under way has left."""
        if self.work is not None:
            tally = self.work.tally
            self.bound = Bound(tally.passes, tally.listed, max(job_count - tally.present, 0))


def _cancelled_by(cancel: Cancel | None) -> CancelledBy | None:
    if cancel is None:
        return None
    return CancelledBy(uid=cancel.uid, pid=cancel.pid, at_ms=cancel.at_ms)


def _rate(matched: int, elapsed_ms: int) -> float | None:
    return round(matched * 1000 / elapsed_ms, 1) if elapsed_ms > 0 else None


def of_run(run: LiveRun, now: float | None = None) -> CleanupStatus:
    """Where `run` stands (`now`: time.monotonic())."""
    now = time.monotonic() if now is None else now
    start = run.start
    tally = run.work.tally if run.work is not None else None
    end = run.end
    listed = left = eta = None
    if end is not None:
        counts, phase, elapsed = end.counts, "done", end.duration_ms
    elif tally is not None:
        counts, phase, elapsed = tally.counts(), tally.phase, int((now - run.t0) * 1000)
        listed = tally.listed
        bound = run.bound
        if bound is not None and bound.passes == tally.passes and phase in LISTING:
            left = max(bound.left - (tally.listed - bound.listed), 0)
            spent = now - tally.pass_started
            if tally.listed and spent > 0:
                eta = int(left * spent / tally.listed * 1000)
    else:  # not recorded yet
        counts, phase, elapsed = {}, "listing", int((now - run.t0) * 1000)
    return CleanupStatus(
        run_id=start.run_id,
        phase=phase,
        source="memory",
        outcome=None if end is None else end.outcome,
        error=None if end is None else end.error,
        dry_run=start.dry_run,
        background=start.background,
        policy=start.policy,
        peer_uid=start.peer_uid,
        peer_pid=start.peer_pid,
        started_at_ms=start.started_at_ms,
        finished_at_ms=None if end is None else end.finished_at_ms,
        elapsed_ms=elapsed,
        jobs_listed=listed,
        jobs_left_at_most=left,
        jobs_matched=counts.get("jobs_matched", 0),
        jobs_deleted=counts.get("jobs_deleted", 0),
        jobs_failed=counts.get("jobs_failed", 0),
        actions_deleted=counts.get("actions_deleted", 0),
        jobs_per_s=_rate(counts.get("jobs_matched", 0), elapsed),
        eta_ms=eta,
        cancelled_by=_cancelled_by(run.cancel),
        summary=None if end is None else end.summary,
    )


def of_record(row: dict[str, Any], now_ms: int) -> CleanupStatus:
    """Where the run of the record `row` (see `state.runs.find`) stands, as far as the
    record tells: its counts and phase as of its last checkpoint; `now_ms`: wall time."""
    counts = row["counts"]
    started = row["started_at_ms"]
    ended = row["outcome"] is not None
    if ended:
        elapsed = row["duration_ms"] or 0
        counted = elapsed
    else:
        elapsed = max(now_ms - started, 0)
        counted = max(row["updated_at_ms"] - started, 0)  # the counts' age
    cancelled = row["cancelled_by"]
    return CleanupStatus(
        run_id=row["run_id"],
        phase="done" if ended else (row["phase"] or "listing"),
        source="record",
        outcome=row["outcome"],
        error=row["error"],
        dry_run=row["dry_run"],
        background=row["background"],
        policy=row["policy"],
        peer_uid=row["peer_uid"],
        peer_pid=row["peer_pid"],
        started_at_ms=started,
        finished_at_ms=row["finished_at_ms"],
        elapsed_ms=elapsed,
        jobs_listed=None,
        jobs_left_at_most=None,
        jobs_matched=counts.get("jobs_matched", 0),
        jobs_deleted=counts.get("jobs_deleted", 0),
        jobs_failed=counts.get("jobs_failed", 0),
        actions_deleted=counts.get("actions_deleted", 0),
        jobs_per_s=_rate(counts.get("jobs_matched", 0), counted),
        eta_ms=None,
        cancelled_by=None if cancelled is None else CancelledBy(**cancelled),
        summary=None,
    )
