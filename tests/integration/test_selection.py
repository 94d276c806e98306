"""Selection through real sockets: statuses, finished_older_than_ms, keep_last and the
codescaler_keep exemption, on jobs.cleanup, jobs.list and the CLI, against the simulator.

What a selection must give is computed by `population.selected`, the tests' own reading
of the specification, never by the service's `Selector`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.engine import CleanupRequest
from hero_codescalers.logs import merge_call
from hero_codescalers.simulator import Faults, Simulator, seed_population
from hero_codescalers.tags import Selector

from ..conftest import Caller, Service, ServiceFactory
from .fake_hero_proc import FakeHeroProc
from .population import (
    DAY,
    NOW,
    add_job,
    assert_accounted,
    deleted_before_list,
    outside,
    selected,
)
from .test_cli import cli

TERMINAL = ["succeeded", "failed", "cancelled"]


@pytest.fixture
def clocked(service: Service) -> Service:
    """The service, its clock at NOW (the population's time)."""
    service.engine.clock = lambda: NOW
    return service


def list_filters(simulator: Simulator) -> list[dict[str, Any]]:
    """Record the filter of every job.list the simulator gets from now on."""
    seen: list[dict[str, Any]] = []

    def hook(method: str, params: dict[str, Any]) -> None:
        if method == "job.list":
            seen.append(params.get("filter") or {})

    simulator.hooks.append(hook)
    return seen


async def list_all(caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every job jobs.list gives for `params`, page after page."""
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await caller.call(
            "jobs.list", {**params, "limit": 7, **({"cursor": cursor} if cursor else {})}
        )
        jobs += page["jobs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return jobs


# each filter --------------------------------------------------------------------------


async def test_statuses_select_exactly_those_statuses(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """Only jobs in one of `statuses` are deleted; pending and running jobs stay when not named."""
    made = {s: add_job(simulator.store, status=s) for s in (*TERMINAL, "pending", "running")}
    summary = await caller.call("jobs.cleanup", {"statuses": ["failed", "running"]})
    assert sorted(summary["job_ids"]) == sorted([made["failed"], made["running"]])
    assert set(simulator.store.jobs) == {made["succeeded"], made["cancelled"], made["pending"]}
    assert_accounted(summary)


async def test_without_statuses_every_status_is_selected(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """A manual cleanup without `statuses` force-deletes pending and running jobs too."""
    for status in (*TERMINAL, "pending", "running"):
        add_job(simulator.store, status=status)
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 5
    assert not simulator.store.jobs


async def test_finished_older_than_needs_a_finish_that_old(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """Finished at or before now - finished_older_than_ms in a terminal status; a job not
    finished, or without finished_at_ms, is never selected, whatever its creation time."""
    store = simulator.store
    old = NOW - 10 * DAY
    edge = add_job(store, created_at_ms=old, finished_at_ms=NOW - DAY)
    long_ago = add_job(store, status="cancelled", created_at_ms=old, finished_at_ms=old)
    young = add_job(store, created_at_ms=old, finished_at_ms=NOW - DAY + 1)
    no_finish = add_job(store, status="failed", created_at_ms=old, finished_at_ms=None)
    running = add_job(store, status="running", created_at_ms=old, finished_at_ms=old)
    pending = add_job(store, status="pending", created_at_ms=old)
    summary = await caller.call("jobs.cleanup", {"finished_older_than_ms": DAY})
    assert sorted(summary["job_ids"]) == [edge, long_ago]
    assert set(store.jobs) == {young, no_finish, running, pending}
    assert_accounted(summary)


async def test_one_status_is_pushed_down_to_hero_proc(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """hero_proc's listing filters by status when exactly one is asked, never for several."""
    add_job(simulator.store, status="failed")
    filters = list_filters(simulator)
    await caller.call("jobs.cleanup", {"statuses": ["failed"], "dry_run": True})
    await caller.call("jobs.list", {"statuses": ["failed"]})
    await caller.call("jobs.list", {"status": "failed"})
    assert filters
    assert all(f.get("status") == "failed" for f in filters)
    filters.clear()
    params = {"statuses": ["failed"], "actor": "alice", "keep_last": 1, "dry_run": True}
    await caller.call("jobs.cleanup", params)  # its reading of the listing, then its walk
    assert len(filters) == 4
    assert all(f["tag"] == "codescaler_alice" for f in filters)
    assert all(f["status"] == "failed" for f in filters)
    filters.clear()
    await caller.call("jobs.cleanup", {"statuses": ["failed", "cancelled"], "dry_run": True})
    await caller.call("jobs.list", {"statuses": ["failed", "cancelled"]})
    assert filters
    assert not any("status" in f for f in filters)


LIST_COMBINATIONS = [
    pytest.param({"statuses": ["failed", "cancelled"]}, id="statuses"),
    pytest.param({"status": "running", "kind": "user"}, id="status-kind"),
    pytest.param({"statuses": ["succeeded"], "actor": "bob"}, id="one-status-actor"),
    pytest.param({"finished_older_than_ms": 5 * DAY}, id="finished"),
    pytest.param(
        {"finished_older_than_ms": DAY, "older_than_ms": 20 * DAY, "target": "web"},
        id="finished-created-target",
    ),
    pytest.param({"statuses": TERMINAL, "include_kept": True}, id="terminal-include-kept"),
]


@pytest.mark.parametrize("params", LIST_COMBINATIONS)
async def test_jobs_list_gives_exactly_the_selection(
    simulator: Simulator, clocked: Service, caller: Caller, params: dict[str, Any]
) -> None:
    """jobs.list, page after page, gives the selection's jobs, oldest first, kept marked."""
    seed_population(simulator.store, 400, 40, 40, rng_seed=5, now=NOW)
    keep = sorted(simulator.store.jobs)[::9]
    for job_id in keep:
        simulator.store.jobs[job_id]["tags"].append("codescaler_keep")
    want = selected(simulator.store.jobs, **params)
    jobs = await list_all(caller, params)
    assert [j["id"] for j in jobs] == sorted(want)
    assert {j["id"] for j in jobs if j["kept"]} == want & set(keep)
    assert want, "the combination selects nothing: it tests nothing"


CLEANUP_COMBINATIONS = [
    pytest.param({"statuses": TERMINAL}, id="terminal"),
    pytest.param({"statuses": ["pending"], "kind": "install"}, id="pending-kind"),
    pytest.param({"finished_older_than_ms": 7 * DAY, "actor": "carol"}, id="finished-actor"),
    pytest.param({"keep_last": 3}, id="keep-last"),
    pytest.param({"keep_last": 1, "kind": "user"}, id="keep-last-kind"),
    pytest.param(
        {"keep_last": 5, "statuses": TERMINAL, "finished_older_than_ms": 2 * DAY},
        id="policy-like",
    ),
    pytest.param({"keep_last": 2, "statuses": ["failed"]}, id="keep-last-one-status"),
    pytest.param({"keep_last": 4, "include_kept": True}, id="keep-last-include-kept"),
    pytest.param({"keep_last": 100_000}, id="keep-more-than-there-are"),
]


@pytest.mark.parametrize("params", CLEANUP_COMBINATIONS)
async def test_cleanup_deletes_exactly_the_selection(
    simulator: Simulator, clocked: Service, caller: Caller, params: dict[str, Any]
) -> None:
    """A dry run lists the selection and a real run deletes it, pages of 50, and nothing
    else changes; a second run selects nothing."""
    clocked.engine.page_size = 50
    seed_population(simulator.store, 600, 50, 50, rng_seed=9, now=NOW)
    for job_id in sorted(simulator.store.jobs)[::11]:
        simulator.store.jobs[job_id]["tags"].append("codescaler_keep")
    want = selected(simulator.store.jobs, **params)
    others = outside(simulator.store, want)
    dry = await caller.call("jobs.cleanup", {**params, "dry_run": True})
    assert set(dry["job_ids"]) == want
    summary = await caller.call("jobs.cleanup", params)
    assert set(summary["job_ids"]) == want
    assert summary["jobs_deleted"] == len(want)
    assert summary["complete"] is True
    assert {i: dict(j) for i, j in simulator.store.jobs.items()} == others
    assert_accounted(summary)
    assert (await caller.call("jobs.cleanup", params))["jobs_matched"] == 0
    assert (len(want) == 0) == (params == {"keep_last": 100_000})


# keep_last ----------------------------------------------------------------------------


async def test_keep_last_keeps_the_newest_of_each_group(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """Groups are (kind, actor, target), no target being a group of its own; newest is the
    later creation time, then the larger id; a job without a creation time is oldest."""
    store = simulator.store
    t = NOW - 5 * DAY
    web = [
        add_job(store, target="web", created_at_ms=t + 30),  # newest
        add_job(store, target="web", created_at_ms=t + 20),  # tied: the smaller id, older
        add_job(store, target="web", created_at_ms=t + 20),  # tied: the larger id, kept
        add_job(store, target="web", created_at_ms=t + 10),
        add_job(store, target="web", created_at_ms=None),
    ]
    untargeted = [add_job(store, created_at_ms=None), add_job(store, created_at_ms=t)]
    bob = [add_job(store, actor="bob", target="web", created_at_ms=t)]
    other_kind = [add_job(store, kind="service", target="web", created_at_ms=t + 5)]
    summary = await caller.call("jobs.cleanup", {"keep_last": 2, "dry_run": True})
    assert sorted(summary["job_ids"]) == [web[1], web[3], web[4]]
    summary = await caller.call("jobs.cleanup", {"keep_last": 1})
    assert sorted(summary["job_ids"]) == [web[1], web[2], web[3], web[4], untargeted[0]]
    assert set(store.jobs) == {web[0], untargeted[1], bob[0], other_kind[0]}
    assert_accounted(summary)


async def test_keep_last_ranks_only_what_the_other_filters_select(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """keep_last comes after every other filter: a newer job they leave out (running, kept
    by the tag) does not count among the N kept."""
    store = simulator.store
    old = add_job(store, created_at_ms=NOW - 3 * DAY)
    newer = add_job(store, created_at_ms=NOW - 2 * DAY)
    running = add_job(store, status="running", created_at_ms=NOW - DAY)
    kept = add_job(store, created_at_ms=NOW, kept=True)
    summary = await caller.call("jobs.cleanup", {"keep_last": 1, "statuses": TERMINAL})
    assert summary["job_ids"] == [old]
    assert set(store.jobs) == {newer, running, kept}


async def test_keep_last_reads_the_listing_once_then_walks_it(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """One reading of the whole listing before any deletion (logged with its counts), then
    the page walk; without keep_last only the walk."""
    clocked.engine.page_size = 10
    for i in range(35):
        add_job(simulator.store, created_at_ms=NOW - i)
    add_job(simulator.store, kind="service", created_at_ms=NOW)
    add_job(simulator.store, status="running", created_at_ms=NOW)  # listed, not a candidate
    calls: list[str] = []
    simulator.hooks.append(lambda method, params: calls.append(method))
    with capture_logs(processors=[merge_call]) as logs:
        await caller.call("jobs.cleanup", {"keep_last": 5, "statuses": TERMINAL})
    [read] = [e for e in logs if e["event"] == "cleanup_keep_last_read"]
    assert read["log_level"] == "info"
    expected = {"keep_last": 5, "jobs_listed": 37, "groups": 2, "jobs_kept": 6}
    assert {k: read[k] for k in expected} == expected
    first_delete = calls.index("job.delete")
    # The reading's 4 pages and its empty one, then the walk's first page.
    assert calls[:first_delete] == ["job.list"] * 6
    assert len(simulator.store.jobs) == 7
    calls.clear()
    await caller.call("jobs.cleanup", {})
    assert calls.index("job.delete") == 1


async def test_a_job_created_during_the_run_is_kept_if_newer(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """A job the reading did not see is kept if newer than the oldest kept job of its group,
    or if its group had no more than N jobs; else it is older than the N kept and goes."""
    store = simulator.store
    jobs = [add_job(store, created_at_ms=NOW - i * DAY) for i in (3, 2, 1)]
    bob = add_job(store, actor="bob", created_at_ms=NOW - DAY)
    late: list[int] = []

    def create_after_the_reading(method: str, params: dict[str, Any]) -> None:
        # The third listing is the walk's first page: the reading's two are done.
        if method == "job.list" and not late and simulator.calls["job.list"] == 3:
            late.append(add_job(store, created_at_ms=NOW))
            late.append(add_job(store, created_at_ms=NOW - 10 * DAY))
            late.append(add_job(store, actor="bob", created_at_ms=NOW - 10 * DAY))

    simulator.hooks.append(create_after_the_reading)
    summary = await caller.call("jobs.cleanup", {"keep_last": 2})
    assert sorted(summary["job_ids"]) == [jobs[0], late[1]]
    assert set(store.jobs) == {jobs[1], jobs[2], bob, late[0], late[2]}


async def test_a_listing_that_moves_under_the_reading_keeps_more_never_fewer(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """Someone deletes a job between two pages of the reading, which then skips the newest
    job: that job is still kept (with the one the reading took for the newest)."""
    clocked.engine.page_size = 2
    store = simulator.store
    gone = add_job(store, kind="service")  # listed (alice's), not selected (not kind user)
    first = add_job(store, created_at_ms=NOW - 3 * DAY)
    newest = add_job(store, created_at_ms=NOW - DAY)
    middle = add_job(store, created_at_ms=NOW - 2 * DAY)
    simulator.hooks.append(deleted_before_list(store, [gone], 2))
    summary = await caller.call("jobs.cleanup", {"keep_last": 1, "actor": "alice", "kind": "user"})
    assert summary["job_ids"] == [first]
    assert set(store.jobs) == {newest, middle}


async def test_keep_last_reading_stops_when_the_run_must_stop(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """The service stopping during the reading: no further page is read, nothing deleted,
    the summary says why."""
    clocked.engine.page_size = 2
    ids = [add_job(simulator.store, created_at_ms=NOW - i) for i in range(10)]

    def stop_on_the_second_page(method: str, params: dict[str, Any]) -> None:
        if method == "job.list" and simulator.calls["job.list"] == 2:
            clocked.engine.stop()

    simulator.hooks.append(stop_on_the_second_page)
    summary = await caller.call("jobs.cleanup", {"keep_last": 1})
    assert simulator.calls["job.list"] == 2
    assert summary["complete"] is False
    assert summary["errors"] == ["stopped: the service is shutting down"]
    assert summary["job_ids"] == []
    assert set(simulator.store.jobs) == set(ids)


async def test_keep_last_reading_refuses_a_listing_that_does_not_advance(
    sock_dir: Path, make_service: ServiceFactory
) -> None:
    """A hero_proc ignoring the offset makes the reading answer -32021, nothing deleted."""
    fake = FakeHeroProc()
    async with fake.serve(sock_dir / "fake.sock"):
        service = await make_service(hero_proc_socket=sock_dir / "fake.sock")
        ids = [add_job(fake.store, created_at_ms=NOW - i) for i in range(5)]
        fake.bad.ignore_offset = True
        error = await Caller(service.socket).error("jobs.cleanup", {"keep_last": 1})
        assert error["code"] == -32021
        assert "does not advance" in error["data"]["reason"]
        assert set(fake.store.jobs) == set(ids)
        fake.released.set()


async def test_keep_last_reading_leaves_malformed_jobs_to_the_walk(
    sock_dir: Path, make_service: ServiceFactory
) -> None:
    """Malformed listed entries are skipped by the reading and counted once, by the walk."""
    fake = FakeHeroProc()
    async with fake.serve(sock_dir / "fake.sock"):
        service = await make_service(hero_proc_socket=sock_dir / "fake.sock")
        service.engine.clock = lambda: NOW
        made = [add_job(fake.store, created_at_ms=NOW - i * DAY) for i in range(6)]
        for job_id in made[1:3]:  # their ids are the malformed entries'
            fake.store.job_delete({"id": job_id})
        ids = [made[0], *made[3:]]
        fake.bad.phantoms[ids[0]] = [
            {"id": made[1], "action_id": None, "tags": ["codescaler"]},
            {"id": made[2], "action_id": "codescaler_user_x", "tags": ["codescaler", 5]},
        ]
        summary = await Caller(service.socket).call("jobs.cleanup", {"keep_last": 2})
        assert sorted(summary["job_ids"]) == ids[2:]
        assert summary["jobs_skipped_malformed"] == 2
        assert set(fake.store.jobs) == set(ids[:2])
        fake.released.set()


async def test_keep_last_reading_failing_deletes_nothing(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """hero_proc failing every listing: -32020 or -32021 at once, nothing deleted."""
    ids = [add_job(simulator.store) for _ in range(3)]
    simulator.store.faults = Faults(fail_rate={"job.list": 1.0})
    error = await caller.error("jobs.cleanup", {"keep_last": 1})
    assert error["code"] in (-32020, -32021)
    assert set(simulator.store.jobs) == set(ids)
    assert simulator.calls["job.delete"] == 0


# the codescaler_keep exemption ----------------------------------------------------------


async def test_kept_jobs_are_deleted_only_with_include_kept(
    simulator: Simulator, clocked: Service, caller: Caller
) -> None:
    """A job tagged codescaler_keep survives a plain cleanup and goes with include_kept;
    jobs.list hides it unless asked, then shows it kept; stats counts it."""
    store = simulator.store
    plain = add_job(store)
    kept = add_job(store, kept=True)
    assert [j["id"] for j in (await caller.call("jobs.list", {}))["jobs"]] == [plain]
    shown = (await caller.call("jobs.list", {"include_kept": True}))["jobs"]
    assert [(j["id"], j["kept"], j["actor"]) for j in shown] == [
        (plain, False, "alice"),
        (kept, True, "alice"),
    ]
    assert (await caller.call("stats", {}))["codescaler"]["jobs"] == 2
    summary = await caller.call("jobs.cleanup", {})
    assert summary["job_ids"] == [plain]
    assert set(store.jobs) == {kept}
    assert summary["actions_in_use"] == 1  # the kept job still runs the shared action
    summary = await caller.call("jobs.cleanup", {"include_kept": True})
    assert summary["job_ids"] == [kept]
    assert not store.jobs


async def test_a_policy_selector_leaves_active_and_kept_jobs(
    simulator: Simulator, clocked: Service
) -> None:
    """What the scheduler will run: `Selector.for_policy` through the engine and the
    simulator's socket selects terminal, unkept jobs only; named statuses replace those."""
    store = simulator.store
    made = {s: add_job(store, status=s) for s in (*TERMINAL, "pending", "running")}
    kept = add_job(store, status="failed", kept=True)
    engine = clocked.engine
    summary = await engine.cleanup(
        CleanupRequest(Selector.for_policy(), dry_run=False, params={}, policy="p")
    )
    assert sorted(summary.job_ids) == sorted(made[s] for s in TERMINAL)
    assert set(store.jobs) == {made["pending"], made["running"], kept}
    summary = await engine.cleanup(
        CleanupRequest(
            Selector.for_policy(statuses=["running"]), dry_run=False, params={}, policy="p"
        )
    )
    assert summary.job_ids == [made["running"]]
    assert set(store.jobs) == {made["pending"], kept}


# refusals -----------------------------------------------------------------------------

REFUSED = [
    pytest.param(
        "jobs.list",
        {"status": "failed", "statuses": ["failed"]},
        "params: status and statuses: give one of them (statuses takes a list)",
        id="status-and-statuses",
    ),
    pytest.param(
        "jobs.cleanup",
        {"statuses": []},
        "statuses: List should have at least 1 item after validation, not 0",
        id="empty",
    ),
    pytest.param(
        "jobs.cleanup",
        {"statuses": ["done"]},
        "statuses.0: Input should be 'pending', 'running', 'succeeded', 'failed' or 'cancelled'",
        id="unknown-status",
    ),
    pytest.param(
        "jobs.cleanup", {"statuses": "failed"}, "statuses: Input should be a valid list", id="str"
    ),
    pytest.param(
        "jobs.cleanup",
        {"keep_last": 0},
        "keep_last: Input should be greater than or equal to 1",
        id="keep-last-0",
    ),
    pytest.param(
        "jobs.cleanup",
        {"keep_last": 100_001},
        "keep_last: Input should be less than or equal to 100000",
        id="keep-last-too-many",
    ),
    pytest.param(
        "jobs.cleanup", {"keep_last": "5"}, "keep_last: Input should be a valid integer", id="str5"
    ),
    pytest.param(
        "jobs.list", {"keep_last": 5}, "keep_last: unknown parameter", id="keep-last-on-list"
    ),
    pytest.param(
        "jobs.cleanup",
        {"finished_older_than_ms": -1},
        "finished_older_than_ms: Input should be greater than or equal to 0",
        id="finished-negative",
    ),
    pytest.param(
        "jobs.cleanup",
        {"include_kept": "yes"},
        "include_kept: Input should be a valid boolean",
        id="include-kept-str",
    ),
    pytest.param(
        "jobs.cleanup",
        {"actor": "keep", "include_kept": True},
        "actor: 'keep' is reserved by the tag scheme",
        id="actor-keep",
    ),
]


@pytest.mark.parametrize(("method", "params", "data"), REFUSED)
async def test_bad_selections_are_refused_with_the_reason(
    simulator: Simulator, caller: Caller, method: str, params: dict[str, Any], data: str
) -> None:
    """-32602 naming the param and what is wrong; hero_proc is not asked anything."""
    add_job(simulator.store, actor="alice")
    before = simulator.store.state()
    error = await caller.error(method, params)
    assert (error["code"], error["data"]) == (-32602, data)
    assert simulator.store.state() == before
    assert simulator.calls["job.list"] == 0


# the CLI ------------------------------------------------------------------------------


async def test_cli_selection_flags(simulator: Simulator, service: Service) -> None:
    """jobs-cleanup --status (repeated) --finished-older-than --keep-last --include-kept and
    jobs-list --status (repeated) --finished-older-than --include-kept send those params."""
    sock = str(service.socket)
    seed_population(simulator.store, 300, 20, 20, rng_seed=4)
    for job_id in sorted(simulator.store.jobs)[::7]:
        simulator.store.jobs[job_id]["tags"].append("codescaler_keep")
    code, out, err = await cli(
        "jobs-cleanup",
        "--status",
        "succeeded",
        "--status",
        "failed",
        "--finished-older-than",
        "3d",
        "--keep-last",
        "2",
        "--include-kept",
        "--dry-run",
        "--socket",
        sock,
    )
    assert (code, err) == (0, "")
    params = {
        "statuses": ["succeeded", "failed"],
        "finished_older_than_ms": 3 * DAY,
        "keep_last": 2,
        "include_kept": True,
    }
    # The clock is the service's own: the population's ages are days, the run's seconds.
    now = service.engine.clock()
    want = selected(simulator.store.jobs, now=now, **params)
    assert set(json.loads(out)["job_ids"]) == want
    assert want
    code, out, err = await cli(
        "jobs-list",
        "--status",
        "running",
        "--status",
        "pending",
        "--finished-older-than",
        "0",
        "--limit",
        "1000",
        "--socket",
        sock,
    )
    assert (code, err) == (0, "")
    assert json.loads(out)["jobs"] == []  # running and pending jobs have not finished
    code, out, _ = await cli(
        "jobs-list", "--status", "running", "--limit", "1000", "--socket", sock
    )
    listed = {j["id"] for j in json.loads(out)["jobs"]}
    assert listed == selected(simulator.store.jobs, statuses=["running"])
    code, out, _ = await cli(
        "jobs-list", "--include-kept", "--status", "running", "--limit", "1000", "--socket", sock
    )
    assert (
        {j["id"] for j in json.loads(out)["jobs"]}
        == selected(simulator.store.jobs, statuses=["running"], include_kept=True)
        != listed
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--keep-last", "0"], "--keep-last", id="keep-last-0"),
        pytest.param(["--status", "done"], "--status", id="unknown-status"),
        pytest.param(["--finished-older-than", "1w"], "--finished-older-than", id="duration"),
    ],
)
async def test_cli_bad_selection_flags_are_usage_errors(args: list[str], message: str) -> None:
    """A bad flag exits 2 with one line naming it, before any call (no socket needed)."""
    code, out, err = await cli("jobs-cleanup", *args, "--socket", "/nonexistent")
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
