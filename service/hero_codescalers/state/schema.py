"""The state database's schema: ordered migrations, the version in `PRAGMA user_version`.

Migration N takes a database at version N - 1 to version N; `LATEST` is the
version this code writes. A database at a newer version than `LATEST` was
written by a newer hero_codescalers: it is never opened (its meaning may have
changed), and the start stops with one line. A migration runs in the same
transaction as the version bump: a crash leaves the old version or the new one.

Migration 1 (on an empty file) sets `auto_vacuum = INCREMENTAL` first, which
SQLite honours only before the first table exists: the pages that history
retention frees are then given back with `PRAGMA incremental_vacuum`.
Migration 2 adds `fires`, when each retention policy last fired.
Migration 3 adds `plans` and `plan_jobs`: the dry runs' plans and the jobs of each.
Migration 4 adds to `runs` what `jobs.cleanup_status` and `jobs.cleanup_cancel` read
and write: whether a run goes on in the background, its phase at its last
checkpoint, and who asked to cancel it, and when.
Migration 5 adds the tombstones of deleted jobs (see tombstones.py).
"""

from __future__ import annotations

# The runs, newest last (`seq`), each written when it starts, checkpointed per page
# and completed when it ends; `outcome` is NULL while it goes on. `holder` is the
# process that ran it (see lease.py), `counts` a JSON object of its counts.
_RUNS = """
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    holder TEXT NOT NULL,
    policy TEXT,
    peer_uid INTEGER,
    peer_pid INTEGER,
    params TEXT NOT NULL,
    reason TEXT,
    dry_run INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    outcome TEXT,
    error TEXT,
    counts TEXT NOT NULL DEFAULT '{}',
    errors_count INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER
)
"""

# The single-cleanup lease: one row per lease name while a process holds it.
_LEASES = """
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    run_id TEXT,
    expires_at_ms INTEGER NOT NULL
)
"""

# When each retention policy last fired (a run started, or was found to be due while
# another run held the lock, see retention/scheduler.py): a restart derives "due" from it.
_FIRES = """
CREATE TABLE fires (
    policy TEXT PRIMARY KEY,
    fired_at_ms INTEGER NOT NULL
)
"""

# The plans of dry runs (see plans.py): what each selected (`params`, as jobs.cleanup's,
# its age cutoffs taken at `created_at_ms`), until when it may be applied, and the run
# that applied it. Kept as long as the history; the jobs of a plan that expired or was
# applied are dropped by the housekeeping.
_PLANS = """
CREATE TABLE plans (
    plan_id TEXT PRIMARY KEY,
    run_id TEXT,
    params TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    jobs INTEGER NOT NULL,
    applied_run_id TEXT,
    applied_at_ms INTEGER
)
"""

# The jobs of each plan, by id.
_PLAN_JOBS = """
CREATE TABLE plan_jobs (
    plan_id TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    PRIMARY KEY (plan_id, job_id)
) WITHOUT ROWID
"""

# Background runs (migration 4): `background` 1 for a run started by jobs.cleanup_start;
# `phase` as of its last checkpoint (see cleanup/run.py); `cancelled_by_uid`,
# `cancelled_by_pid` and `cancelled_at_ms` set by jobs.cleanup_cancel while it goes (a
# cancel asked through another process sharing the state directory reaches the run at
# its next checkpoint or lease renewal).
_RUNS_PROGRESS = (
    "ALTER TABLE runs ADD COLUMN background INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN phase TEXT",
    "ALTER TABLE runs ADD COLUMN cancelled_by_uid INTEGER",
    "ALTER TABLE runs ADD COLUMN cancelled_by_pid INTEGER",
    "ALTER TABLE runs ADD COLUMN cancelled_at_ms INTEGER",
)

# The tombstones of the jobs real runs deleted (migration 5), a batch (one page's) to a
# row, newest last (`seq`, never reused: it is in the reads' cursors): see tombstones.py.
# `ids` holds the job ids (8 bytes each, little-endian), `data` their other fields (a
# JSON list); `tags_indexed` is 1 once its distinct tags are listed in tombstone_tags.
_TOMBSTONE_BATCHES = """
CREATE TABLE tombstone_batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    deleted_at_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    tags_indexed INTEGER NOT NULL,
    ids BLOB NOT NULL,
    data BLOB NOT NULL
)
"""

# Each distinct tag of an indexed batch: which batches hold a job carrying a tag.
_TOMBSTONE_TAGS = """
CREATE TABLE tombstone_tags (
    tag TEXT NOT NULL,
    batch INTEGER NOT NULL,
    PRIMARY KEY (tag, batch)
) WITHOUT ROWID
"""

# The statements of each migration, one statement a string (a transaction cannot run
# a script); MIGRATIONS[0] makes version 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        _RUNS,
        "CREATE INDEX runs_finished ON runs (finished_at_ms)",
        "CREATE INDEX runs_open ON runs (holder) WHERE outcome IS NULL",
        _LEASES,
    ),
    (_FIRES,),
    (_PLANS, "CREATE INDEX plans_created ON plans (created_at_ms)", _PLAN_JOBS),
    _RUNS_PROGRESS,
    (
        _TOMBSTONE_BATCHES,
        "CREATE INDEX tombstone_batches_run ON tombstone_batches (run_id)",
        "CREATE INDEX tombstone_batches_ids ON tombstone_batches (first_id, last_id)",
        "CREATE INDEX tombstone_batches_time ON tombstone_batches (deleted_at_ms)",
        _TOMBSTONE_TAGS,
        "CREATE INDEX tombstone_tags_batch ON tombstone_tags (batch)",
    ),
)
LATEST = len(MIGRATIONS)
