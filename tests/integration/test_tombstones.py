"""What happened to job N: the tombstones real cleanups leave, `jobs.deleted`, and how
long they are kept."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hero_codescalers.cleanup.tally import Tally
from hero_codescalers.errors import StateUnavailable
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator, seed_population
from hero_codescalers.state import FILE_NAME, RunStart, State
from hero_codescalers.state.tombstones import DeletedJobs
from hero_codescalers.tags import labels

from ..conftest import Caller, Service, ServiceFactory
from .terminal import on_terminal
from .test_cli import cli
from .test_state import DAY_MS, history, running


async def deleted(caller: Caller, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = await caller.call("jobs.deleted", params)
    return result


async def every_tombstone(
    caller: Caller, limit: int = 1000, **filters: Any
) -> list[dict[str, Any]]:
    """Every tombstone matching `filters`, page after page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await deleted(
            caller, limit=limit, **filters, **({"cursor": cursor} if cursor else {})
        )
        found += page["jobs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def tombstone_of(job: dict[str, Any], run_id: str, deleted_at_ms: int) -> dict[str, Any]:
    """The tombstone `jobs.deleted` shows of `job` as hero_proc held it."""
    names = labels(job["tags"])
    return {
        **job,
        "kind": names.kind,
        "actor": names.actor,
        "target": names.target,
        "run_id": run_id,
        "deleted_at_ms": deleted_at_ms,
    }


# What a run leaves ---------------------------------------------------------------------


async def test_a_real_run_leaves_a_tombstone_of_each_job_it_deleted(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Each job deleted has one tombstone: the job exactly as hero_proc held it (context
    and odd times included), its labels, the run that deleted it and when; the jobs left
    out of the selection have none."""
    seed_population(simulator.store, 200, 20, 20)
    simulator.store.action_set(
        {"name": "codescaler_user_c0ffee", "context": "ctx-1", "spec": {"tags": ["codescaler"]}}
    )
    odd = simulator.store.job_create(
        {
            "action": "codescaler_user_c0ffee",
            "context": "ctx-1",
            "tags": ["codescaler_kind_user", "codescaler_alice"],
            "status": "failed",
            "created_at_ms": None,
            "finished_at_ms": 5,
        }
    )
    before = copy.deepcopy(simulator.store.jobs)
    t0 = service.engine.clock()
    summary = await caller.call("jobs.cleanup", {"kind": "user"})
    t1 = service.engine.clock()
    assert summary["jobs_deleted"] == summary["jobs_matched"] > 50
    found = await every_tombstone(caller)
    assert len(found) == summary["jobs_deleted"]
    assert (
        {t["id"] for t in found}
        == set(summary["job_ids"])
        == set(before) - set(simulator.store.jobs)
    )
    for tombstone in found:
        assert t0 <= tombstone["deleted_at_ms"] <= t1
        expected = tombstone_of(
            before[tombstone["id"]], summary["run_id"], tombstone["deleted_at_ms"]
        )
        assert tombstone == expected
    [one] = (await deleted(caller, id=odd["id"]))["jobs"]
    assert (one["context"], one["created_at_ms"], one["finished_at_ms"]) == ("ctx-1", None, 5)
    assert (one["kind"], one["actor"], one["target"]) == ("user", "alice", None)
    kept = next(i for i, job in before.items() if "codescaler_kind_user" not in job["tags"])
    assert (await deleted(caller, id=kept))["jobs"] == []


async def test_a_dry_run_leaves_none(simulator: Simulator, caller: Caller) -> None:
    """A dry run deletes nothing and writes no tombstone."""
    seed_population(simulator.store, 50)
    summary = await caller.call("jobs.cleanup", {"dry_run": True})
    assert summary["jobs_matched"] == 50
    assert (await deleted(caller))["jobs"] == []
    assert (await deleted(caller, id=summary["job_ids"][0]))["jobs"] == []


async def test_a_job_whose_deletion_failed_or_was_gone_already_leaves_none(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """A third of the deletions answered hero_proc's error at every try (the jobs still
    there) and four jobs deleted by someone else first, on every page of 20: only the
    jobs this run deleted have a tombstone."""
    service.engine.page_size = 20
    seed_population(simulator.store, 90)
    ids = sorted(simulator.store.jobs)
    failing, gone = set(ids[::3]), set(ids[10:20:3]) - set(ids[::3])

    def fail_some(method: str, params: dict[str, Any]) -> None:
        if method == "job.delete":
            failing_now = params.get("id") in failing
            simulator.store.faults.fail_rate = {"job.delete": 1.0} if failing_now else None
            if params.get("id") in gone:
                simulator.store.job_delete({"id": params["id"], "force": True})  # as another client

    simulator.hooks.append(fail_some)
    summary = await caller.call("jobs.cleanup", {})
    simulator.hooks.remove(fail_some)
    simulator.store.faults.fail_rate = None
    assert summary["jobs_failed"] == len(failing) == 30
    assert summary["jobs_already_gone"] == len(gone) == 4
    found = {t["id"] for t in await every_tombstone(caller)}
    assert len(found) == summary["jobs_deleted"] == 56
    assert found == set(ids) - failing - gone


async def test_deletions_found_done_by_the_check_leave_tombstones(
    simulator: Simulator, make_service: ServiceFactory
) -> None:
    """Every job.delete carried out but its answer lost (one try): the check finds each
    gone, and each has its tombstone, written with the run's end."""
    seed_population(simulator.store, 40)
    before = copy.deepcopy(simulator.store.jobs)
    svc = await make_service(hero_proc_attempts=1)
    caller = Caller(svc.socket)
    simulator.store.faults.drop_rate = {"job.delete": 1.0}
    summary = await caller.call("jobs.cleanup", {})
    simulator.store.faults.drop_rate = None
    assert summary["jobs_settled_gone"] == summary["jobs_deleted"] == 40
    found = await every_tombstone(caller)
    assert sorted(t["id"] for t in found) == sorted(before)
    [run] = (await history(caller))["runs"]
    for tombstone in found:
        assert tombstone == tombstone_of(
            before[tombstone["id"]], summary["run_id"], run["finished_at_ms"]
        )


async def test_tombstones_of_a_page_are_kept_when_its_checkpoint_fails(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """The database cannot be written at the first checkpoint: the run stops (as for any
    checkpoint), and that page's tombstones are written with the run's end."""
    seed_population(simulator.store, 30)
    service.engine.page_size = 10
    state = service.engine.state
    real = state.checkpoint

    async def failing(*args: Any) -> bool:
        raise StateUnavailable(str(state.path), "disk I/O error")

    state.checkpoint = failing  # type: ignore[method-assign]
    try:
        summary = await caller.call("jobs.cleanup", {})
    finally:
        state.checkpoint = real  # type: ignore[method-assign]
    assert summary["complete"] is False
    assert summary["jobs_deleted"] == 10
    found = await every_tombstone(caller)
    assert sorted(t["id"] for t in found) == summary["job_ids"][:10]


# Reading them --------------------------------------------------------------------------


async def test_pages_newest_first_and_every_filter(
    settings: Settings, simulator: Simulator
) -> None:
    """Over three runs (12,000 jobs: pages of several batches), pages follow the cursor
    without gaps or repeats, newest first; each filter (id, kind, target, actor, run_id,
    the time window) and their combination gives exactly its jobs."""
    now = [1_800_000_000_000]
    seed_population(simulator.store, 12_000)
    jobs = copy.deepcopy(simulator.store.jobs)
    async with running(settings, clock=lambda: now[0]) as caller:
        first = await caller.call("jobs.cleanup", {"kind": "user"})
        now[0] += 60_000
        second = await caller.call("jobs.cleanup", {"actor": "bob", "target": "db"})
        now[0] += 60_000
        third = await caller.call("jobs.cleanup", {})
        assert first["jobs_deleted"] + second["jobs_deleted"] + third["jobs_deleted"] == 12_000
        run_of = {i: r["run_id"] for r in (first, second, third) for i in r["job_ids"]}

        everything = await every_tombstone(caller, limit=777)
        order = [t["id"] for t in everything]
        # Newest first: the runs in reverse, each run's jobs last deleted first.
        assert order == [*third["job_ids"][::-1], *second["job_ids"][::-1], *first["job_ids"][::-1]]
        for t in everything:
            assert t == tombstone_of(jobs[t["id"]], run_of[t["id"]], t["deleted_at_ms"])

        def ids(keep: Any) -> list[int]:
            return [t["id"] for t in everything if keep(t)]

        async def found(**filters: Any) -> list[int]:
            return [t["id"] for t in await every_tombstone(caller, limit=500, **filters)]

        some = third["job_ids"][1234]
        assert await found(id=some) == [some]
        assert await found(id=10**12) == []
        assert await found(kind="user") == ids(lambda t: t["kind"] == "user")
        assert await found(actor="bob") == ids(lambda t: t["actor"] == "bob")
        assert await found(target="db") == ids(lambda t: t["target"] == "db")
        assert await found(kind="service", actor="alice", target="web") == ids(
            lambda t: (t["kind"], t["actor"], t["target"]) == ("service", "alice", "web")
        )
        assert await found(run_id=second["run_id"]) == second["job_ids"][::-1]
        assert await found(run_id=second["run_id"], id=some) == []
        start = now[0] - 60_000
        assert (
            await found(deleted_after_ms=start, deleted_before_ms=now[0]) == second["job_ids"][::-1]
        )
        assert await found(deleted_after_ms=now[0]) == third["job_ids"][::-1]
        assert await found(deleted_before_ms=start) == first["job_ids"][::-1]
        assert await found(deleted_after_ms=now[0], actor="carol") == ids(
            lambda t: t["actor"] == "carol" and t["run_id"] == third["run_id"]
        )


def tag_index(path: Path) -> tuple[list[tuple[int, int]], list[tuple[str, int]]]:
    """Each batch's number and whether its tags are indexed; the index's rows."""
    with sqlite3.connect(path / FILE_NAME) as db:
        batches = db.execute("SELECT seq, tags_indexed FROM tombstone_batches ORDER BY seq")
        rows = db.execute("SELECT tag, batch FROM tombstone_tags ORDER BY batch, tag")
        found = (batches.fetchall(), rows.fetchall())
    db.close()
    return found


async def test_reads_by_tag_index_the_batches_they_read(tmp_path: Path) -> None:
    """A batch is written without its tag index; the first read by tag lists the distinct
    tags of each batch it decoded, and later reads find the same tombstones through the
    index (a batch without the tag is then not read). Every field round-trips, None and
    odd tags included."""
    state = await State.open(tmp_path, lease_ttl_ms=60_000)
    try:
        first = DeletedJobs([1, 2], [])
        first.fields.extend(("codescaler_user_a", None, ["codescaler", "x\x1fy"], None, None, None))
        first.fields.extend(("codescaler_user_a", "ctx", ["codescaler", "t7"], "failed", 1, 2))
        second = DeletedJobs([9], ["other", None, ["codescaler", ""], "succeeded", 3, None])
        await state.begin(RunStart("r1", 1, False, {}))
        await state.checkpoint("r1", {}, 0, deleted=[first])
        await state.checkpoint("r1", {}, 0, deleted=[second])
        assert tag_index(tmp_path) == ([(1, 0), (2, 0)], [])
        found, _ = await state.tombstones(limit=10)
        assert len(found) == 3
        assert tag_index(tmp_path) == ([(1, 0), (2, 0)], [])  # a read without tags: none
        for _ in range(2):
            found, _ = await state.tombstones(limit=10, tags={"t7"})
            assert [(t["id"], t["context"], t["status"], t["tags"]) for t in found] == [
                (2, "ctx", "failed", ["codescaler", "t7"])
            ]
            assert (found[0]["created_at_ms"], found[0]["finished_at_ms"]) == (1, 2)
        assert tag_index(tmp_path) == (
            [(1, 1), (2, 1)],
            [("codescaler", 1), ("t7", 1), ("x\x1fy", 1), ("", 2), ("codescaler", 2)],
        )
        found, _ = await state.tombstones(limit=10, tags={"", "codescaler"})
        assert [t["id"] for t in found] == [9]
        found, _ = await state.tombstones(limit=10, tags={"nothing"})
        assert found == []
        found, _ = await state.tombstones(limit=10)
        assert [(t["id"], t["tags"]) for t in found] == [
            (9, ["codescaler", ""]),
            (2, ["codescaler", "t7"]),
            (1, ["codescaler", "x\x1fy"]),
        ]
    finally:
        await state.close()


async def test_a_read_goes_on_past_a_batch_with_nothing_for_it(tmp_path: Path) -> None:
    """Two batches whose id ranges overlap: a job of the older one, inside the newer one's
    range, is found all the same; a page that ends on the first job of a batch is
    followed by the next batch, not by the end."""
    state = await State.open(tmp_path, lease_ttl_ms=60_000)
    try:
        fields = ["codescaler_user_a", None, ["codescaler"], "succeeded", 1, 2]
        await state.begin(RunStart("r1", 1, False, {}))
        await state.checkpoint("r1", {}, 0, deleted=[DeletedJobs([1, 3, 5], fields * 3)])
        await state.checkpoint("r1", {}, 0, deleted=[DeletedJobs([2, 4, 6], fields * 3)])
        found, _ = await state.tombstones(limit=10, job_id=3)
        assert [t["id"] for t in found] == [3]
        newer, cursor = await state.tombstones(limit=3)
        assert [t["id"] for t in newer] == [6, 4, 2]
        older, end = await state.tombstones(limit=3, cursor=cursor)
        assert ([t["id"] for t in older], end) == ([5, 3, 1], None)
    finally:
        await state.close()


@pytest.mark.parametrize(
    ("params", "data"),
    [
        pytest.param({"id": 0}, "id: Input should be greater than or equal to 1", id="id-zero"),
        pytest.param({"id": "5"}, "id: Input should be a valid integer", id="id-string"),
        pytest.param({"actor": "kind_user"}, "actor: must be ASCII letters", id="look-alike-actor"),
        pytest.param({"cursor": "12"}, "cursor: String should match pattern", id="cursor"),
        pytest.param(
            {"cursor": "9999999999999999999:1"},
            "cursor: String should match pattern",
            id="cursor-beyond-sqlite",
        ),
        pytest.param(
            {"limit": 1001}, "limit: Input should be less than or equal to 1000", id="limit"
        ),
        pytest.param({"run_id": "a b"}, "run_id: String should match pattern", id="run-id"),
        pytest.param(
            {"run_id": "0123456789abcdef"}, "run_id: no run '0123456789abcdef'", id="unknown-run"
        ),
        pytest.param(
            {"deleted_after_ms": -1}, "deleted_after_ms: Input should be greater", id="time"
        ),
        pytest.param({"job_id": 1}, "job_id: unknown parameter", id="unknown-param"),
    ],
)
async def test_bad_params_are_named(caller: Caller, params: dict[str, Any], data: str) -> None:
    """A malformed id, name, cursor, limit or run id, or a run the history does not hold, is
    -32602 naming it."""
    err = await caller.error("jobs.deleted", params)
    assert err["code"] == -32602
    assert err["data"].startswith(data), err


# How long they are kept -----------------------------------------------------------------


async def test_tombstones_survive_a_restart_and_go_with_their_runs(
    settings: Settings, simulator: Simulator
) -> None:
    """A restart keeps them; when the history drops a run (older than its retention), its
    tombstones go with it, and those of newer runs stay."""
    now = [1_700_000_000_000]
    kept = settings.model_copy(update={"history_days": 30})
    seed_population(simulator.store, 40)
    async with running(kept, clock=lambda: now[0]) as caller:
        old = await caller.call("jobs.cleanup", {"kind": "user"})
        now[0] += 20 * DAY_MS
        new = await caller.call("jobs.cleanup", {})
    async with running(kept, clock=lambda: now[0]) as caller:
        assert {t["id"] for t in await every_tombstone(caller)} == set(range(1, 41))
    now[0] += 10 * DAY_MS + 1  # the first run ended just over 30 days ago
    async with running(kept, clock=lambda: now[0]) as caller:
        found = await every_tombstone(caller)
        assert sorted(t["id"] for t in found) == sorted(new["job_ids"])
        assert {t["run_id"] for t in found} == {new["run_id"]}
        err = await caller.error("jobs.deleted", {"run_id": old["run_id"]})
        assert err["code"] == -32602
    with sqlite3.connect(settings.state_dir / FILE_NAME) as db:
        assert db.execute(
            "SELECT count(*) FROM tombstone_tags WHERE batch NOT IN "
            "(SELECT seq FROM tombstone_batches)"
        ).fetchone() == (0,)
    db.close()


async def test_the_cli_asks_what_happened_to_a_job(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """`jobs-deleted --id N` prints the tombstone; the filters and a page's cursor pass
    through; a run the history does not hold exits 1 naming it."""
    seed_population(simulator.store, 30)
    summary = await caller.call("jobs.cleanup", {"kind": "user"})
    sock = str(service.socket)
    some = summary["job_ids"][0]
    code, out, err = await cli("jobs-deleted", "--id", str(some), "--socket", sock)
    assert (code, err) == (0, "")
    [job] = json.loads(out)["jobs"]
    assert (job["id"], job["kind"], job["run_id"]) == (some, "user", summary["run_id"])
    args = ["--kind", "user", "--run-id", summary["run_id"], "--deleted-after", "1h"]
    code, out, _ = await cli("jobs-deleted", *args, "--limit", "2", "--socket", sock)
    page = json.loads(out)
    assert [j["id"] for j in page["jobs"]] == summary["job_ids"][::-1][:2]
    code, out, _ = await cli(
        "jobs-deleted", "--cursor", page["next_cursor"], "--limit", "1000", "--socket", sock
    )
    assert [j["id"] for j in json.loads(out)["jobs"]] == summary["job_ids"][::-1][2:]
    code, out, err = await cli("jobs-deleted", "--run-id", "0123456789abcdef", "--socket", sock)
    assert code == 1
    assert "run_id: no run '0123456789abcdef' in the history" in err


async def test_on_a_terminal_jobs_deleted_is_a_table(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """On a terminal each deleted job is a row, newest first: its id, the run that deleted
    it, its status and labels; then how many and the next page's command. --output json
    prints the answer a pipe gets."""
    seed_population(simulator.store, 30)
    summary = await caller.call("jobs.cleanup", {"kind": "user"})
    sock = str(service.socket)
    code, screen = await on_terminal("jobs-deleted", "--limit", "2", "--socket", sock)
    assert code == 0
    rows = screen.splitlines()
    assert rows[0].split() == [
        "ID",
        "DELETED",
        "RUN",
        "STATUS",
        "KIND",
        "ACTOR",
        "TARGET",
        "FINISHED",
        "ACTION",
    ]
    newest = summary["job_ids"][::-1][:2]
    for row, job_id in zip(rows[1:3], newest, strict=True):
        cells = row.split()
        assert (cells[0], cells[2], cells[4]) == (str(job_id), summary["run_id"], "user")
    page = await deleted(caller, limit=2)
    following = f"hero_codescalers jobs-deleted --cursor {page['next_cursor']}"
    assert rows[3] == f"2 jobs; next page: {following}"
    code, screen = await on_terminal("jobs-deleted", "--limit", "2", "-o", "json", "--socket", sock)
    assert (code, json.loads(screen)) == (0, page)


async def test_a_cursor_past_the_end_of_its_batch_reads_the_batch_from_its_newest(
    simulator: Simulator, caller: Caller
) -> None:
    """A cursor is opaque, but one edited by hand (a position beyond its batch) reads that
    batch from its newest tombstone instead of failing."""
    seed_population(simulator.store, 30)
    summary = await caller.call("jobs.cleanup", {"kind": "user"})
    first = await deleted(caller, limit=1)
    batch, _, _ = first["next_cursor"].partition(":")
    page = await deleted(caller, cursor=f"{batch}:999999999", limit=1000)
    assert [j["id"] for j in page["jobs"]] == summary["job_ids"][::-1]


async def test_the_cli_window_takes_times_and_durations_ago(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """--deleted-after 1h finds the jobs deleted just now, --deleted-before 1h none of
    them, nor --deleted-after a day to come; on a terminal, no match says where a tombstone
    would have come from."""
    seed_population(simulator.store, 30)
    summary = await caller.call("jobs.cleanup", {"kind": "user"})
    sock = str(service.socket)
    code, out, _ = await cli("jobs-deleted", "--deleted-after", "1h", "--socket", sock)
    assert code == 0
    assert [j["id"] for j in json.loads(out)["jobs"]] == summary["job_ids"][::-1]
    for window in (["--deleted-before", "1h"], ["--deleted-after", "2999-01-01"]):
        code, out, _ = await cli("jobs-deleted", *window, "--socket", sock)
        assert (code, json.loads(out)) == (0, {"jobs": [], "next_cursor": None}), window
    code, screen = await on_terminal("jobs-deleted", "--deleted-before", "1h", "--socket", sock)
    assert code == 0
    said = (
        "no deleted job matches: a job has a tombstone once a real cleanup of this service "
        "deleted it, for as long as that run is in the history"
    )
    assert " ".join(screen.split()) == said


def test_a_page_whose_fields_are_not_its_matches_is_refused() -> None:
    """The fields kept of a page are its matches' own, in their order: a page whose
    outcomes do not line up with them is a fault of the service, not tombstones of
    other jobs."""
    tally = Tally(dry_run=False)
    tally.page_fields = ["action", None, [], "succeeded", 1, 2]  # the fields of one job
    with pytest.raises(RuntimeError, match=r"^the page's deletions are not its matches$"):
        tally.job_outcomes([1, 2], [{"deleted": True}, {"deleted": True}])


class _Unreadable:
    """A connection whose every statement meets a disk I/O error."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")


@pytest.mark.parametrize("method", ["jobs.deleted", "jobs.cleanup_history"])
async def test_a_state_database_that_cannot_be_read_is_named(
    service: Service, caller: Caller, method: str
) -> None:
    """A read that meets an I/O error answers -32013 with the file and SQLite's reason, not
    an internal error; the service goes on (its health answers)."""
    database = service.engine.state.database
    connection, database._connection = database._connection, _Unreadable()  # type: ignore[assignment]
    try:
        err = await caller.error(method, {})
    finally:
        database._connection = connection
    assert (err["code"], err["message"]) == (-32013, "State database unavailable")
    assert err["data"] == {"path": str(database.path), "reason": "disk I/O error"}
    assert (await caller.call("system.health", {}))["version"]
