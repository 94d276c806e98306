"""Preview, then delete exactly that: a dry run's plan and its apply; bounded runs
(`max_jobs`, `has_more`); summaries without their id lists (`ids: false`). Through the
service's socket, against the simulator on its own."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.errors import StateUnavailable
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Faults, Simulator, Store
from hero_codescalers.state import FILE_NAME
from hero_codescalers.state.store import wall_ms
from hero_codescalers.tags import action_name, action_tags

from ..conftest import Caller, Service
from .population import DAY, add_job, assert_accounted
from .test_state import history, running

HOUR = 3_600_000


def retag(store: Store, job_id: int, tags: list[str]) -> None:
    """Give a job other tags, as an operator editing it in hero_proc would (the store's
    tag indexes are rebuilt on their next use)."""
    store.jobs[job_id]["tags"] = tags
    store.by_prefix.clear()


async def last_run(caller: Caller) -> dict[str, Any]:
    [run] = (await caller.call("jobs.cleanup_history", {"limit": 1}))["runs"]
    return run


# Preview, then apply -------------------------------------------------------------------


async def test_a_plan_deletes_only_its_jobs_that_still_exist_and_still_match(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Between the dry run and the apply, a matching job is created, planned jobs are
    retagged to another actor, restarted, exempted (codescaler_keep), made younger than
    the plan's age cutoff (not younger than the apply's: the cutoff is the dry run's),
    and deleted: the apply deletes only the planned jobs untouched, and nothing else
    changes."""
    store = simulator.store
    t0 = wall_ms()
    service.engine.clock = lambda: t0
    old = t0 - 2 * DAY
    untouched = [add_job(store, actor="alice", created_at_ms=old) for _ in range(2)]
    retagged, restarted, exempted, redated, vanished = (
        add_job(store, actor="alice", created_at_ms=old) for _ in range(5)
    )
    bobs = add_job(store, actor="bob", created_at_ms=old)
    young = add_job(store, actor="alice", created_at_ms=t0)
    params = {"actor": "alice", "older_than_ms": DAY, "statuses": ["succeeded", "failed"]}

    preview = await caller.call("jobs.cleanup", {**params, "dry_run": True})
    planned = [*untouched, retagged, restarted, exempted, redated, vanished]
    assert preview["job_ids"] == planned
    assert isinstance(preview["plan_id"], str)
    assert preview["plan_expires_at_ms"] == t0 + HOUR

    created = add_job(store, actor="alice", created_at_ms=old)  # matches, but created since
    retag(store, retagged, ["codescaler", "codescaler_kind_user", "codescaler_bob"])
    store.jobs[restarted].update(status="running", finished_at_ms=None)
    store.jobs[exempted]["tags"].append("codescaler_keep")
    store.jobs[redated]["created_at_ms"] = t0 - DAY + 60_000
    store.job_delete({"id": vanished})
    service.engine.clock = lambda: t0 + HOUR // 2  # the apply's own cutoff would take redated
    left = {i: dict(j) for i, j in store.jobs.items() if i not in untouched}

    applied = await caller.call(
        "jobs.cleanup", {"plan_id": preview["plan_id"], "reason": "the preview, approved"}
    )
    assert applied["job_ids"] == untouched
    assert (applied["jobs_deleted"], applied["jobs_matched"]) == (2, 2)
    assert applied["plan_id"] == preview["plan_id"]
    assert (applied["complete"], applied["errors"], applied["has_more"]) == (True, [], False)
    assert {i: dict(j) for i, j in store.jobs.items()} == left
    assert {retagged, restarted, exempted, redated, bobs, young, created} == set(store.jobs)
    assert_accounted(applied)
    run = await last_run(caller)
    assert run["params"] == {"plan_id": preview["plan_id"]}
    assert (run["reason"], run["outcome"], run["dry_run"]) == ("the preview, approved", "ok", False)


async def test_a_plan_keeps_its_dry_run_filters_with_keep_last(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """With keep_last, the apply reads the groups again: a planned job that has become one
    of the newest of its group (newer ones deleted meanwhile) is kept."""
    store = simulator.store
    jobs = [add_job(store, actor="alice", created_at_ms=1_000 + i) for i in range(5)]
    preview = await caller.call("jobs.cleanup", {"keep_last": 2, "dry_run": True})
    assert preview["job_ids"] == jobs[:3]
    store.job_delete({"id": jobs[4]})  # jobs[2] is now among the newest two
    applied = await caller.call("jobs.cleanup", {"plan_id": preview["plan_id"]})
    assert applied["job_ids"] == jobs[:2]
    assert set(store.jobs) == {jobs[2], jobs[3]}


async def test_an_apply_lists_no_further_than_its_plan(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Ids only grow: once the listing is past the plan's last job, nothing later can be
    one of its jobs, and the apply stops listing (40 jobs made since, pages of 4: one
    page read)."""
    service.engine.page_size = 4
    planned = [add_job(simulator.store) for _ in range(3)]
    plan = (await caller.call("jobs.cleanup", {"dry_run": True}))["plan_id"]
    since = {add_job(simulator.store) for _ in range(40)}
    listings = []
    simulator.hooks.append(lambda method, params: listings.append(method == "job.list"))
    applied = await caller.call("jobs.cleanup", {"plan_id": plan})
    assert applied["job_ids"] == planned
    assert set(simulator.store.jobs) == since
    assert sum(listings) == 1


async def test_a_plan_is_applied_once(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """A second apply of the same plan is -32014 `applied`, naming the run that applied
    it, and deletes nothing (a job made since, of the same selection, stays)."""
    add_job(simulator.store, actor="alice")
    preview = await caller.call("jobs.cleanup", {"actor": "alice", "dry_run": True})
    plan = preview["plan_id"]
    first = await caller.call("jobs.cleanup", {"plan_id": plan, "ids": False})
    assert (first["jobs_deleted"], first["ids_omitted"], first["job_ids"]) == (1, True, [])
    later = add_job(simulator.store, actor="alice")
    with capture_logs() as logs:
        error = await caller.error("jobs.cleanup", {"plan_id": plan})
    assert error["code"] == -32014
    assert error["message"] == "Plan unusable"
    assert error["data"]["reason"] == "applied"
    assert error["data"]["plan_id"] == plan
    assert error["data"]["run_id"] == first["run_id"]
    [run] = [r for r in (await history(caller))["runs"] if r["run_id"] == first["run_id"]]
    assert run["started_at_ms"] <= error["data"]["applied_at_ms"] <= run["finished_at_ms"]
    assert set(simulator.store.jobs) == {later}
    assert not [e for e in logs if e["event"] == "cleanup_started"]


@pytest.mark.parametrize(
    ("params", "code", "data"),
    [
        pytest.param(
            {"plan_id": "0123456789abcdef"},
            -32014,
            {"reason": "unknown", "plan_id": "0123456789abcdef"},
            id="unknown",
        ),
        pytest.param(
            {"plan_id": "my-plan"}, -32602, "plan_id: String should match", id="malformed"
        ),
        pytest.param(
            {"plan_id": "0123456789abcdef", "actor": "alice"},
            -32602,
            "plan_id: give it alone (with reason or ids), the plan holds its selection; "
            "not with actor",
            id="with-a-filter",
        ),
        pytest.param(
            {"plan_id": "0123456789abcdef", "dry_run": True, "max_jobs": 5},
            -32602,
            "plan_id: give it alone (with reason or ids), the plan holds its selection; "
            "not with dry_run, max_jobs",
            id="with-dry-run-and-a-bound",
        ),
    ],
)
async def test_a_plan_that_cannot_be_applied_is_refused_precisely(
    simulator: Simulator, caller: Caller, params: dict[str, Any], code: int, data: Any
) -> None:
    """An unknown plan is -32014 `unknown`; a malformed id, or a plan given with what it
    holds already (filters, a bound, a dry run), is -32602 naming plan_id. Nothing runs."""
    job = add_job(simulator.store, actor="alice")
    error = await caller.error("jobs.cleanup", params)
    assert error["code"] == code
    if isinstance(data, str):
        assert error["data"].startswith(data), error
    else:
        assert error["data"] == data
    assert set(simulator.store.jobs) == {job}
    assert (await caller.call("jobs.cleanup_history", {}))["runs"] == []


async def test_a_plan_expires_an_hour_after_its_dry_run(
    settings: Settings, simulator: Simulator
) -> None:
    """With the service's clock moved on: a plan applies until an hour after its dry run,
    then is -32014 `expired`. The housekeeping drops the jobs of expired and applied plans
    (their answers stay precise), and the plans themselves with the history."""
    store = simulator.store
    users = {add_job(store, kind="user") for _ in range(3)}
    services = {add_job(store, kind="service") for _ in range(2)}
    t0 = 1_800_000_000_000
    now = [t0]
    database = settings.state_dir / FILE_NAME
    async with running(settings, clock=lambda: now[0]) as caller:
        user_plan = await caller.call("jobs.cleanup", {"kind": "user", "dry_run": True})
        service_plan = await caller.call("jobs.cleanup", {"kind": "service", "dry_run": True})
        assert user_plan["plan_expires_at_ms"] == t0 + HOUR
        now[0] = t0 + HOUR - 1
        applied = await caller.call("jobs.cleanup", {"plan_id": user_plan["plan_id"]})
        assert set(applied["job_ids"]) == users
        now[0] = t0 + HOUR
        error = await caller.error("jobs.cleanup", {"plan_id": service_plan["plan_id"]})
        assert error["code"] == -32014
        assert error["data"] == {
            "reason": "expired",
            "plan_id": service_plan["plan_id"],
            "expired_at_ms": t0 + HOUR,
        }
        assert set(store.jobs) == services
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM plan_jobs").fetchone() == (5,)
    db.close()

    with capture_logs() as logs:
        async with running(settings, clock=lambda: now[0]) as caller:  # start: housekeeping
            expired = await caller.error("jobs.cleanup", {"plan_id": service_plan["plan_id"]})
            again = await caller.error("jobs.cleanup", {"plan_id": user_plan["plan_id"]})
    assert (expired["data"]["reason"], again["data"]["reason"]) == ("expired", "applied")
    [pruned] = [e for e in logs if e["event"] == "plans_pruned"]
    assert (pruned["plan_jobs"], pruned["plans"]) == (5, 0)
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM plan_jobs").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM plans").fetchone() == (2,)
    db.close()

    now[0] = t0 + settings.history_days * DAY + 1
    async with running(settings, clock=lambda: now[0]) as caller:
        gone = await caller.error("jobs.cleanup", {"plan_id": service_plan["plan_id"]})
    assert gone["data"]["reason"] == "unknown"


async def test_a_plan_whose_apply_failed_before_any_match_can_be_applied_again(
    simulator: Simulator, caller: Caller
) -> None:
    """hero_proc failing the apply's first listing: the run is an error and did nothing,
    so its plan is given back; applied again once hero_proc answers, it deletes its jobs."""
    job = add_job(simulator.store)
    plan = (await caller.call("jobs.cleanup", {"dry_run": True}))["plan_id"]
    simulator.store.faults = Faults(fail_rate={"job.list": 1.0})
    error = await caller.error("jobs.cleanup", {"plan_id": plan})
    assert error["code"] == -32021
    assert (await last_run(caller))["outcome"] == "error"
    simulator.store.faults = Faults()
    applied = await caller.call("jobs.cleanup", {"plan_id": plan})
    assert applied["job_ids"] == [job]
    assert not simulator.store.jobs


async def test_a_dry_run_that_cannot_be_recorded_has_no_plan(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """When the state database cannot be written, a dry run still answers, without a plan
    (`plan_id` null): nothing could keep it."""
    job = add_job(simulator.store)
    state = service.engine.state

    async def failing(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise StateUnavailable(str(state.path), "attempt to write a readonly database")

    state.begin = failing  # type: ignore[method-assign]
    preview = await caller.call("jobs.cleanup", {"dry_run": True})
    assert preview["job_ids"] == [job]
    assert (preview["plan_id"], preview["plan_expires_at_ms"]) == (None, None)


def put_orphan(store: Store) -> tuple[str, None]:
    """A codescaler action no job references (left by a run cut short)."""
    name = action_name("user", "orphan")
    store.action_set({"name": name, "spec": {"script": "x", "tags": action_tags("user")}})
    return name, None


@pytest.mark.parametrize(
    ("params", "swept"),
    [
        pytest.param({}, True, id="no-selection"),
        pytest.param({"ids": False, "reason": "r"}, True, id="ids-and-reason-select-nothing"),
        pytest.param({"include_kept": True}, True, id="include-kept"),
        pytest.param({"max_jobs": 100}, False, id="max-jobs"),
        pytest.param({"plan": True}, False, id="plan"),
    ],
)
async def test_only_a_run_without_any_selection_sweeps_orphan_actions(
    simulator: Simulator, caller: Caller, params: dict[str, Any], swept: bool
) -> None:
    """A bound or a plan is a selection: such a run leaves orphan actions to a run of
    everything (`ids` and `reason` select nothing)."""
    job = add_job(simulator.store)
    params = dict(params)  # the parameter's own dict stays as it is, for the next run
    if params.pop("plan", False):
        params["plan_id"] = (await caller.call("jobs.cleanup", {"dry_run": True}))["plan_id"]
    orphan = put_orphan(simulator.store)
    summary = await caller.call("jobs.cleanup", params)
    assert summary["jobs_deleted"] == 1
    assert job not in simulator.store.jobs
    assert (orphan not in simulator.store.actions) is swept
    assert summary["orphan_actions_deleted"] == int(swept)


# Bounded runs --------------------------------------------------------------------------


async def test_max_jobs_bounds_each_run_and_has_more_says_when_more_remain(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Pages of 4, alice's jobs between bob's: each run deletes the next `max_jobs` of
    alice's oldest first; `has_more` is true while more match (a match found on a later
    page included), false when the bound took the last; the runs are complete and ok."""
    service.engine.page_size = 4
    store = simulator.store
    alice = []
    for i in range(10):
        alice.append(add_job(store, actor="alice", action=action_name("user", f"a{i}")))
        if i % 3 == 0:
            add_job(store, actor="bob")
    bob = set(store.jobs) - set(alice)
    seen = []
    for bound, deleted, more in ((4, 4, True), (3, 3, True), (3, 3, False), (3, 0, False)):
        summary = await caller.call("jobs.cleanup", {"actor": "alice", "max_jobs": bound})
        assert summary["job_ids"] == alice[len(seen) : len(seen) + deleted]
        assert summary["jobs_deleted"] == deleted
        assert (summary["has_more"], summary["complete"], summary["errors"]) == (more, True, [])
        assert summary["actions_deleted"] == deleted  # each job's own action
        assert_accounted(summary)
        run = await last_run(caller)
        assert run["outcome"] == "ok"
        assert run["params"] == {"actor": "alice", "max_jobs": bound}
        seen += summary["job_ids"]
    assert set(store.jobs) == bob


async def test_a_bounded_run_stops_listing_at_the_match_past_its_bound(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """100 matching jobs, pages of 10, max_jobs 5: the first page holds the 6th match, so
    the run reads no other page."""
    service.engine.page_size = 10
    jobs = [add_job(simulator.store) for _ in range(100)]
    listings = []
    simulator.hooks.append(lambda method, params: listings.append(method == "job.list"))
    summary = await caller.call("jobs.cleanup", {"max_jobs": 5})
    assert (summary["job_ids"], summary["has_more"]) == (jobs[:5], True)
    assert sum(listings) == 1


async def test_a_bounded_dry_run_plans_the_jobs_it_shows(
    simulator: Simulator, caller: Caller
) -> None:
    """A dry run with max_jobs lists the first N matches and says more remain; its plan
    deletes those N, not the rest."""
    jobs = [add_job(simulator.store) for _ in range(5)]
    preview = await caller.call("jobs.cleanup", {"dry_run": True, "max_jobs": 3})
    assert (preview["job_ids"], preview["has_more"]) == (jobs[:3], True)
    applied = await caller.call("jobs.cleanup", {"plan_id": preview["plan_id"]})
    assert (applied["job_ids"], applied["has_more"]) == (jobs[:3], False)
    assert set(simulator.store.jobs) == set(jobs[3:])


@pytest.mark.parametrize("max_jobs", [0, -1, "3", 1.5, True])
async def test_max_jobs_is_a_positive_integer(caller: Caller, max_jobs: Any) -> None:
    """max_jobs below 1, or not an integer, is -32602 naming it."""
    error = await caller.error("jobs.cleanup", {"max_jobs": max_jobs})
    assert error["code"] == -32602
    assert error["data"].startswith("max_jobs: "), error


# Summaries without their id lists ------------------------------------------------------


async def test_ids_false_leaves_the_id_lists_empty_and_says_so(
    simulator: Simulator, caller: Caller
) -> None:
    """`ids: false`: the id lists are empty and `ids_omitted` is true, the counts are
    those of the same run with ids; the dry run's plan still holds every job."""
    store = simulator.store
    jobs = [add_job(store, actor="alice") for _ in range(3)]
    add_job(store, actor="bob")
    foreign = add_job(
        store, action="shared_tool", action_tags_=["tools"], extra_tags=["codescaler"]
    )
    full = await caller.call("jobs.cleanup", {"dry_run": True})
    compact = await caller.call("jobs.cleanup", {"dry_run": True, "ids": False})
    assert compact["ids_omitted"] is True
    assert full["ids_omitted"] is False
    for name in ("job_ids", "action_ids", "foreign_action_ids", "actions_in_use_ids"):
        assert compact[name] == []
    assert full["foreign_action_ids"] == ["shared_tool"]
    volatile = {"run_id", "plan_id", "plan_expires_at_ms", "duration_ms", "ids_omitted"}
    lists = {"job_ids", "action_ids", "foreign_action_ids", "actions_in_use_ids"}
    assert {k: v for k, v in compact.items() if k not in volatile | lists} == {
        k: v for k, v in full.items() if k not in volatile | lists
    }
    assert_accounted(compact)
    applied = await caller.call(
        "jobs.cleanup", {"plan_id": compact["plan_id"], "ids": False, "reason": "compact"}
    )
    assert (applied["jobs_deleted"], applied["job_ids"]) == (5, [])
    assert applied["actions_in_use"] == 0
    assert not set(store.jobs) & {*jobs, foreign}
    assert_accounted(applied)
