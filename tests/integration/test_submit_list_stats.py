"""jobs.submit tags and deduplicates, jobs.list pages the codescaler scope, stats counts it."""

from __future__ import annotations

from typing import Any

from hero_codescalers.simulator import Simulator, seed_population

from ..conftest import Caller
from .population import add_job


async def test_submit_tags_the_job_and_its_action(simulator: Simulator, caller: Caller) -> None:
    """The action carries the shared tags, the job adds actor and target."""
    made = await caller.call(
        "jobs.submit",
        {"kind": "user", "actor": "alice", "target": "web", "script": "echo hi", "input": {"n": 1}},
    )
    assert made["deduplicated"] is False
    assert made["action_id"].startswith("codescaler_user_")
    assert made["tags"] == [
        "codescaler",
        "codescaler_kind_user",
        "codescaler_alice",
        "codescaler_target_web",
    ]
    job = simulator.store.jobs[made["job_id"]]
    assert job["tags"] == made["tags"]
    action = simulator.store.actions[(made["action_id"], None)]
    assert action["spec"] == {"script": "echo hi", "tags": ["codescaler", "codescaler_kind_user"]}


async def test_the_same_input_reuses_the_action(simulator: Simulator, caller: Caller) -> None:
    """Same kind, script and input: one action, many jobs; another input: another action."""
    params = {"kind": "user", "actor": "alice", "script": "s", "input": {"b": 2, "a": 1}}
    first = await caller.call("jobs.submit", params)
    again = await caller.call("jobs.submit", {**params, "actor": "bob", "input": {"a": 1, "b": 2}})
    other = await caller.call("jobs.submit", {**params, "input": {"a": 2}})
    assert again["deduplicated"] is True
    assert again["action_id"] == first["action_id"]
    assert again["job_id"] != first["job_id"]
    assert other["action_id"] != first["action_id"]
    assert len(simulator.store.actions) == 2


async def test_submit_refuses_bad_names(caller: Caller) -> None:
    """Names are checked at submission too, so no job ever carries a widening tag."""
    err = await caller.error("jobs.submit", {"kind": "user", "actor": "kind_user", "script": "s"})
    assert err["code"] == -32602
    assert err["data"].startswith("actor:")
    err = await caller.error("jobs.submit", {"kind": "user", "actor": "a"})
    assert err["data"] == "script: required"


async def test_list_pages_through_codescaler_jobs_only(
    simulator: Simulator, caller: Caller
) -> None:
    """Look-alikes never appear; pages follow next_cursor to the end, oldest first, no repeats."""
    seed_population(simulator.store, 250, 40, 60)
    want = [i for i, j in simulator.store.jobs.items() if "codescaler" in j["tags"]]
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = await caller.call("jobs.list", params)
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == want


async def test_list_filters_like_cleanup(simulator: Simulator, caller: Caller) -> None:
    """The same exact filters as a cleanup, plus status; kind/actor/target read back."""
    a = add_job(simulator.store, actor="alice", kind="user", target="web", status="running")
    add_job(simulator.store, actor="alice", kind="user", status="failed")
    add_job(simulator.store, actor="alice2", kind="user", target="web", status="running")
    page = await caller.call("jobs.list", {"actor": "alice", "target": "web", "status": "running"})
    assert [j["id"] for j in page["jobs"]] == [a]
    assert page["jobs"][0]["kind"] == "user"
    assert page["jobs"][0]["actor"] == "alice"
    assert page["jobs"][0]["target"] == "web"
    assert page["next_cursor"] is None


async def test_repeated_submissions_and_cleanups_do_not_grow_hero_proc(
    simulator: Simulator, caller: Caller
) -> None:
    """Submit, clean up, repeat: codescaler counts return to zero; unrelated jobs stay."""
    seed_population(simulator.store, 0, 20, 20)
    unrelated = await caller.call("stats")
    for round_ in range(3):
        for i in range(30):
            await caller.call(
                "jobs.submit",
                {
                    "kind": ("user", "service")[i % 2],
                    "actor": "alice",
                    "script": "s",
                    "input": i % 7,
                },
            )
        grown = await caller.call("stats")
        assert grown["codescaler"]["jobs"] == 30
        assert grown["codescaler"]["jobs_by_kind"] == {"service": 15, "user": 15}
        assert sum(grown["codescaler"]["jobs_by_status"].values()) == 30
        # One action per (kind, input): the 14 pairs of i % 2 and i % 7.
        assert grown["codescaler"]["actions"] == 14
        assert grown["codescaler"]["actions_by_kind"] == {"service": 7, "user": 7}
        assert grown["hero_proc"]["job_count"] == unrelated["hero_proc"]["job_count"] + 30
        summary = await caller.call("jobs.cleanup", {})
        assert summary["jobs_deleted"] == 30, round_
        after = await caller.call("stats")
        assert after["codescaler"]["jobs"] == after["codescaler"]["actions"] == 0
        assert after["hero_proc"] == unrelated["hero_proc"]


async def test_submit_recreates_an_action_removed_between_its_two_calls(
    simulator: Simulator, caller: Caller
) -> None:
    """A cleanup removes the action after the submission found it and before its job.create:
    the submission makes the action again and its job is created."""
    params = {"kind": "user", "actor": "alice", "script": "s", "input": 1}
    first = await caller.call("jobs.submit", params)
    simulator.store.job_delete({"id": first["job_id"], "force": True})
    creates = 0

    def remove_the_action_before_the_first_create(method: str, params: dict[str, Any]) -> None:
        nonlocal creates
        if method == "job.create":
            creates += 1
            if creates == 1:
                simulator.store.action_delete({"name": first["action_id"]})

    simulator.hooks.append(remove_the_action_before_the_first_create)
    again = await caller.call("jobs.submit", params)
    assert again["action_id"] == first["action_id"]
    assert again["deduplicated"] is False  # the action had to be made again
    assert simulator.store.jobs[again["job_id"]]["action_id"] == first["action_id"]
    assert (first["action_id"], None) in simulator.store.actions
    assert simulator.calls["action.set"] == 2
    assert creates == 2


async def pages(caller: Caller, limit: int, between: Any = None) -> list[list[int]]:
    """Every page of jobs.list, `between(page_number)` called after each page."""
    out: list[list[int]] = []
    cursor = None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        page = await caller.call("jobs.list", params)
        out.append([j["id"] for j in page["jobs"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return out
        if between is not None:
            between(len(out))


async def test_list_pages_neither_skip_nor_repeat_when_jobs_are_deleted_between_them(
    simulator: Simulator, caller: Caller
) -> None:
    """Jobs before the cursor, the cursor's own job and jobs after it deleted between pages,
    new jobs created: every job present throughout is listed once, in order."""
    ids = [add_job(simulator.store) for _ in range(40)]
    gone: set[int] = set()
    created: list[int] = []

    def meddle(page: int) -> None:
        if page == 1:  # after jobs 1-10 were listed
            doomed = [ids[2], ids[3], ids[4], ids[9], ids[14]]
        elif page == 2:
            doomed = ids[:2] + ids[5:9]
        else:
            return
        for job_id in doomed:
            simulator.store.job_delete({"id": job_id})
        gone.update(doomed)
        created.append(add_job(simulator.store))

    listed = [i for page in await pages(caller, 10, meddle) for i in page]
    assert len(listed) == len(set(listed)), "a job was listed twice"
    assert listed == sorted(listed)
    stayed = [i for i in ids if i not in gone]
    assert set(stayed) <= set(listed), "a job was skipped"
    assert set(created) <= set(listed)


async def test_list_steps_back_when_many_jobs_before_the_cursor_go(
    simulator: Simulator, caller: Caller
) -> None:
    """More jobs deleted before the cursor than a hero_proc page holds: the next page is
    found by stepping back, and still starts right after the cursor's job."""
    ids = [add_job(simulator.store) for _ in range(2_030)]
    first = await caller.call("jobs.list", {"limit": 1_000})
    second = await caller.call("jobs.list", {"limit": 1_000, "cursor": first["next_cursor"]})
    for job_id in ids[:1_500]:
        simulator.store.job_delete({"id": job_id})
    third = await caller.call("jobs.list", {"limit": 1_000, "cursor": second["next_cursor"]})
    assert [j["id"] for j in third["jobs"]] == ids[2_000:]
    assert third["next_cursor"] is None


async def test_stats_counts_every_page_of_a_large_listing(
    simulator: Simulator, caller: Caller
) -> None:
    """More jobs than one hero_proc page of a stats walk: every codescaler job and action is
    counted once, look-alikes never."""
    seed_population(simulator.store, 2_600, 150, 150)
    jobs = [j for j in simulator.store.jobs.values() if "codescaler" in j["tags"]]
    actions = {j["action_id"] for j in jobs}
    stats = await caller.call("stats")
    assert stats["codescaler"]["jobs"] == len(jobs) == 2_600
    assert stats["codescaler"]["actions"] == len(actions)
    assert sum(stats["codescaler"]["jobs_by_kind"].values()) == 2_600
