"""The audit trail: one row per cleanup run, written before it deletes anything.

A run's row is inserted when it starts (who: the peer's uid and pid, or the
policy; its params, reason, dry run or not), checkpointed after each page (its
counts so far, `updated_at_ms`) and completed when it ends (outcome, counts,
errors count, duration). A cancel asked while it goes is written on its row (who,
when: `request_cancel`), where the run's process reads it at its next checkpoint
(`cancel_of`), whichever process it was asked through. A row still open (no
outcome) whose process has ended is a run cut short by a crash: `interrupt`
completes it as `interrupted`, with the counts of its last checkpoint and that
checkpoint's time as its end.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .database import rows

INTERRUPTED_ERROR = (
    "interrupted: the service process ended during the run (killed or crashed); "
    "the counts are those of its last checkpoint"
)


@dataclass(frozen=True)
class RunStart:
    """What is known of a run before it does anything."""

    run_id: str
    started_at_ms: int
    dry_run: bool
    params: dict[str, Any]
    reason: str | None = None
    policy: str | None = None  # None: a manual run, by the peer below
    peer_uid: int | None = None
    peer_pid: int | None = None
    background: bool = False  # started by jobs.cleanup_start: no caller waits for it


@dataclass(frozen=True)
class Cancel:
    """Who asked to cancel a run (`jobs.cleanup_cancel`: the peer's uid and pid), and when."""

    uid: int | None
    pid: int | None
    at_ms: int

    @property
    def reason(self) -> str:
        """Why the run stops, as its summary's `errors` and its log lines say it."""
        return f"cancelled by uid {self.uid} (pid {self.pid})"


def insert(connection: sqlite3.Connection, run: RunStart, holder: str) -> None:
    connection.execute(
        "INSERT INTO runs (run_id, holder, policy, peer_uid, peer_pid, params, reason, dry_run, "
        "started_at_ms, updated_at_ms, background) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run.run_id,
            holder,
            run.policy,
            run.peer_uid,
            run.peer_pid,
            json.dumps(run.params, sort_keys=True),
            run.reason,
            int(run.dry_run),
            run.started_at_ms,
            run.started_at_ms,
            int(run.background),
        ),
    )


def checkpoint(
    connection: sqlite3.Connection,
    run_id: str,
    counts: dict[str, int],
    errors_count: int,
    now_ms: int,
    *,
    phase: str | None = None,
) -> None:
    connection.execute(
        "UPDATE runs SET counts = ?, errors_count = ?, updated_at_ms = ?, "
        "phase = coalesce(?, phase) WHERE run_id = ? AND outcome IS NULL",
        (json.dumps(counts, sort_keys=True), errors_count, now_ms, phase, run_id),
    )


def request_cancel(connection: sqlite3.Connection, run_id: str, cancel: Cancel) -> bool:
    """Write who asked to cancel the run, unless it has ended or a cancel was asked
    before (the first is kept); whether it was written."""
    cursor = connection.execute(
        "UPDATE runs SET cancelled_by_uid = ?, cancelled_by_pid = ?, cancelled_at_ms = ? "
        "WHERE run_id = ? AND outcome IS NULL AND cancelled_at_ms IS NULL",
        (cancel.uid, cancel.pid, cancel.at_ms, run_id),
    )
    return cursor.rowcount == 1


def cancel_of(connection: sqlite3.Connection, run_id: str) -> Cancel | None:
    """The cancel asked of the run, if any."""
    row = connection.execute(
        "SELECT cancelled_by_uid, cancelled_by_pid, cancelled_at_ms FROM runs "
        "WHERE run_id = ? AND cancelled_at_ms IS NOT NULL",
        (run_id,),
    ).fetchone()
    return None if row is None else Cancel(row[0], row[1], row[2])


def find(connection: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    """The record of the run `run_id` (as `page` gives it), or None."""
    found = rows(connection.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)))
    return _decoded(found[0]) if found else None


def _decoded(run: dict[str, Any]) -> dict[str, Any]:
    """A row as the engine reads it: JSON and booleans decoded, the cancel as one field."""
    run["params"] = json.loads(run["params"])
    run["counts"] = json.loads(run["counts"])
    run["dry_run"] = bool(run["dry_run"])
    run["background"] = bool(run["background"])
    at = run.pop("cancelled_at_ms")
    uid, pid = run.pop("cancelled_by_uid"), run.pop("cancelled_by_pid")
    run["cancelled_by"] = None if at is None else {"uid": uid, "pid": pid, "at_ms": at}
    return run


def complete(
    connection: sqlite3.Connection,
    run_id: str,
    *,
    outcome: str,
    error: str | None,
    counts: dict[str, int],
    errors_count: int,
    duration_ms: int,
    now_ms: int,
) -> None:
    """The run's end (an `interrupted` mark by another process included: the run's own
    account is the better one)."""
    connection.execute(
        "UPDATE runs SET outcome = ?, error = ?, counts = ?, errors_count = ?, duration_ms = ?, "
        "finished_at_ms = ?, updated_at_ms = ? WHERE run_id = ?",
        (
            outcome,
            error,
            json.dumps(counts, sort_keys=True),
            errors_count,
            duration_ms,
            now_ms,
            now_ms,
            run_id,
        ),
    )


def insert_ended(
    connection: sqlite3.Connection, run: RunStart, holder: str, outcome: str, error: str
) -> None:
    """A run that ended as it started (a policy's run `skipped`): one complete row."""
    insert(connection, run, holder)
    complete(
        connection,
        run.run_id,
        outcome=outcome,
        error=error,
        counts={},
        errors_count=0,
        duration_ms=0,
        now_ms=run.started_at_ms,
    )


def interrupt(connection: sqlite3.Connection, live: set[str]) -> list[dict[str, Any]]:
    """Complete as `interrupted` every open run whose holder is not in `live`; those runs."""
    found = [
        run
        for run in rows(
            connection.execute(
                "SELECT run_id, holder, started_at_ms, updated_at_ms, counts FROM runs "
                "WHERE outcome IS NULL ORDER BY seq"
            )
        )
        if run["holder"] not in live
    ]
    for run in found:
        connection.execute(
            "UPDATE runs SET outcome = 'interrupted', error = ?, finished_at_ms = updated_at_ms, "
            "duration_ms = updated_at_ms - started_at_ms WHERE run_id = ?",
            (INTERRUPTED_ERROR, run["run_id"]),
        )
        run["counts"] = json.loads(run["counts"])
    return found


def prune(connection: sqlite3.Connection, before_ms: int) -> int:
    """Delete the finished runs that ended before `before_ms`; how many."""
    cursor = connection.execute(
        "DELETE FROM runs WHERE outcome IS NOT NULL AND finished_at_ms < ?", (before_ms,)
    )
    return cursor.rowcount


def exists(connection: sqlite3.Connection, run_id: str) -> bool:
    found = connection.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return found is not None


MANUAL = "manual"  # the `policy` filter that selects runs asked for by a caller


def page(
    connection: sqlite3.Connection,
    *,
    limit: int,
    before_seq: int | None,
    outcome: str | None,
    policy: str | None,
    dry_run: bool | None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `limit` runs, newest first, older than the run `before_seq` (a cursor), that
    match every filter given; and the cursor of the next page (None at the end)."""
    where: list[str] = ["1 = 1"]
    args: list[Any] = []
    if before_seq is not None:
        where.append("seq < ?")
        args.append(before_seq)
    if outcome is not None:
        where.append("outcome = ?")
        args.append(outcome)
    if policy == MANUAL:
        where.append("policy IS NULL")
    elif policy is not None:
        where.append("policy = ?")
        args.append(policy)
    if dry_run is not None:
        where.append("dry_run = ?")
        args.append(int(dry_run))
    found = rows(
        connection.execute(
            f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",  # noqa: S608 -- fixed clauses, values bound
            (*args, limit + 1),
        )
    )
    more = len(found) > limit
    found = [_decoded(run) for run in found[:limit]]
    return found, (found[-1]["seq"] if more else None)


def last_finished(connection: sqlite3.Connection) -> list[dict[str, Any]]:
    """The last finished real run (not dry) of each policy (`policy` None: manual runs)."""
    return rows(
        connection.execute(
            "SELECT policy, outcome, finished_at_ms, duration_ms FROM runs WHERE seq IN "
            "(SELECT max(seq) FROM runs WHERE dry_run = 0 AND outcome IS NOT NULL "
            "AND outcome != 'skipped' GROUP BY policy)"
        )
    )


def fires(connection: sqlite3.Connection) -> dict[str, int]:
    """When each retention policy last fired (milliseconds)."""
    return dict(connection.execute("SELECT policy, fired_at_ms FROM fires").fetchall())


def fired(connection: sqlite3.Connection, policy: str, at_ms: int) -> None:
    connection.execute(
        "INSERT INTO fires (policy, fired_at_ms) VALUES (?, ?) "
        "ON CONFLICT (policy) DO UPDATE SET fired_at_ms = excluded.fired_at_ms",
        (policy, at_ms),
    )


def unfire(connection: sqlite3.Connection, policy: str, at_ms: int, previous: int | None) -> None:
    """The fire of `policy` at `at_ms` did not run: its last fire is `previous` again
    (none: never fired), unless another fire was persisted since."""
    if previous is None:
        connection.execute(
            "DELETE FROM fires WHERE policy = ? AND fired_at_ms = ?", (policy, at_ms)
        )
    else:
        connection.execute(
            "UPDATE fires SET fired_at_ms = ? WHERE policy = ? AND fired_at_ms = ?",
            (previous, policy, at_ms),
        )


# What -32011 tells of the run holding the single-cleanup lock (see errors.CleanupRunning).
HOLDER_FIELDS = ("run_id", "started_at_ms", "peer_uid", "peer_pid", "policy", "background")


def holder(connection: sqlite3.Connection, run_id: str | None) -> dict[str, Any]:
    """Who started the run `run_id` and when (`HOLDER_FIELDS`), as far as its record
    tells; only its id when it has none."""
    row = None
    if run_id is not None:
        row = connection.execute(
            f"SELECT {', '.join(HOLDER_FIELDS)} FROM runs WHERE run_id = ?",  # noqa: S608 -- fixed names
            (run_id,),
        ).fetchone()
    if row is None:
        return {"run_id": run_id}
    found = dict(zip(HOLDER_FIELDS, row, strict=True))
    found["background"] = bool(found["background"])
    return found
