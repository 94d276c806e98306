"""Background runs through the service's socket: jobs.cleanup_start answers at once,
jobs.cleanup_status follows any run (from memory or from its record), jobs.cleanup_cancel
stops one at its next step and records who asked, and -32011 names the run holding the
lock. hero_proc is the simulator; its hooks hold a run where a test needs it."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from hero_codescalers.engine import KEPT_RUNS
from hero_codescalers.simulator import Simulator, seed_population

from ..conftest import Caller, Service, ServiceFactory
from .test_processes import HoldDeletes
from .test_state import HoldListing, history

ME = (os.getuid(), os.getpid())


async def status(caller: Caller, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await caller.call("jobs.cleanup_status", {"run_id": run_id})
    return result


async def open_run(caller: Caller) -> str:
    """The id of the run going on, from the history (its newest entry, without outcome)."""
    [run] = (await history(caller, limit=1))["runs"]
    assert run["outcome"] is None
    run_id: str = run["run_id"]
    return run_id


def codescaler_jobs(simulator: Simulator) -> int:
    return sum("codescaler" in (job.get("tags") or []) for job in simulator.store.jobs.values())


# Start and status -----------------------------------------------------------------------


async def test_a_background_run_answers_at_once_and_its_status_follows_it(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """The start answers its run id while the run is held at its second page; the status
    then shows the phase, the counts of the first page, a bound from hero_proc's stats
    (asked once a pass, and again after it failed) and a time left; once done, the summary."""
    seed_population(simulator.store, 3_000)
    service.engine.page_size = 1_000
    hold = HoldListing(nth=2)
    simulator.hooks.append(hold)
    started = await caller.call("jobs.cleanup_start", {"reason": "nightly, by hand"})
    assert set(started) == {"run_id", "started_at_ms"}
    await hold.entered.wait()
    simulator.store.faults.fail_rate = {"stats": 1.0}
    unbounded = await status(caller, started["run_id"])
    assert (unbounded["jobs_left_at_most"], unbounded["eta_ms"]) == (None, None)
    simulator.store.faults.fail_rate = {}
    going = await status(caller, started["run_id"])
    again = await status(caller, started["run_id"])
    assert simulator.calls["stats"] == 2  # the failed try, then one for the pass
    assert going["phase"] == "listing"
    assert going["source"] == "memory"
    assert going["outcome"] is None
    assert going["background"] is True
    assert (going["peer_uid"], going["peer_pid"]) == ME
    assert going["started_at_ms"] == started["started_at_ms"]
    assert (going["jobs_listed"], going["jobs_matched"], going["jobs_deleted"]) == (
        1_000,
        1_000,
        1_000,
    )
    assert going["jobs_left_at_most"] == again["jobs_left_at_most"] == 2_000
    assert isinstance(going["eta_ms"], int)
    assert going["eta_ms"] >= 0
    assert going["jobs_per_s"] > 0
    assert going["summary"] is None
    hold.release.set()
    await service.engine.idle()
    done = await status(caller, started["run_id"])
    assert (done["phase"], done["outcome"], done["source"]) == ("done", "ok", "memory")
    assert done["jobs_deleted"] == 3_000
    assert (done["jobs_listed"], done["jobs_left_at_most"], done["eta_ms"]) == (None,) * 3
    summary = done["summary"]
    assert summary["run_id"] == started["run_id"]
    assert summary["jobs_deleted"] == 3_000
    assert summary["complete"] is True
    assert len(summary["job_ids"]) == 3_000
    assert codescaler_jobs(simulator) == 0
    [run] = (await history(caller))["runs"]
    assert (run["run_id"], run["background"], run["outcome"]) == (started["run_id"], True, "ok")
    assert run["reason"] == "nightly, by hand"


async def test_a_background_run_that_fails_says_so_in_its_status(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """hero_proc unreachable once the run is recorded: the start still answers its id, and
    the status says the run ended in error, and why."""
    seed_population(simulator.store, 10)
    simulator.store.faults.drop_rate = {"job.list": 1.0}
    started = await caller.call("jobs.cleanup_start", {})
    await service.engine.idle()
    done = await status(caller, started["run_id"])
    assert (done["phase"], done["outcome"], done["summary"]) == ("done", "error", None)
    assert "hero_proc unavailable" in done["error"]
    assert codescaler_jobs(simulator) == 10


async def test_the_last_background_summaries_are_kept_and_older_ones_read_from_records(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Of more background runs than are kept, the oldest is answered from its record (no
    summary), the newest from memory with its summary."""
    seed_population(simulator.store, 5)
    ids = []
    for _ in range(KEPT_RUNS + 1):
        ids.append((await caller.call("jobs.cleanup_start", {"dry_run": True}))["run_id"])
        await service.engine.idle()
    oldest, newest = await status(caller, ids[0]), await status(caller, ids[-1])
    assert (oldest["source"], oldest["summary"]) == ("record", None)
    assert (oldest["phase"], oldest["outcome"], oldest["jobs_matched"]) == ("done", "ok", 5)
    assert (oldest["dry_run"], oldest["background"]) == (True, True)
    assert newest["source"] == "memory"
    assert newest["summary"]["job_ids"] == sorted(simulator.store.jobs)


@pytest.mark.parametrize("method", ["jobs.cleanup_status", "jobs.cleanup_cancel"])
@pytest.mark.parametrize(
    ("run_id", "data"),
    [
        pytest.param(
            "0123456789abcdef",
            "run_id: no cleanup run 0123456789abcdef in this service's memory or its history "
            "(finished runs are kept 90 days)",
            id="unknown",
        ),
        pytest.param("../../etc", "run_id: String should match pattern", id="malformed"),
    ],
)
async def test_an_unknown_run_is_32602_naming_it(
    service: Service, caller: Caller, method: str, run_id: str, data: str
) -> None:
    """A run id that names no run, or is not a run id at all, is -32602 saying so."""
    err = await caller.error(method, {"run_id": run_id})
    assert err["code"] == -32602
    assert err["data"].startswith(data)


# The lock ---------------------------------------------------------------------------------


@pytest.mark.parametrize("background", [True, False], ids=["background", "foreground"])
async def test_32011_names_the_run_holding_the_lock(
    simulator: Simulator, service: Service, caller: Caller, background: bool
) -> None:
    """A cleanup (or a start) meeting a running one is told its id, who started it and
    when, its policy (none) and whether it runs in the background."""
    seed_population(simulator.store, 20)
    hold = HoldDeletes()
    simulator.hooks.append(hold)
    if background:
        run_id = (await caller.call("jobs.cleanup_start", {"kind": "user"}))["run_id"]
        first = None
    else:
        first = asyncio.create_task(caller.call("jobs.cleanup", {"kind": "user"}))
    await hold.entered.wait()
    if first is not None:
        run_id = await open_run(caller)
    [run] = (await history(caller))["runs"]
    for method in ("jobs.cleanup", "jobs.cleanup_start"):
        err = await caller.error(method, {"dry_run": True})
        assert err["code"] == -32011
        assert err["data"] == {
            "reason": f"this service is running one: run {run_id}",
            "run_id": run_id,
            "started_at_ms": run["started_at_ms"],
            "peer_uid": ME[0],
            "peer_pid": ME[1],
            "policy": None,
            "background": background,
        }
    hold.release.set()
    if first is not None:
        await first
    await service.engine.idle()


# Cancel -----------------------------------------------------------------------------------


async def test_cancel_stops_a_background_run_with_a_partial_summary_and_records_who(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Cancelled while its first deletions are held: what was sent is answered, nothing more
    is sent (no next page, no action), the run ends `cancelled` with a partial summary that
    says who stopped it; a cancel that does not wait answers the run still stopping, one
    that waits its end and summary, and the record names the canceller."""
    seed_population(simulator.store, 3_000)
    service.engine.page_size = 1_000
    hold = HoldDeletes()
    simulator.hooks.append(hold)
    run_id = (await caller.call("jobs.cleanup_start", {}))["run_id"]
    await hold.entered.wait()
    service.engine.cancel_wait = 0
    stopping = await caller.call("jobs.cleanup_cancel", {"run_id": run_id})
    assert stopping["phase"] == "deleting_jobs"
    assert stopping["outcome"] is None
    assert stopping["cancelled_by"]["uid"] == ME[0]
    assert stopping["cancelled_by"]["pid"] == ME[1]
    listed = simulator.calls["job.list"]
    service.engine.cancel_wait = 5
    waiting = asyncio.create_task(caller.call("jobs.cleanup_cancel", {"run_id": run_id}))
    hold.release.set()
    done = await waiting
    assert simulator.calls["job.list"] == listed  # no page after the cancel
    assert simulator.calls["action.delete"] == 0
    assert (done["phase"], done["outcome"]) == ("done", "cancelled")
    assert done["cancelled_by"] == stopping["cancelled_by"]  # the first asker is kept
    summary = done["summary"]
    reason = f"cancelled by uid {ME[0]} (pid {ME[1]})"
    assert summary["complete"] is False
    assert f"stopped: {reason}" in summary["errors"]
    assert f"{summary['actions_matched']} actions not attempted: {reason}" in summary["errors"]
    assert summary["actions_not_attempted"] == summary["actions_matched"] > 0
    assert summary["jobs_matched"] == summary["jobs_deleted"] + summary["jobs_not_attempted"]
    assert 0 < summary["jobs_deleted"] <= 1_000
    assert codescaler_jobs(simulator) == 3_000 - summary["jobs_deleted"]
    [run] = (await history(caller))["runs"]
    assert run["outcome"] == "cancelled"
    assert run["cancelled_by"] == stopping["cancelled_by"]
    assert run["jobs_deleted"] == summary["jobs_deleted"]


async def test_cancelling_a_foreground_run_gives_its_caller_the_partial_summary(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """A jobs.cleanup cancelled from another connection answers its own caller the partial
    summary, and is recorded cancelled, with who asked."""
    seed_population(simulator.store, 50)
    hold = HoldDeletes()
    simulator.hooks.append(hold)
    cleanup = asyncio.create_task(caller.call("jobs.cleanup", {}))
    await hold.entered.wait()
    run_id = await open_run(caller)
    service.engine.cancel_wait = 0
    await caller.call("jobs.cleanup_cancel", {"run_id": run_id})
    hold.release.set()
    summary = await cleanup
    assert summary["run_id"] == run_id
    assert summary["complete"] is False
    assert f"stopped: cancelled by uid {ME[0]} (pid {ME[1]})" in summary["errors"]
    assert summary["orphan_actions_deleted"] == 0  # the sweep neither
    after = await status(caller, run_id)  # a foreground run: from its record
    assert (after["source"], after["outcome"], after["summary"]) == ("record", "cancelled", None)
    assert after["cancelled_by"]["uid"] == ME[0]
    assert after["jobs_deleted"] == summary["jobs_deleted"]


async def test_cancelling_a_run_that_has_ended_leaves_it_as_it_was(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """A cancel after the run's end answers its status and records no canceller."""
    seed_population(simulator.store, 5)
    summary = await caller.call("jobs.cleanup", {})
    answer = await caller.call("jobs.cleanup_cancel", {"run_id": summary["run_id"]})
    assert (answer["outcome"], answer["cancelled_by"]) == ("ok", None)
    [run] = (await history(caller))["runs"]
    assert (run["outcome"], run["cancelled_by"]) == ("ok", None)


async def test_a_cancel_through_another_process_stops_the_run_at_its_next_checkpoint(
    simulator: Simulator, service: Service, caller: Caller, make_service: ServiceFactory
) -> None:
    """Two services on one state directory: a run of the first, cancelled through the
    second, which answers from the record; the run reads the cancel at its next
    checkpoint (after the page under way) and lists no more."""
    seed_population(simulator.store, 3_500)
    service.engine.page_size = 1_000
    hold = HoldListing(nth=2)
    simulator.hooks.append(hold)
    cleanup = asyncio.create_task(caller.call("jobs.cleanup", {}))
    await hold.entered.wait()
    other = Caller((await make_service()).socket)
    run_id = await open_run(other)
    asked = await other.call("jobs.cleanup_cancel", {"run_id": run_id})
    assert asked["source"] == "record"
    assert asked["outcome"] is None
    assert asked["phase"] == "listing"  # as of the first page's checkpoint: the next page
    assert asked["jobs_deleted"] == 1_000
    assert asked["cancelled_by"]["uid"] == ME[0]
    hold.release.set()
    summary = await cleanup
    assert summary["jobs_deleted"] == 2_000  # the page under way, then no more
    assert simulator.calls["job.list"] == 2
    assert f"stopped: cancelled by uid {ME[0]} (pid {ME[1]})" in summary["errors"]
    assert codescaler_jobs(simulator) == 1_500
    seen = await status(other, run_id)
    assert (seen["outcome"], seen["cancelled_by"]) == ("cancelled", asked["cancelled_by"])


# A caller that goes away --------------------------------------------------------------------


async def test_a_foreground_run_whose_caller_disconnects_runs_on_and_is_found_by_its_id(
    simulator: Simulator, service: Service, caller: Caller, make_service: ServiceFactory
) -> None:
    """The caller of jobs.cleanup closes its connection mid-run: the run goes on to its end
    and is recorded; its status is found by its id, from the record (through this process,
    and through another one on the same state directory)."""
    seed_population(simulator.store, 200)
    hold = HoldDeletes()
    simulator.hooks.append(hold)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "jobs.cleanup", "params": {}})
    _, writer = await asyncio.open_unix_connection(str(service.socket))
    writer.write(
        b"POST /rpc HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    await writer.drain()
    await hold.entered.wait()
    run_id = await open_run(caller)
    writer.close()
    await writer.wait_closed()
    hold.release.set()
    await service.engine.idle()
    assert codescaler_jobs(simulator) == 0
    other = Caller((await make_service()).socket)
    for asked in (caller, other):
        found = await status(asked, run_id)
        assert (found["source"], found["phase"], found["outcome"]) == ("record", "done", "ok")
        assert (found["background"], found["summary"]) == (False, None)
        assert (found["jobs_matched"], found["jobs_deleted"]) == (200, 200)
        assert (found["peer_uid"], found["peer_pid"]) == ME
        assert found["finished_at_ms"] >= found["started_at_ms"]


class HoldFirst:
    """A simulator hook that holds the first call of `method` until released."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, method: str, params: dict[str, Any]) -> None:
        if method == self.method and not self.entered.is_set():
            self.entered.set()
            await self.release.wait()


@pytest.mark.parametrize(
    ("params", "method", "phase"),
    [
        pytest.param({"keep_last": 1}, "job.list", "listing", id="keep-last-reading"),
        pytest.param({}, "job.delete", "deleting_jobs", id="jobs"),
        pytest.param({}, "action.delete", "deleting_actions", id="actions"),
        pytest.param({}, "action.list", "settling", id="orphan-sweep"),
    ],
)
async def test_the_status_names_the_step_under_way(
    simulator: Simulator,
    service: Service,
    caller: Caller,
    params: dict[str, Any],
    method: str,
    phase: str,
) -> None:
    """Held in each step, a run's status names it; no time left is estimated while a
    keep_last run first reads the listing, nor once the jobs are done."""
    seed_population(simulator.store, 30)
    hold = HoldFirst(method)
    simulator.hooks.append(hold)
    run_id = (await caller.call("jobs.cleanup_start", params))["run_id"]
    await hold.entered.wait()
    now = await status(caller, run_id)
    hold.release.set()
    await service.engine.idle()
    assert now["phase"] == phase
    if phase != "deleting_jobs":
        assert (now["jobs_left_at_most"], now["eta_ms"]) == (None, None)
    assert (await status(caller, run_id))["phase"] == "done"


async def test_a_background_run_takes_what_a_cleanup_takes(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """A dry run's plan, applied in the background, deletes that plan's jobs only (not one
    made since); a bounded background run says `has_more`; `ids: false` keeps its
    summary without id lists."""
    seed_population(simulator.store, 30)
    plan = await caller.call("jobs.cleanup", {"kind": "user", "dry_run": True})
    planned = set(plan["job_ids"])
    assert planned
    later = await caller.call(
        "jobs.submit", {"kind": "user", "actor": "alice", "script": "made since"}
    )
    started = await caller.call("jobs.cleanup_start", {"plan_id": plan["plan_id"]})
    await service.engine.idle()
    applied = (await status(caller, started["run_id"]))["summary"]
    assert set(applied["job_ids"]) == planned
    assert later["job_id"] in simulator.store.jobs
    started = await caller.call("jobs.cleanup_start", {"max_jobs": 2, "ids": False})
    await service.engine.idle()
    bounded = (await status(caller, started["run_id"]))["summary"]
    assert (bounded["jobs_deleted"], bounded["has_more"]) == (2, True)
    assert (bounded["job_ids"], bounded["ids_omitted"]) == ([], True)
