"""The plans of dry runs: what a preview selected, to be applied exactly.

A dry run of `jobs.cleanup` writes its plan: the selection it was given (as
jobs.cleanup's params, its age cutoffs taken at `created_at_ms`) and the ids of
the jobs it matched. Applying the plan (`jobs.cleanup {plan_id}`) marks it applied
by its run, in the transaction that records the run and takes the lease: a plan is
applied once, before its expiry. A run that failed as a whole before it matched
any job gives its plan back (`unapply`): nothing of it was done.

The housekeeping drops the jobs of the plans that expired or were applied (they
are of no more use), and the plans themselves with the history (`prune`): until
then, applying one says precisely why it cannot be (`expired`, `applied`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import PlanUnusable
from .database import rows


@dataclass(frozen=True)
class Plan:
    """A plan that may be applied: its selection and its jobs."""

    plan_id: str
    params: dict[str, Any]  # its selection, as jobs.cleanup's params
    created_at_ms: int  # when its age cutoffs were taken
    job_ids: frozenset[int]


def insert(
    connection: sqlite3.Connection,
    *,
    plan_id: str,
    run_id: str | None,
    params: dict[str, Any],
    created_at_ms: int,
    expires_at_ms: int,
    job_ids: Iterable[int],
) -> None:
    ids = sorted(set(job_ids))
    connection.execute(
        "INSERT INTO plans (plan_id, run_id, params, created_at_ms, expires_at_ms, jobs) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            plan_id,
            run_id,
            json.dumps(params),
            created_at_ms,
            expires_at_ms,
            len(ids),
        ),
    )
    connection.executemany(
        "INSERT INTO plan_jobs (plan_id, job_id) VALUES (?, ?)", ((plan_id, i) for i in ids)
    )


def _usable(connection: sqlite3.Connection, plan_id: str, now_ms: int) -> dict[str, Any]:
    """The plan's row, or PlanUnusable saying why it cannot be applied at `now_ms`."""
    found = rows(connection.execute("SELECT * FROM plans WHERE plan_id = ?", (plan_id,)))
    if not found:
        raise PlanUnusable(plan_id, "unknown")
    row = found[0]
    if row["applied_run_id"] is not None:
        raise PlanUnusable(
            plan_id, "applied", run_id=row["applied_run_id"], applied_at_ms=row["applied_at_ms"]
        )
    if row["expires_at_ms"] <= now_ms:
        raise PlanUnusable(plan_id, "expired", expired_at_ms=row["expires_at_ms"])
    return row


def read(connection: sqlite3.Connection, plan_id: str, now_ms: int) -> Plan:
    """The plan `plan_id` with its jobs; PlanUnusable when it cannot be applied."""
    row = _usable(connection, plan_id, now_ms)
    ids = connection.execute("SELECT job_id FROM plan_jobs WHERE plan_id = ?", (plan_id,))
    return Plan(
        plan_id=plan_id,
        params=json.loads(row["params"]),
        created_at_ms=row["created_at_ms"],
        job_ids=frozenset(job_id for (job_id,) in ids),
    )


def apply(connection: sqlite3.Connection, plan_id: str, run_id: str, now_ms: int) -> None:
    """Mark the plan applied by `run_id` (in the caller's transaction); PlanUnusable when it
    cannot be (unknown, expired, applied already)."""
    _usable(connection, plan_id, now_ms)
    connection.execute(
        "UPDATE plans SET applied_run_id = ?, applied_at_ms = ? WHERE plan_id = ?",
        (run_id, now_ms, plan_id),
    )


def unapply(connection: sqlite3.Connection, plan_id: str, run_id: str) -> None:
    """Give the plan back: the run `run_id` that applied it did nothing of it."""
    connection.execute(
        "UPDATE plans SET applied_run_id = NULL, applied_at_ms = NULL "
        "WHERE plan_id = ? AND applied_run_id = ?",
        (plan_id, run_id),
    )


def prune(connection: sqlite3.Connection, now_ms: int, before_ms: int) -> tuple[int, int]:
    """Drop the jobs of the plans expired at `now_ms` or applied, and the plans made before
    `before_ms`; how many job rows and plans were deleted."""
    jobs = connection.execute(
        "DELETE FROM plan_jobs WHERE plan_id IN (SELECT plan_id FROM plans "
        "WHERE applied_run_id IS NOT NULL OR expires_at_ms <= ? OR created_at_ms < ?)",
        (now_ms, before_ms),
    ).rowcount
    plans = connection.execute("DELETE FROM plans WHERE created_at_ms < ?", (before_ms,)).rowcount
    return jobs, plans
