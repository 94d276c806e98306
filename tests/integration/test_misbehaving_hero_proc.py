"""The service in front of a hero_proc that breaks its contract, end to end over sockets.

Whatever hero_proc answers, a summary counts as deleted only what hero_proc said it
deleted (or what a later check found gone), every loop over its pages ends, and its
text reaches no answer or log line unbounded.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.engine import CleanupRequest
from hero_codescalers.heroproc import MAX_ID
from hero_codescalers.logs import merge_call
from hero_codescalers.settings import Settings
from hero_codescalers.simulator.store import Faults
from hero_codescalers.tags import Selector, action_name

from ..conftest import Caller, Service, ServiceFactory
from .fake_hero_proc import FakeHeroProc
from .population import (
    DAY,
    NOW,
    add_job,
    assert_accounted,
    deleted_before_list,
    interleaved,
    walk,
)

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@pytest.fixture
async def simulator(sock_dir: Path) -> AsyncIterator[FakeHeroProc]:
    """The misbehaving hero_proc, on the socket where the service expects hero_proc."""
    fake = FakeHeroProc()
    async with fake.serve(sock_dir / "hero_proc.sock"):
        yield fake
        fake.released.set()


@pytest.fixture
def fake(simulator: FakeHeroProc) -> FakeHeroProc:
    return simulator


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, but every `stats` walks hero_proc: each test changes what the
    fake answers between calls, and a reused result would hide it."""
    return settings.model_copy(update={"stats_reuse": 0})


def seed(fake: FakeHeroProc, n: int, **kwargs: Any) -> list[int]:
    return [add_job(fake.store, **kwargs) for _ in range(n)]


# Honest accounting -------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        pytest.param({"deleted": False}, id="deleted-false"),
        pytest.param({}, id="empty-object"),
        pytest.param(True, id="bare-true"),
        pytest.param(None, id="null"),
        pytest.param({"deleted": "yes"}, id="deleted-string"),
    ],
)
async def test_a_delete_result_of_the_wrong_shape_is_not_a_deletion(
    fake: FakeHeroProc, caller: Caller, result: Any
) -> None:
    """job.delete answers something other than {deleted: true} and does nothing: every job
    is reported still present, none as deleted."""
    ids = seed(fake, 30)
    fake.bad.results["job.delete"] = result
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 0
    assert summary["jobs_failed"] == 30
    assert set(fake.store.jobs) == set(ids)
    lines = [e for e in summary["errors"] if e.startswith("job ")]
    assert len(lines) == 30
    assert all("still present after hero_proc answered outside its contract" in e for e in lines)
    assert_accounted(summary)


@pytest.mark.parametrize(
    "error",
    [pytest.param("boom", id="string"), pytest.param(None, id="null"), pytest.param(7, id="int")],
)
async def test_a_batch_error_member_that_is_not_an_object_is_not_a_deletion(
    fake: FakeHeroProc, caller: Caller, error: Any
) -> None:
    """Batch items answered with an `error` that is not an error object (the deletion not
    carried out): no job counts as deleted, each is still present."""
    ids = seed(fake, 300)
    fake.bad.batch_error["job.delete"] = error
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 0
    assert summary["jobs_failed"] == 300
    assert set(fake.store.jobs) == set(ids)
    assert_accounted(summary)


async def test_answers_carried_out_but_outside_the_contract_are_settled_by_a_check(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """hero_proc deletes the jobs but answers a batch error that is not an object: a
    job.get finds each gone, so each counts as deleted, and the summary says how."""
    seed(fake, 300)
    fake.bad.batch_error["job.delete"] = "boom"
    fake.bad.carry_out.add("job.delete")
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 300
    assert summary["jobs_settled_gone"] == 300
    assert summary["jobs_failed"] == 0
    assert not fake.store.jobs
    assert fake.calls["job.get"] == 300
    assert_accounted(summary)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"shift_batch_ids": 1000}, id="ids-not-asked"),
        pytest.param({"drop_batch_items": True}, id="items-missing"),
    ],
)
async def test_batch_answers_not_matching_the_request_ids_are_not_deletions(
    fake: FakeHeroProc, caller: Caller, fault: dict[str, Any]
) -> None:
    """Answers for ids not asked, or none for an asked id: never a success. The jobs were
    deleted here, so the check settles them as gone; nothing is claimed without it."""
    seed(fake, 300)
    for key, value in fault.items():
        setattr(fake.bad, key, value)

    def answer_the_check_well(method: str, params: dict[str, Any]) -> None:
        if method == "job.get":
            fake.bad.shift_batch_ids, fake.bad.drop_batch_items = 0, False

    fake.hooks.append(answer_the_check_well)
    summary = await caller.call("jobs.cleanup", {})
    assert not fake.store.jobs
    answered = 300 - summary["jobs_settled_gone"]
    assert summary["jobs_deleted"] == 300
    if fault.get("shift_batch_ids"):
        assert answered == 0  # not one answer matched its request
    else:
        assert 0 < summary["jobs_settled_gone"] < 300
    assert fake.calls["job.get"] == summary["jobs_settled_gone"]
    assert_accounted(summary)


async def test_retries_exhausted_after_hero_proc_carried_the_deletion_out(
    fake: FakeHeroProc, make_service: ServiceFactory
) -> None:
    """Every job.delete is carried out but its connection drops (one try allowed): the
    check finds every job gone, none is reported failed."""
    seed(fake, 40)
    svc = await make_service(hero_proc_attempts=1)
    fake.store.faults.drop_rate = {"job.delete": 1.0}
    summary = await Caller(svc.socket).call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 40
    assert summary["jobs_settled_gone"] == 40
    assert summary["errors"] == []
    assert summary["complete"] is True
    assert_accounted(summary)


async def test_a_deletion_that_failed_transiently_and_is_still_there_is_still_present(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """hero_proc answers -32603 to every job.delete, each try: a check finds the jobs, and
    each is a failure "still present", not "outcome unknown"."""
    ids = seed(fake, 5)
    fake.store.faults.fail_rate = {"job.delete": 1.0}
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_failed"] == 5
    assert summary["jobs_settled_gone"] == 0
    assert sorted(e for e in summary["errors"] if e.startswith("job ")) == sorted(
        f"job {i}: still present after hero_proc error -32603: Internal error" for i in ids
    )
    assert_accounted(summary)


async def test_deletions_that_cannot_be_checked_stay_of_unknown_outcome(
    fake: FakeHeroProc, make_service: ServiceFactory
) -> None:
    """Every delete and every check answers hero_proc's -32603: neither found gone nor
    found present, each job and action stays "outcome unknown", and the run still ends
    with its summary."""
    ids = seed(fake, 3, kind="user")
    svc = await make_service(hero_proc_attempts=1)
    for method in ("job.delete", "job.get", "action.delete", "action.get"):
        fake.bad.errors[method] = (-32603, "boom")
    summary = await Caller(svc.socket).call("jobs.cleanup", {})
    assert summary["jobs_failed"] == 3
    assert summary["actions_failed"] == 1
    assert summary["jobs_settled_gone"] == summary["actions_settled_gone"] == 0
    assert sorted(e for e in summary["errors"] if e.startswith("job ")) == sorted(
        f"job {i}: outcome unknown: hero_proc error -32603: boom" for i in ids
    )
    assert [e for e in summary["errors"] if e.startswith("action ")] == [
        f"action {summary['action_ids'][0]}: outcome unknown: hero_proc error -32603: boom"
    ]
    assert_accounted(summary)


async def test_an_action_deletion_refused_outright_is_one_failure_named(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """action.delete answers a definite error (not "in use", not hero_proc's internal
    error): the action is a failure at once, named with hero_proc's answer (not an outcome
    to check); its jobs are deleted all the same."""
    seed(fake, 2, kind="user")
    seed(fake, 1, kind="service")
    fake.bad.errors["action.delete"] = (-32050, "permission denied")
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 3
    assert (summary["actions_failed"], summary["actions_deleted"]) == (2, 0)
    assert summary["actions_settled_gone"] == summary["actions_in_use"] == 0
    assert sorted(summary["errors"]) == [
        f"action {name}: hero_proc error -32050: permission denied"
        for name in ("codescaler_service_service0", "codescaler_user_user0")
    ]
    assert {name for name, _ in fake.store.actions} == {
        "codescaler_service_service0",
        "codescaler_user_user0",
    }
    assert_accounted(summary)


async def test_action_deletions_without_a_clear_answer_are_settled(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """action.delete carried out but answered outside the contract: action.get finds the
    action gone, so it counts as deleted; not carried out: still present."""
    seed(fake, 3, kind="user")
    seed(fake, 3, kind="service")
    fake.bad.results["action.delete"] = {"deleted": "maybe"}
    fake.bad.carry_out.add("action.delete")
    summary = await caller.call("jobs.cleanup", {})
    assert summary["actions_deleted"] == 2
    assert summary["actions_settled_gone"] == 2
    assert not fake.store.actions
    fake.bad.carry_out.clear()
    seed(fake, 2, kind="user")
    summary = await caller.call("jobs.cleanup", {})
    assert summary["actions_deleted"] == 0
    assert summary["actions_failed"] == 1
    assert summary["errors"] == [
        "action codescaler_user_user0: still present after hero_proc answered outside "
        "its contract (a result of the wrong shape)"
    ]


# Malformed listings -----------------------------------------------------------------

MALFORMED = [
    {"id": 2**63, "action_id": "codescaler_user_x", "tags": ["codescaler"]},
    {"id": "9", "action_id": "codescaler_user_x", "tags": ["codescaler"]},
    {"id": True, "action_id": "codescaler_user_x", "tags": ["codescaler"]},
    ["not", "a", "job"],
    "codescaler",
]


async def test_malformed_jobs_are_skipped_counted_and_logged_and_the_run_goes_on(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """Malformed jobs on page 2 (bad ids, tags not all strings, no string action): every
    valid match is still deleted, the malformed are counted, the run is not complete."""
    alice = seed(fake, 15, actor="alice")
    [bob] = seed(fake, 1, actor="bob")
    alice += seed(fake, 15, actor="alice")
    [last] = seed(fake, 1, actor="bob")
    service.engine.page_size = 10
    fake.bad.phantoms[bob] = list(MALFORMED)  # listed on the second page
    fake.bad.phantoms[last] = [
        {"id": last + 1, "action_id": "codescaler_user_x", "tags": ["codescaler", 5]},
        {"id": last + 2, "action_id": None, "tags": ["codescaler"]},
        {"id": last + 3, "action_id": "x", "tags": "codescaler"},
        {"id": last + 4, "action_id": "x", "tags": None},  # null tags: a job, not ours
    ]
    with capture_logs(processors=[merge_call]) as logs:
        summary = await caller.call("jobs.cleanup", {"actor": "alice"})
    assert summary["jobs_deleted"] == 30
    assert set(fake.store.jobs) == {bob, last}
    assert sorted(summary["job_ids"]) == alice
    assert summary["jobs_skipped_malformed"] == 8
    assert summary["complete"] is False
    assert any("8 listed jobs skipped: malformed" in e for e in summary["errors"])
    assert_accounted(summary)
    lines = [e for e in logs if e["event"] == "cleanup_jobs_malformed"]
    assert lines
    assert all(len(line["sample"]) <= 200 for line in lines)
    assert [e for e in logs if e["event"] == "cleanup_finished"]


async def test_job_ids_run_from_1_to_2_63_minus_1(fake: FakeHeroProc, caller: Caller) -> None:
    """Ids 0 and -1 (listed first) and 2**63 are malformed; 2**63 - 1 is a job's id."""
    ids = seed(fake, 3)
    entry = {"action_id": "codescaler_user_user0", "tags": ["codescaler"]}
    fake.bad.phantoms[0] = [{"id": 0, **entry}, {"id": -1, **entry}]
    fake.bad.phantoms[ids[-1]] = [{"id": MAX_ID, **entry}, {"id": MAX_ID + 1, **entry}]
    summary = await caller.call("jobs.cleanup", {})
    assert summary["job_ids"] == [*ids, MAX_ID]
    assert summary["jobs_deleted"] == 3
    assert summary["jobs_already_gone"] == 1  # hero_proc has no such job to delete
    assert summary["jobs_skipped_malformed"] == 3
    assert_accounted(summary)


async def test_malformed_jobs_inside_the_scope_are_skipped_not_deleted(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """A cleanup of every codescaler job: listed jobs with the `codescaler` tag but an
    action that is not a string, or tags that are not a list of strings, are skipped
    and counted; a job with null tags is not in the scope, and not malformed."""
    ids = seed(fake, 2)
    fake.bad.phantoms[ids[0]] = [
        {"id": ids[0] + 100, "action_id": None, "tags": ["codescaler"]},
        {"id": ids[0] + 101, "action_id": 7, "tags": ["codescaler"]},
        {"id": ids[0] + 102, "action_id": "codescaler_user_x", "tags": ["codescaler", 5]},
        {"id": ids[0] + 103, "action_id": "codescaler_user_x", "tags": "codescaler"},
        {"id": ids[0] + 104, "action_id": "codescaler_user_x", "tags": None},
    ]
    summary = await caller.call("jobs.cleanup", {})
    assert summary["job_ids"] == ids
    assert summary["jobs_skipped_malformed"] == 4
    assert summary["action_ids"] == ["codescaler_user_user0"]
    assert not fake.store.jobs
    assert_accounted(summary)


async def test_a_context_that_is_not_a_string_is_read_as_null(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """A listed job whose context is 5 (a malformed optional field): its action is the one
    of that name with a null context, and that is the one deleted."""
    [job] = seed(fake, 1)
    name = "codescaler_user_elsewhere"
    fake.store.action_set({"name": name, "spec": {"script": "x", "tags": ["codescaler"]}})
    fake.bad.phantoms[job] = [
        {"id": job + 1, "action_id": name, "context": 5, "tags": ["codescaler"]}
    ]
    summary = await caller.call("jobs.cleanup", {})
    assert summary["job_ids"] == [job, job + 1]
    assert summary["action_ids"] == ["codescaler_user_user0", name]
    assert summary["actions_deleted"] == 2
    assert summary["errors"] == []
    assert not fake.store.actions
    assert_accounted(summary)


async def test_each_page_with_malformed_jobs_logs_a_line_with_one_of_them(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """A dry run in pages of three: page 1 lists an entry without a valid id, page 2 a
    job with a bad tag; one warning line each shows it, with the count so far."""
    ids = seed(fake, 4)
    fake.bad.phantoms[0] = [{"id": "9", "tags": ["codescaler"]}]
    bad_tags = {"id": ids[-1] + 1, "action_id": "codescaler_user_x", "tags": ["codescaler", 5]}
    fake.bad.phantoms[ids[-1]] = [bad_tags]
    service.engine.page_size = 3
    with capture_logs(processors=[merge_call]) as logs:
        summary = await caller.call("jobs.cleanup", {"dry_run": True})
    assert summary["job_ids"] == ids
    assert summary["jobs_skipped_malformed"] == 2
    lines = [(e["skipped"], e["sample"]) for e in logs if e["event"] == "cleanup_jobs_malformed"]
    assert lines == [
        (1, '{"id":"9","tags":["codescaler"]}'),
        (2, f'{{"id":{ids[-1] + 1},"action_id":"codescaler_user_x","tags":["codescaler",5]}}'),
    ]


JOBS = 2_000


async def test_a_page_of_jobs_ending_in_malformed_entries(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """Entries without a valid id at the end of a page of jobs: the page still has valid
    ids, its jobs match, the entries are counted as malformed."""
    ids = seed(fake, JOBS)
    fake.bad.phantoms[ids[-1]] = [{"id": "x"}] * 3
    summary = await caller.call("jobs.cleanup", {"dry_run": True})
    assert summary["jobs_matched"] == JOBS
    assert summary["jobs_skipped_malformed"] == 3
    assert summary["errors"] == [
        "3 listed jobs skipped: malformed "
        "(no integer id, tags that are not strings, or no string action)"
    ]


async def test_jobs_list_and_stats_skip_malformed_jobs(fake: FakeHeroProc, caller: Caller) -> None:
    """A listing with malformed jobs: jobs.list and stats answer, counting what they skipped."""
    ids = seed(fake, 5)
    fake.bad.phantoms[ids[2]] = list(MALFORMED)
    page = await caller.call("jobs.list", {})
    assert [j["id"] for j in page["jobs"]] == ids
    assert page["jobs_skipped_malformed"] == 5
    stats = await caller.call("stats")
    assert stats["codescaler"]["jobs"] == 5
    assert stats["codescaler"]["jobs_skipped_malformed"] == 5


def action(name: str, *tags: Any) -> dict[str, Any]:
    return {"name": name, "context": None, "spec": {"script": "x", "tags": list(tags)}}


async def test_stats_skips_malformed_actions_and_stops_on_a_listing_that_does_not_advance(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """Actions without a string name or string tags are skipped and counted; an action
    listing that answers only actions already seen is -32021, not a loop."""
    good = [action("codescaler_user_a", "codescaler", "codescaler_kind_user")]
    fake.bad.action_pages = [
        [*good, {"name": 5}, action("b", "codescaler", 7), {"name": "c", "spec": "x"}, "x"],
        [action("codescaler_svc_b", "codescaler", "codescaler_kind_service")],
    ]
    stats = await caller.call("stats")
    assert stats["codescaler"]["actions_by_kind"] == {"service": 1, "user": 1}
    assert stats["codescaler"]["actions_skipped_malformed"] == 4
    fake.bad.action_pages = [good, good]
    err = await caller.error("stats")
    assert err["code"] == -32021
    assert "action.list does not advance" in err["data"]["reason"]


async def test_a_first_page_without_a_valid_id_is_an_error(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """Job ids of the wrong type everywhere: -32021, never `complete: true` with 0 matched."""
    seed(fake, 3)
    fake.bad.results["job.list"] = [
        {"id": str(i), "action_id": "codescaler_user_x", "tags": ["codescaler"]} for i in range(3)
    ]
    fake.bad.carry_out.add("job.list")
    err = await caller.error("jobs.cleanup", {})
    assert err["code"] == -32021
    assert "without a valid job id" in err["data"]["reason"]
    assert (await caller.error("jobs.list", {}))["code"] == -32021
    assert len(fake.store.jobs) == 3


async def test_a_page_without_a_valid_id_after_deletions_ends_the_run_partial(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """Page 1 is fine and deleted; page 2 has no valid id: a partial summary says why."""
    seed(fake, 10)
    service.engine.page_size = 10

    def garbage_after_first_page(method: str, params: dict[str, Any]) -> None:
        if method == "job.delete":
            fake.bad.results["job.list"] = [{"id": "x"}] * 10
            fake.bad.carry_out.add("job.list")

    fake.hooks.append(garbage_after_first_page)
    summary = await caller.call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 10
    assert summary["complete"] is False
    assert any(
        e.startswith("listing stopped: hero_proc answered outside its contract")
        and "without a valid job id" in e
        for e in summary["errors"]
    )


async def test_a_match_that_stays_is_the_next_page_anchor(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """The last match of page 1 cannot be deleted: it stays listed, after the page's kept
    job, and the next page starts on it; one pass, no shift."""
    old, young = interleaved(fake.store, 12)
    refused = old[2]  # page 1: old, old, young, old (refused)
    fake.bad.refuse_ids.add(refused)
    summary, passes = await walk(caller, service)
    assert passes == 1
    assert summary["jobs_failed"] == 1
    assert f"job {refused}: hero_proc error -32003: Job is active" in summary["errors"]
    assert set(fake.store.jobs) == {*young, refused}
    assert summary["complete"] is True
    assert_accounted(summary)


async def test_a_job_that_could_not_be_deleted_is_not_matched_again_by_a_later_pass(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """hero_proc refuses the first match; someone deletes two kept jobs during the walk,
    so a second pass follows: it lists the refused job again, but neither matches nor
    tries it again, and the summary has it once."""
    old, young = interleaved(fake.store, 12)
    refused = old[0]
    fake.bad.refuse_ids.add(refused)
    fake.hooks.append(deleted_before_list(fake.store, young[:2], 3))
    summary, passes = await walk(caller, service)
    assert passes == 2
    assert sorted(summary["job_ids"]) == old
    assert summary["jobs_failed"] == 1
    assert summary["errors"] == [f"job {refused}: hero_proc error -32003: Job is active"]
    # the refused and young jobs' action: kept, not an error
    assert summary["actions_in_use_ids"] == ["codescaler_user_user0"]
    assert fake.calls["job.delete"] == len(old)
    assert set(fake.store.jobs) == {refused, *young[2:]}
    assert_accounted(summary)


# Pages that are short, long, or do not advance ---------------------------------------


async def test_short_pages_do_not_end_the_cleanup(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """hero_proc answers at most 3 jobs a page whatever the limit: every job is still found."""
    seed(fake, 25, actor="alice")
    bob = seed(fake, 5, actor="bob")
    service.engine.page_size = 10
    fake.bad.page_cap = 3
    summary = await caller.call("jobs.cleanup", {"actor": "alice"})
    assert summary["jobs_deleted"] == 25
    assert summary["complete"] is True
    assert set(fake.store.jobs) == set(bob)
    page = await caller.call("jobs.list", {})
    assert [j["id"] for j in page["jobs"]] == bob
    assert (await caller.call("stats"))["codescaler"]["jobs"] == 5


async def test_pages_longer_than_the_limit_are_read_whole(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """hero_proc answers more jobs than asked: nothing is missed, nothing counted twice."""
    alice = seed(fake, 20, actor="alice")
    seed(fake, 20, actor="bob")
    service.engine.page_size = 4
    fake.bad.over_limit = 5
    assert (await caller.call("stats"))["codescaler"]["jobs"] == 40
    page = await caller.call("jobs.list", {"actor": "alice", "limit": 7})
    assert [j["id"] for j in page["jobs"]] == alice[:7]
    summary = await caller.call("jobs.cleanup", {"actor": "alice"})
    assert sorted(summary["job_ids"]) == alice
    assert summary["complete"] is True


async def test_an_ignored_offset_ends_every_listing(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """hero_proc lists from the start whatever the offset: stats and jobs.list answer
    -32021 instead of looping, and a cleanup stops, not complete, saying why."""
    seed(fake, 6, created_at_ms=NOW)
    old = seed(fake, 6, created_at_ms=NOW - 2 * DAY)
    service.engine.clock = lambda: NOW
    service.engine.page_size = 4
    fake.bad.ignore_offset = True
    fake.bad.page_cap = 4
    err = await caller.error("stats")
    assert err["code"] == -32021
    assert "does not advance" in err["data"]["reason"]
    assert (await caller.error("jobs.list", {"older_than_ms": DAY}))["code"] == -32021
    err = await caller.error("jobs.cleanup", {"older_than_ms": DAY})  # nothing matched yet
    assert err["code"] == -32021
    assert "does not advance" in err["data"]["reason"]
    assert set(old) <= set(fake.store.jobs)
    assert fake.calls["job.list"] < 20


async def test_an_ignored_offset_after_deletions_gives_a_partial_summary(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """The matches come first and are deleted; then hero_proc keeps listing the kept jobs
    from the start: the cleanup stops, not complete, saying why."""
    old = seed(fake, 6, created_at_ms=NOW - 2 * DAY)
    young = seed(fake, 6, created_at_ms=NOW)
    service.engine.clock = lambda: NOW
    service.engine.page_size = 4
    fake.bad.ignore_offset = True
    fake.bad.page_cap = 4
    summary = await caller.call("jobs.cleanup", {"older_than_ms": DAY})
    assert sorted(summary["job_ids"]) == old
    assert summary["jobs_deleted"] == 6
    assert summary["complete"] is False
    assert any("does not advance" in e for e in summary["errors"])
    assert set(fake.store.jobs) == set(young)


# Deadline, shutdown and hangs --------------------------------------------------------


async def test_the_deadline_stops_a_page_of_hung_deletions(
    fake: FakeHeroProc, make_service: ServiceFactory
) -> None:
    """job.delete never answers: the run ends about one call timeout after the deadline,
    in the middle of its only page; what was never sent is counted as not attempted."""
    ids = seed(fake, 1_000)
    # A timeout long enough for the check of 1,000 outcomes on a loaded machine (or under
    # mutation testing's instrumentation), short against the run without a deadline.
    svc = await make_service(hero_proc_timeout=1.0, cleanup_deadline=0.2)
    fake.bad.hang.add("job.delete")
    t0 = time.monotonic()
    summary = await Caller(svc.socket).call("jobs.cleanup", {})
    elapsed = time.monotonic() - t0
    assert elapsed < 4.0  # deadline 0.2 s + one timeout for deletions + one for the check
    assert summary["complete"] is False
    assert summary["jobs_deleted"] == 0
    assert 0 < summary["jobs_not_attempted"] < 1_000
    sent = summary["jobs_failed"]
    assert sent + summary["jobs_not_attempted"] == 1_000
    reason = "matched jobs not attempted: the deadline of 0.2s was reached"
    assert f"{summary['jobs_not_attempted']} {reason}" in summary["errors"]
    assert all(
        "still present after hero_proc unavailable (no answer within 1s)" in e
        for e in summary["errors"]
        if e.startswith("job ")
    )
    assert summary["actions_not_attempted"] == 1
    assert set(fake.store.jobs) == set(ids)
    assert_accounted(summary)


async def test_a_shutdown_stops_a_page_of_hung_deletions(
    fake: FakeHeroProc, make_service: ServiceFactory
) -> None:
    """The service stops while job.delete hangs: the run ends within one call timeout."""
    seed(fake, 1_000)
    svc = await make_service(hero_proc_timeout=0.3)
    fake.bad.hang.add("job.delete")

    def stop_at_the_first_delete(method: str, params: dict[str, Any]) -> None:
        if method == "job.delete":
            svc.engine.stop()

    fake.hooks.append(stop_at_the_first_delete)
    summary = await Caller(svc.socket).call("jobs.cleanup", {})
    assert summary["complete"] is False
    assert summary["jobs_not_attempted"] > 0
    assert any("not attempted: the service is shutting down" in e for e in summary["errors"])
    assert_accounted(summary)


async def test_a_stop_among_the_action_deletions_counts_those_never_sent(
    fake: FakeHeroProc, make_service: ServiceFactory
) -> None:
    """The service stops while the first action deletions are on their way. hero_proc
    takes no batches, so the 100 actions go one by one, a few at a time: those never sent
    are counted as not attempted, under one line saying how many and why, and the run is
    not complete although every job went."""
    for i in range(100):
        add_job(fake.store, action=action_name("user", f"u{i}"))
    fake.store.faults = Faults(batch=False)
    svc = await make_service()

    def stop_at_the_first_action_delete(method: str, params: dict[str, Any]) -> None:
        if method == "action.delete":
            svc.engine.stop()

    fake.hooks.append(stop_at_the_first_action_delete)
    summary = await Caller(svc.socket).call("jobs.cleanup", {})
    assert summary["jobs_deleted"] == 100
    not_attempted = summary["actions_not_attempted"]
    assert 1 < not_attempted < 100
    assert summary["actions_deleted"] == 100 - not_attempted
    assert len(fake.store.actions) == not_attempted
    assert summary["complete"] is False
    line = f"{not_attempted} actions not attempted: the service is shutting down"
    assert line in summary["errors"]
    assert_accounted(summary)


async def test_health_answers_within_its_bound_when_hero_proc_hangs(
    fake: FakeHeroProc, caller: Caller
) -> None:
    """hero_proc never answers `stats`: system.health says degraded within about a second,
    after one try."""
    fake.bad.hang.add("stats")
    t0 = time.monotonic()
    health = await caller.call("system.health")
    assert time.monotonic() - t0 < 1.9
    assert health["status"] == "degraded"
    assert fake.calls["stats"] == 1


async def test_health_does_not_retry(fake: FakeHeroProc, caller: Caller) -> None:
    """hero_proc's -32603 (a transient error elsewhere) is not tried again by a health check."""
    fake.store.faults.fail_rate = {"stats": 1.0}
    health = await caller.call("system.health")
    assert health["status"] == "degraded"
    assert fake.calls["stats"] == 1


# Text from hero_proc -----------------------------------------------------------------

HUGE = "boom\n\x1b[31m" + "x" * 5_000_000


async def test_huge_error_texts_are_cut_and_cleaned(fake: FakeHeroProc, caller: Caller) -> None:
    """A 5 MB error message with control characters: answers and log lines carry at most
    200 characters of it, none of them control characters."""
    ids = seed(fake, 3)
    fake.bad.errors["stats"] = (-32099, HUGE)
    fake.bad.errors["job.delete"] = (-32099, HUGE)
    with capture_logs(processors=[merge_call]) as logs:
        err = await caller.error("stats")
        summary = await caller.call("jobs.cleanup", {})
    assert err["code"] == -32021
    message = err["data"]["message"]
    assert len(message) <= 200
    assert message.startswith("boom ")
    assert not CONTROL.search(message)
    assert summary["jobs_failed"] == 3
    for line in summary["errors"]:
        assert len(line) < 300
        assert not CONTROL.search(line)
    assert set(fake.store.jobs) == set(ids)
    for entry in logs:
        for value in entry.values():
            assert len(str(value)) < 1_000


# An internal fault --------------------------------------------------------------------


async def test_an_internal_fault_mid_run_still_ends_the_run_properly(
    fake: FakeHeroProc, service: Service, caller: Caller
) -> None:
    """A bug on page 2: the caller gets -32603 with the request id and the counts so far;
    the run has its end log line and its history entry; the lock is free."""
    seed(fake, 20)
    service.engine.page_size = 10
    client = service.engine.client
    real = client.call_many
    pages = 0

    async def broken_on_the_second_page(calls: Any, **kwargs: Any) -> Any:
        nonlocal pages
        pages += 1
        if pages == 2:
            raise RuntimeError("boom")
        return await real(calls, **kwargs)

    client.call_many = broken_on_the_second_page
    with capture_logs(processors=[merge_call]) as logs:
        err = await caller.error("jobs.cleanup", {})
    client.call_many = real
    assert err["code"] == -32603
    assert err["message"] == "Internal error"
    assert isinstance(err["data"]["request_id"], str)
    assert err["data"]["counts"]["jobs_deleted"] == 10
    assert err["data"]["counts"]["jobs_matched"] == 20
    assert "boom" not in str(err)
    [end] = [e for e in logs if e["event"] == "cleanup_failed"]
    assert end["jobs_deleted"] == 10
    assert end["log_level"] == "error"
    [run] = (await caller.call("jobs.cleanup_history", {}))["runs"]
    assert run["outcome"] == "error"
    assert run["jobs_deleted"] == 10
    assert (await caller.call("jobs.cleanup", {}))["jobs_deleted"] == 10  # the lock is free


# The caller goes away -----------------------------------------------------------------


async def test_a_cleanup_goes_on_when_its_caller_goes_away(
    fake: FakeHeroProc, service: Service
) -> None:
    """The call is cancelled mid-run (a disconnected caller): the run still deletes
    everything and is recorded; the lock is released after it."""
    seed(fake, 20)
    engine = service.engine
    engine.page_size = 5
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold_second_page(method: str, params: dict[str, Any]) -> None:
        if method == "job.list" and fake.calls["job.list"] == 2:
            entered.set()
            await release.wait()

    fake.hooks.append(hold_second_page)
    call = asyncio.create_task(
        engine.cleanup(CleanupRequest(Selector.build(), dry_run=False, params={}))
    )
    await entered.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert engine.cleanup_running
    release.set()
    await engine.idle()
    assert not fake.store.jobs
    [run] = (await engine.record.history(limit=10)).runs
    assert run.outcome == "ok"
    assert run.jobs_deleted == 20


@pytest.mark.parametrize("method", ["stats", "jobs.list"])
async def test_listings_stop_when_their_caller_goes_away(
    fake: FakeHeroProc, service: Service, method: str
) -> None:
    """stats and jobs.list cancelled mid-walk (their caller left) call hero_proc no more."""
    seed(fake, 30)
    engine = service.engine
    entered, release = asyncio.Event(), asyncio.Event()
    fake.bad.page_cap = 2

    async def hold_second_page(name: str, params: dict[str, Any]) -> None:
        if name == "job.list" and fake.calls["job.list"] == 2:
            entered.set()
            await release.wait()

    fake.hooks.append(hold_second_page)
    if method == "stats":
        task = asyncio.create_task(engine.stats())
    else:
        task = asyncio.create_task(engine.list_jobs(Selector.build(), limit=100, cursor=None))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    for _ in range(10):  # event loop turns in which a walk still going would list again
        await asyncio.sleep(0)
    assert fake.calls["job.list"] == 2
