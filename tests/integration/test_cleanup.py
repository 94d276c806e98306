"""jobs.cleanup end to end: caller → service socket → engine → client → simulator socket."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.logs import merge_call
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Faults, Simulator, seed_population

from ..conftest import Caller, Service, start_service
from .population import (
    DAY,
    NOW,
    add_job,
    assert_accounted,
    codescaler_ids,
    deleted_before_list,
    interleaved,
    outside,
    selected,
    walk,
)


def expected(sim: Simulator, **params: Any) -> set[int]:
    """What a cleanup with `params` must delete: computed from the store, not by the engine."""
    return selected(sim.store.jobs, **params)


async def test_cleanup_removes_every_codescaler_job_and_action_and_nothing_else(
    simulator: Simulator, caller: Caller
) -> None:
    """A plain cleanup empties the codescaler scope; other jobs stay exactly as they are."""
    seed_population(simulator.store, 800, 100, 100)
    targets = codescaler_ids(simulator.store)
    others = outside(simulator.store, targets)
    codescaler_actions = {
        k for k, a in simulator.store.actions.items() if "codescaler" in a["spec"]["tags"]
    }

    summary = await caller.call("jobs.cleanup", {})

    assert_accounted(summary)
    assert set(summary["job_ids"]) == targets
    assert summary["jobs_deleted"] == 800
    assert summary["errors"] == []
    assert summary["complete"] is True
    assert summary["dry_run"] is False
    assert summary["actions_deleted"] == len(codescaler_actions)
    assert {j: dict(v) for j, v in simulator.store.jobs.items()} == others
    assert not codescaler_actions & set(simulator.store.actions)
    assert any(not k[0].startswith("codescaler") for k in simulator.store.actions)


FILTERS = [
    pytest.param({"kind": "user"}, id="kind"),
    pytest.param({"target": "web"}, id="target"),
    pytest.param({"actor": "bob"}, id="actor"),
    pytest.param({"actor": "ci-bot", "kind": "service"}, id="actor-and-kind"),
    pytest.param({"kind": "install", "target": "db"}, id="kind-and-target"),
    pytest.param({"actor": "alice", "kind": "template", "target": "router"}, id="all-three"),
    pytest.param({"older_than_ms": 10 * DAY}, id="older-than"),
    pytest.param({"actor": "carol", "older_than_ms": 20 * DAY}, id="actor-older-than"),
    pytest.param({"actor": "nobody"}, id="no-match"),
]


@pytest.mark.parametrize("params", FILTERS)
async def test_each_filter_deletes_exactly_what_it_selects(
    simulator: Simulator, service: Service, caller: Caller, params: dict[str, Any]
) -> None:
    """Every filter narrows exactly: the deleted set equals the store's exact selection."""
    service.engine.clock = lambda: NOW
    seed_population(simulator.store, 1_500, 100, 200, rng_seed=11, now=NOW)
    want = expected(simulator, **params)
    others = outside(simulator.store, want)
    summary = await caller.call("jobs.cleanup", params)
    assert set(summary["job_ids"]) == want
    assert summary["jobs_deleted"] == len(want)
    assert {i: dict(j) for i, j in simulator.store.jobs.items()} == others
    assert_accounted(summary)
    assert (len(want) == 0) == (params == {"actor": "nobody"})


async def test_older_than_leaves_young_and_ageless_jobs(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Only jobs created at or before now - older_than_ms go; jobs without a time stay."""
    service.engine.clock = lambda: NOW
    old = add_job(simulator.store, created_at_ms=NOW - 3 * DAY)
    edge = add_job(simulator.store, created_at_ms=NOW - DAY)
    young = add_job(simulator.store, created_at_ms=NOW - DAY + 1)
    ageless = add_job(simulator.store, created_at_ms=None)
    summary = await caller.call("jobs.cleanup", {"older_than_ms": DAY})
    assert summary["job_ids"] == [old, edge]
    assert set(simulator.store.jobs) == {young, ageless}
    assert summary["actions_in_use"] == 1  # the shared action still serves the young jobs
    assert_accounted(summary)


async def test_more_than_ten_thousand_matches_are_all_deleted(
    simulator: Simulator, caller: Caller
) -> None:
    """hero_proc lists at most 10,000 jobs per call: the cleanup pages until none match."""
    seed_population(simulator.store, 12_345, 500, 500)
    targets = codescaler_ids(simulator.store)
    others = outside(simulator.store, targets)
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 12_345
    assert set(summary["job_ids"]) == targets
    assert {i: dict(j) for i, j in simulator.store.jobs.items()} == others
    assert_accounted(summary)


async def test_dry_run_enumerates_and_changes_nothing(simulator: Simulator, caller: Caller) -> None:
    """A dry run lists the matches with zero deletions; hero_proc's state is identical after."""
    seed_population(simulator.store, 600, 50, 50)
    before = simulator.store.state()
    want = expected(simulator, kind="user")
    summary = await caller.call("jobs.cleanup", {"kind": "user", "dry_run": True})
    assert simulator.store.state() == before
    assert summary["dry_run"] is True
    assert summary["jobs_deleted"] == summary["actions_deleted"] == 0
    assert set(summary["job_ids"]) == want
    assert summary["job_ids"] == sorted(summary["job_ids"])
    users = {j["action_id"] for i, j in simulator.store.jobs.items() if i in want}
    assert set(summary["action_ids"]) == users
    assert_accounted(summary)


async def test_a_second_identical_run_deletes_nothing(simulator: Simulator, caller: Caller) -> None:
    """Idempotent: after a cleanup, the same cleanup finds nothing."""
    seed_population(simulator.store, 500, 50, 50)
    first = await caller.call("jobs.cleanup", {"actor": "alice"})
    second = await caller.call("jobs.cleanup", {"actor": "alice"})
    assert first["jobs_deleted"] > 0
    assert second["jobs_matched"] == second["jobs_deleted"] == 0
    assert second["job_ids"] == []


async def test_jobs_deleted_by_someone_else_count_as_already_gone(
    simulator: Simulator, caller: Caller
) -> None:
    """A job that vanishes between list and delete is success (already gone), not an error."""
    ids = [add_job(simulator.store) for _ in range(10)]
    stolen = set(ids[5:8])

    def steal(method: str, params: dict[str, Any]) -> None:
        if method == "job.delete" and params["id"] == ids[0]:
            for job_id in stolen:
                simulator.store.job_delete({"id": job_id, "force": True})

    simulator.hooks.append(steal)
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_already_gone"] == 3
    assert summary["jobs_deleted"] == 7
    assert summary["errors"] == []
    assert not codescaler_ids(simulator.store)
    assert_accounted(summary)


async def test_shared_actions_in_use_are_kept_and_listed_not_errors(
    simulator: Simulator, caller: Caller
) -> None:
    """An action another actor's job still runs stays: counted and listed on its own, not
    an error; the run is complete and recorded `ok`, and says so in one log line, not one
    warning per action."""
    alice = [add_job(simulator.store, actor="alice", action=f"codescaler_user_{i}") for i in "ab"]
    bob = [add_job(simulator.store, actor="bob", action=f"codescaler_user_{i}") for i in "ab"]
    with capture_logs(processors=[merge_call]) as logs:
        summary = await caller.call("jobs.cleanup", {"actor": "alice", "reason": "in use"})
    assert summary["job_ids"] == alice
    assert summary["actions_in_use"] == 2
    assert summary["actions_in_use_ids"] == ["codescaler_user_a", "codescaler_user_b"]
    assert summary["actions_deleted"] == summary["actions_failed"] == 0
    assert summary["errors"] == []
    assert summary["complete"] is True
    assert set(simulator.store.jobs) == set(bob)
    assert ("codescaler_user_a", None) in simulator.store.actions
    assert_accounted(summary)
    [said] = [e for e in logs if e["event"] == "cleanup_actions_in_use"]
    assert said["actions"] == 2
    assert [e for e in logs if e["log_level"] == "warning"] == []
    [end] = [e for e in logs if e["event"] == "cleanup_finished"]
    assert (end["outcome"], end["errors"], end["actions_in_use"]) == ("ok", 0, 2)
    [run] = (await caller.call("jobs.cleanup_history", {"limit": 1}))["runs"]
    assert (run["outcome"], run["errors_count"]) == ("ok", 0)


async def test_actions_this_service_did_not_create_are_left_in_place(
    simulator: Simulator, caller: Caller
) -> None:
    """A codescaler-tagged job run from someone else's action: the job goes, the action stays."""
    job = add_job(
        simulator.store,
        action="shared_tool",
        action_tags_=["tools"],
        extra_tags=["codescaler", "codescaler_alice"],
    )
    summary = await caller.call("jobs.cleanup", {})
    assert summary["job_ids"] == [job]
    assert summary["foreign_action_ids"] == ["shared_tool"]
    assert summary["action_ids"] == []
    assert ("shared_tool", None) in simulator.store.actions


async def test_failed_job_deletions_are_errors_and_counted(
    simulator: Simulator, caller: Caller
) -> None:
    """Every job hero_proc refuses to delete has its line in errors; nothing else is claimed."""
    ids = [add_job(simulator.store) for _ in range(5)]
    simulator.store.faults.fail_rate = {"job.delete": 1.0}
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_failed"] == 5
    assert summary["jobs_deleted"] == 0
    assert sorted(e.split(":")[0] for e in summary["errors"] if e.startswith("job ")) == sorted(
        f"job {i}" for i in ids
    )
    assert set(simulator.store.jobs) == set(ids)
    assert_accounted(summary)


async def test_a_second_cleanup_while_one_runs_is_refused_at_once(
    simulator: Simulator, caller: Caller
) -> None:
    """-32011 while a cleanup holds the lock; the first one then finishes normally."""
    add_job(simulator.store)
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(method: str, params: dict[str, Any]) -> None:
        if method == "job.list" and not release.is_set():
            entered.set()
            await release.wait()

    simulator.hooks.append(hold)
    first = asyncio.create_task(caller.call("jobs.cleanup", {}))
    await entered.wait()
    err = await caller.error("jobs.cleanup", {"dry_run": True})
    assert err["code"] == -32011
    assert err["message"] == "A cleanup is already running"
    assert (await caller.call("system.health"))["status"] == "ok"  # still serving
    release.set()
    assert (await first)["jobs_deleted"] == 1
    assert (await caller.call("jobs.cleanup", {}))["jobs_matched"] == 0  # lock released


async def test_hero_proc_down_answers_32020_naming_the_socket(sock_dir: Path) -> None:
    """No hero_proc at all: -32020 with the socket in message data; the service keeps serving."""
    settings = Settings(
        socket=sock_dir / "svc.sock",
        hero_proc_socket=sock_dir / "absent.sock",
        admin_uids={os.getuid()},
    )
    svc, runner, sock, _ = await start_service(settings)
    try:
        caller = Caller(svc.socket)
        err = await caller.error("jobs.cleanup", {})
        assert err["code"] == -32020
        assert err["message"] == "hero_proc unavailable"
        assert err["data"] == {
            "socket": str(sock_dir / "absent.sock"),
            "reason": "socket not found",
        }
        health = await caller.call("system.health")
        assert health["status"] == "degraded"
        assert health["hero_proc"]["reachable"] is False
        assert (await caller.call("rpc.discover"))["openrpc"]
        assert (await caller.error("jobs.cleanup", {}))["code"] == -32020  # the lock was released
    finally:
        await runner.cleanup()
        sock.close()


async def test_hero_proc_failing_midway_gives_a_partial_summary(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """hero_proc drops every connection after the first page: a partial summary, then recovery."""
    seed_population(simulator.store, 5_000)
    service.engine.page_size = 1_000
    service_pages = 0

    def break_after_first_page(method: str, params: dict[str, Any]) -> None:
        nonlocal service_pages
        if method == "job.list":
            service_pages += 1
            if service_pages == 2:
                simulator.store.faults.drop_rate = {"*": 1.0}

    simulator.hooks.append(break_after_first_page)
    summary = await caller.call("jobs.cleanup", {})
    assert summary["complete"] is False
    assert summary["jobs_deleted"] > 0
    assert any(e.startswith("listing stopped: hero_proc unavailable") for e in summary["errors"])
    assert summary["actions_deleted"] == 0
    assert_accounted(summary)
    simulator.hooks.clear()
    simulator.store.faults.drop_rate = None
    rest = await caller.call("jobs.cleanup", {})
    assert rest["complete"] is True
    assert not codescaler_ids(simulator.store)


async def test_each_run_logs_a_start_and_an_end_line_with_the_peer(
    simulator: Simulator, caller: Caller
) -> None:
    """One start and one end line per run, with predicate, counts, peer uid/pid and duration."""
    add_job(simulator.store, actor="alice", created_at_ms=1)
    with capture_logs(processors=[merge_call]) as logs:
        await caller.call("jobs.cleanup", {"actor": "alice", "older_than_ms": 0})
    starts = [e for e in logs if e["event"] == "cleanup_started"]
    ends = [e for e in logs if e["event"] == "cleanup_finished"]
    assert len(starts) == len(ends) == 1
    for line in (starts[0], ends[0]):
        assert line["actor"] == "alice"
        assert line["older_than_ms"] == 0
        assert line["peer_uid"] == os.getuid()
        assert line["peer_pid"] == os.getpid()
        assert line["log_level"] == "info"
    assert ends[0]["jobs_deleted"] == 1
    assert isinstance(ends[0]["duration_ms"], int)


async def test_failed_deletions_are_logged_at_warning(simulator: Simulator, caller: Caller) -> None:
    """Each failed deletion has its warning line; the action its job still uses (the job
    could not be deleted) is kept in use, which is no warning."""
    job = add_job(simulator.store, actor="alice")
    simulator.store.faults = Faults(fail_rate={"job.delete": 1.0})
    with capture_logs(processors=[merge_call]) as logs:
        summary = await caller.call("jobs.cleanup", {"actor": "alice"})
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [w["event"] for w in warnings] == ["cleanup_job_failed"]
    assert warnings[0]["job_id"] == job
    assert summary["actions_in_use_ids"] == ["codescaler_user_user0"]
    assert len(summary["errors"]) == 1


async def test_history_records_each_run(simulator: Simulator, caller: Caller) -> None:
    """jobs.cleanup_history has who ran what, when, and the counts, newest first."""
    add_job(simulator.store)
    await caller.call("jobs.cleanup", {"dry_run": True})
    await caller.call("jobs.cleanup", {"kind": "user"})
    runs = (await caller.call("jobs.cleanup_history", {}))["runs"]
    assert [r["params"] for r in runs] == [{"kind": "user"}, {}]
    assert [r["dry_run"] for r in runs] == [False, True]
    assert runs[0]["jobs_deleted"] == 1
    assert runs[1]["jobs_matched"] == 1
    assert runs[1]["jobs_deleted"] == 0
    assert [r["outcome"] for r in runs] == ["ok", "ok"]
    assert runs[0]["peer_uid"] == os.getuid()
    assert runs[0]["policy"] is None


async def test_actions_deleted_by_someone_else_count_as_already_gone(
    simulator: Simulator, caller: Caller
) -> None:
    """Actions that vanish before their deletes are done, not errors: each is counted."""
    add_job(simulator.store, kind="user")
    add_job(simulator.store, kind="service")

    def steal(method: str, params: dict[str, Any]) -> None:
        if method == "action.delete":
            simulator.store.action_delete({"name": params["name"]})

    simulator.hooks.append(steal)
    summary = await caller.call("jobs.cleanup", {})
    assert summary["actions_already_gone"] == 2
    assert summary["actions_deleted"] == 0
    assert summary["errors"] == []
    assert_accounted(summary)


async def test_actions_with_a_context_are_deleted_by_name_and_context(
    simulator: Simulator, caller: Caller
) -> None:
    """hero_proc keys an action by name and context: the jobs of one name under a null
    context and under two others came from three actions, and each of them goes."""
    name = "codescaler_user_shared"
    add_job(simulator.store, action=name)
    add_job(simulator.store, action=name, context="eu")
    add_job(simulator.store, action="codescaler_user_other", context="us")
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 3
    assert summary["actions_matched"] == 3
    assert summary["actions_deleted"] == 3
    assert summary["actions_settled_gone"] == 0  # each answered {deleted: true}: no check
    assert sorted(summary["action_ids"]) == ["codescaler_user_other", name, name]
    assert summary["errors"] == []
    assert not simulator.store.actions
    assert_accounted(summary)


async def test_each_page_starts_on_the_last_job_known_to_stay(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Ten of alice's service jobs, then one of her user jobs, pages of ten, a cleanup of
    her user jobs: the first page is read whole, the next starts one job early on the
    last service job (its anchor) and brings the user job, and the walk ends on a page
    of the anchor alone."""
    services = [add_job(simulator.store, kind="service") for _ in range(10)]
    user = add_job(simulator.store, kind="user")
    offsets: list[int] = []

    def record(method: str, params: dict[str, Any]) -> None:
        if method == "job.list":
            offsets.append(params["filter"].get("offset", 0))

    simulator.hooks.append(record)
    service.engine.page_size = 10
    summary = await caller.call("jobs.cleanup", {"actor": "alice", "kind": "user"})
    assert summary["job_ids"] == [user]
    assert summary["errors"] == []
    assert summary["complete"] is True
    assert set(simulator.store.jobs) == set(services)
    assert offsets == [0, 9, 9]
    assert_accounted(summary)


def record_list_offsets(simulator: Simulator) -> list[int]:
    """The offset of each job.list the simulator answers, in order."""
    offsets: list[int] = []

    def record(method: str, params: dict[str, Any]) -> None:
        if method == "job.list":
            offsets.append(params["filter"].get("offset", 0))

    simulator.hooks.append(record)
    return offsets


async def test_a_match_whose_deletion_failed_anchors_the_next_page(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """A service job, then three of alice's user jobs, pages of four: the last user job's
    deletion fails, so it stays listed and is the next page's anchor, ahead of the kept
    service job: the next page starts one job early, on it, and the walk ends there in
    one pass."""
    kept = add_job(simulator.store, kind="service")
    users = [add_job(simulator.store, kind="user") for _ in range(3)]
    offsets = record_list_offsets(simulator)

    def fail_last_delete(method: str, params: dict[str, Any]) -> None:
        # Hooks run before the faults are read: fail exactly this job's delete.
        failing = method == "job.delete" and params.get("id") == users[-1]
        simulator.store.faults = Faults(fail_rate={"job.delete": 1.0} if failing else None)

    simulator.hooks.append(fail_last_delete)
    service.engine.page_size = 4
    summary = await caller.call("jobs.cleanup", {"actor": "alice", "kind": "user"})
    assert summary["job_ids"] == users
    assert summary["jobs_deleted"] == 2
    assert set(simulator.store.jobs) == {kept, users[-1]}
    assert offsets == [0, 1]
    assert_accounted(summary)


async def test_a_malformed_job_anchors_the_next_page(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """A service job, two of alice's user jobs, then a user job listed without a string
    `action_id` (malformed: skipped, never deleted), pages of four: the malformed job
    stays listed and is the next page's anchor, so the next page starts on it and the
    walk ends there in one pass."""
    kept = add_job(simulator.store, kind="service")
    users = [add_job(simulator.store, kind="user") for _ in range(2)]
    malformed = add_job(simulator.store, kind="user")
    simulator.store.jobs[malformed]["action_id"] = None
    offsets = record_list_offsets(simulator)
    service.engine.page_size = 4
    with capture_logs(processors=[merge_call]) as logs:
        summary = await caller.call("jobs.cleanup", {"actor": "alice", "kind": "user"})
    assert summary["job_ids"] == users
    assert set(simulator.store.jobs) == {kept, malformed}
    assert offsets == [0, 1]
    [end] = [e for e in logs if e["event"] == "cleanup_finished"]
    assert end["passes"] == 1


async def test_a_hung_hero_proc_cannot_hang_the_service(
    sock_dir: Path, simulator: Simulator
) -> None:
    """hero_proc accepts but never answers: the call ends with -32020 after the timeout."""
    never = asyncio.Event()

    async def hang(method: str, params: dict[str, Any]) -> None:
        await never.wait()

    simulator.hooks.append(hang)
    settings = Settings(
        socket=sock_dir / "svc.sock",
        hero_proc_socket=sock_dir / "hero_proc.sock",
        hero_proc_timeout=0.2,
        admin_uids={os.getuid()},
    )
    svc, runner, sock, _ = await start_service(settings)
    try:
        err = await Caller(svc.socket).error("jobs.cleanup", {})
        assert err["code"] == -32020
        assert err["data"]["reason"] == "no answer within 0.2s"
        health = await Caller(svc.socket).call("system.health")
        assert health["hero_proc"]["reachable"] is False
    finally:
        never.set()
        await runner.cleanup()
        sock.close()


# The multi-page walk, pinned: small pages, an age filter (kept jobs between the
# matches), and jobs deleted by someone else between and during pages.


async def test_a_stable_listing_is_walked_in_one_pass(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Nobody else touches hero_proc: one pass, each page anchored on the last kept job."""
    old, young = interleaved(simulator.store)
    summary, passes = await walk(caller, service)
    assert sorted(summary["job_ids"]) == old
    assert set(simulator.store.jobs) == set(young)
    assert summary["complete"] is True
    assert passes == 1
    assert_accounted(summary)


async def test_kept_jobs_deleted_between_pages_are_caught_up_by_another_pass(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Someone deletes two kept jobs before the walk's position while it runs: the next
    page starts too far and skips a match; the walk sees it moved and a second pass
    deletes what it skipped."""
    old, young = interleaved(simulator.store)
    simulator.hooks.append(deleted_before_list(simulator.store, young[:2], 3))
    summary, passes = await walk(caller, service)
    assert sorted(summary["job_ids"]) == old
    assert summary["jobs_deleted"] == len(old)
    assert set(simulator.store.jobs) == set(young[2:])
    assert summary["complete"] is True
    assert passes == 2
    assert_accounted(summary)


async def test_matches_deleted_by_someone_else_keep_the_walk_in_place(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """A match of page 2 deleted by someone else just before the service's own delete:
    already gone, it left the listing like the others, and the walk stays on its anchor."""
    old, young = interleaved(simulator.store)
    stolen = old[4]

    def steal(method: str, params: dict[str, Any]) -> None:
        if method == "job.delete" and params["id"] == old[3]:
            simulator.store.job_delete({"id": stolen})

    simulator.hooks.append(steal)
    summary, passes = await walk(caller, service)
    assert summary["jobs_already_gone"] == 1
    assert summary["jobs_deleted"] == len(old) - 1
    assert set(simulator.store.jobs) == set(young)
    assert summary["complete"] is True
    assert passes == 1
    assert_accounted(summary)
