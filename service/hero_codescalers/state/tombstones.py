"""Tombstones: the jobs real cleanups deleted, kept as long as the runs that deleted them.

Every job a real run deleted (hero_proc answered `{deleted: true}`, or a later
`job.get` found it gone) leaves a tombstone: the job as the run listed it (id,
action, context, tags, status, created and finished times), the run that
deleted it and when. A run's tombstones are written with its checkpoint after
each page, in the same transaction, and the last ones with its end.

They are stored a batch to a row (`tombstone_batches`: the jobs of one page),
not a job to a row: a row a job costs SQLite 4 µs of CPU without an index and
11 µs with the six the reads need, where a whole cleanup spends 7 to 10 µs on a
job. A batch row holds the job ids (`ids`: 8 bytes each, little-endian, read
without the rest) and their other fields as one JSON list (`data`: `FIELDS` a
job), and, for the reads, its id range (`first_id`, `last_id`), `run_id` and
`deleted_at_ms` (the time of its checkpoint), each indexed. Writing a batch
costs the cleanup about 3,200 machine instructions a job, 6% of its own
(see the README's "Speed").

The tags are indexed when first read, not written: `tombstone_tags` lists each
distinct tag of a batch once a read by tag has decoded it (`tags_indexed`), and
a read by tag decodes only the batches not indexed yet and those the index
names. Indexing at write (the union of every job's tags) would add a fifth to
what a cleanup pays, for reads that may never come.

A read (`page`) selects the candidate batches by these columns, newest first,
and decodes only those; a tombstone's place is its batch and its position in
it, which is what the opaque cursor holds. `prune` drops the tombstones of the
runs the history drops.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

# What a tombstone keeps of a job besides its id, in this order.
FIELDS = 6  # action_id, context, tags, status, created_at_ms, finished_at_ms
_TAGS = 2


class DeletedJobs(NamedTuple):
    """A batch of deleted jobs as the run listed them: their ids, and their fields
    (`FIELDS` a job, in the order of the ids) in one flat list: no object a job, which
    the cleanup would make and the garbage collector follow, 10,000 a page."""

    ids: list[int]
    fields: list[Any]


def _ids(blob: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(blob) // 8}q", blob)


def insert(
    connection: sqlite3.Connection, run_id: str, deleted_at_ms: int, jobs: DeletedJobs
) -> None:
    """One batch: the tombstones of `jobs`, deleted by `run_id` at `deleted_at_ms` (its tags
    not indexed yet: see `index`)."""
    ids = jobs.ids
    connection.execute(
        "INSERT INTO tombstone_batches (run_id, deleted_at_ms, size, first_id, last_id, "
        "tags_indexed, ids, data) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
        (
            run_id,
            deleted_at_ms,
            len(ids),
            min(ids),
            max(ids),
            struct.pack(f"<{len(ids)}q", *ids),  # array("q", ids) parses each item: 3x
            orjson.dumps(jobs.fields),
        ),
    )


def index(connection: sqlite3.Connection, batches: dict[int, set[str]]) -> None:
    """List in tombstone_tags the distinct tags of `batches` (by number), read by a page;
    a batch indexed meanwhile, or pruned, is left as it is."""
    for batch, tags in batches.items():
        connection.executemany(
            "INSERT INTO tombstone_tags (tag, batch) SELECT ?, seq FROM tombstone_batches "
            "WHERE seq = ? AND tags_indexed = 0",
            [(tag, batch) for tag in tags],
        )
        connection.execute("UPDATE tombstone_batches SET tags_indexed = 1 WHERE seq = ?", (batch,))


def prune(connection: sqlite3.Connection) -> None:
    """Drop the tombstones of the runs no longer in the history (after `runs.prune`)."""
    orphans = "SELECT seq FROM tombstone_batches WHERE run_id NOT IN (SELECT run_id FROM runs)"
    connection.execute(f"DELETE FROM tombstone_tags WHERE batch IN ({orphans})")  # noqa: S608 -- a fixed query
    connection.execute(f"DELETE FROM tombstone_batches WHERE seq IN ({orphans})")  # noqa: S608 -- a fixed query


@dataclass
class Page:
    """A page of tombstones, newest first; the place of its last one (the cursor of the
    next page: None at the end); the tags of the batches it decoded that are not indexed
    yet (by batch number), when it was asked for tags."""

    found: list[dict[str, Any]] = field(default_factory=list)
    after: tuple[int, int] | None = None
    unindexed: dict[int, set[str]] = field(default_factory=dict)


def page(
    connection: sqlite3.Connection,
    *,
    limit: int,
    cursor: tuple[int, int] | None = None,
    job_id: int | None = None,
    run_id: str | None = None,
    tags: Collection[str] = (),
    deleted_after_ms: int | None = None,
    deleted_before_ms: int | None = None,
) -> Page:
    """Up to `limit` tombstones, newest first, after `cursor` (the batch and position of
    the last one of the previous page), that match every filter given: the job `job_id`,
    deleted by `run_id`, carrying every tag of `tags`, deleted at or after
    `deleted_after_ms` and before `deleted_before_ms`."""
    where: list[str] = ["1 = 1"]
    args: list[Any] = []
    if cursor is not None:
        where.append("seq <= ?")
        args.append(cursor[0])
    if run_id is not None:
        where.append("run_id = ?")
        args.append(run_id)
    if deleted_after_ms is not None:
        where.append("deleted_at_ms >= ?")
        args.append(deleted_after_ms)
    if deleted_before_ms is not None:
        where.append("deleted_at_ms < ?")
        args.append(deleted_before_ms)
    if job_id is not None:
        where.append("first_id <= ? AND last_id >= ?")
        args += [job_id, job_id]
    for tag in tags:
        where.append(
            "(tags_indexed = 0 OR seq IN (SELECT batch FROM tombstone_tags WHERE tag = ?))"
        )
        args.append(tag)
    batches = connection.execute(
        "SELECT seq, run_id, deleted_at_ms, size, tags_indexed, ids FROM tombstone_batches "  # noqa: S608 -- fixed clauses, values bound
        f"WHERE {' AND '.join(where)} ORDER BY seq DESC",
        args,
    )
    required = set(tags)
    result = Page()
    for seq, run, deleted_at_ms, size, indexed, blob in batches:
        start = min(cursor[1], size) if cursor is not None and seq == cursor[0] else size
        ids = _ids(blob)
        positions = [p for p in range(start - 1, -1, -1) if job_id is None or ids[p] == job_id]
        if not positions:
            continue
        batch = _Batch(connection, seq, ids)
        if required and not indexed:
            result.unindexed[seq] = set().union(*batch.fields[_TAGS::FIELDS])
        for position in positions:
            if required and not required.issubset(batch.tags(position)):
                continue
            if len(result.found) == limit:
                return result
            result.found.append(batch.job(position, run, deleted_at_ms))
            result.after = (seq, position)
    result.after = None
    return result


class _Batch:
    """The tombstones of one batch, decoded."""

    def __init__(self, connection: sqlite3.Connection, seq: int, ids: tuple[int, ...]) -> None:
        (data,) = connection.execute(
            "SELECT data FROM tombstone_batches WHERE seq = ?", (seq,)
        ).fetchone()
        self.ids = ids
        self.fields: list[Any] = orjson.loads(data)

    def tags(self, p: int) -> list[str]:
        tags: list[str] = self.fields[FIELDS * p + _TAGS]
        return tags

    def job(self, p: int, run_id: str, deleted_at_ms: int) -> dict[str, Any]:
        action_id, context, tags, status, created_at_ms, finished_at_ms = self.fields[
            FIELDS * p : FIELDS * (p + 1)
        ]
        return {
            "id": self.ids[p],
            "action_id": action_id,
            "context": context,
            "tags": tags,
            "status": status,
            "created_at_ms": created_at_ms,
            "finished_at_ms": finished_at_ms,
            "run_id": run_id,
            "deleted_at_ms": deleted_at_ms,
        }
