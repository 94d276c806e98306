"""The simulator speaks hero_proc_contract.md over a real Unix socket."""

from __future__ import annotations

import json

from hero_codescalers.simulator import Simulator, seed_population
from hero_codescalers.simulator.store import now_ms

from ..conftest import Caller


async def make_action(hp: Caller, name: str, tags: list[str]) -> None:
    await hp.call("action.set", {"name": name, "spec": {"script": "true", "tags": tags}})


async def test_job_create_copies_action_tags_and_adds_its_own(hero_proc: Caller) -> None:
    """A job carries its action's spec.tags plus the tags of the call."""
    await make_action(hero_proc, "a1", ["codescaler", "codescaler_kind_user"])
    job = await hero_proc.call("job.create", {"action": "a1", "tags": ["codescaler_alice"]})
    got = await hero_proc.call("job.get", {"id": job["id"]})
    assert got["tags"] == ["codescaler", "codescaler_kind_user", "codescaler_alice"]
    assert got["status"] == "pending"
    assert isinstance(got["created_at_ms"], int)


async def test_tag_filter_is_a_prefix_match(hero_proc: Caller) -> None:
    """`tag: codescaler` also returns `codescalerfoo` and `codescaler_x` jobs: it only narrows."""
    for name, tags in (
        ("a", ["codescaler"]),
        ("b", ["codescalerfoo"]),
        ("c", ["codescaler_x"]),
        ("d", ["other"]),
    ):
        await make_action(hero_proc, name, tags)
        await hero_proc.call("job.create", {"action": name})
    listed = await hero_proc.call("job.list", {"filter": {"tag": "codescaler"}})
    assert [j["action_id"] for j in listed] == ["a", "b", "c"]


async def test_limit_default_cap_and_offset(simulator: Simulator, hero_proc: Caller) -> None:
    """limit defaults to 1,000 and is capped at 10,000; offset pages; ids ascend."""
    seed_population(simulator.store, 10_050)
    default = await hero_proc.call("job.list", {})
    assert len(default) == 1_000
    capped = await hero_proc.call("job.list", {"filter": {"limit": 50_000}})
    assert len(capped) == 10_000
    ids = [j["id"] for j in capped]
    assert ids == sorted(ids)
    rest = await hero_proc.call("job.list", {"filter": {"limit": 10_000, "offset": 10_000}})
    assert len(rest) == 50
    assert rest[0]["id"] > ids[-1]


async def test_job_delete_needs_force_for_active_jobs(hero_proc: Caller) -> None:
    """An active job answers -32003 without force; with force it is deleted; then -32001."""
    await make_action(hero_proc, "a", [])
    job = await hero_proc.call("job.create", {"action": "a", "status": "running"})
    err = await hero_proc.error("job.delete", {"id": job["id"]})
    assert err["code"] == -32003
    assert await hero_proc.call("job.delete", {"id": job["id"], "force": True}) == {"deleted": True}
    assert (await hero_proc.error("job.delete", {"id": job["id"], "force": True}))["code"] == -32001


async def test_finished_jobs_delete_without_force(hero_proc: Caller) -> None:
    """Only pending and running jobs need force."""
    await make_action(hero_proc, "a", [])
    job = await hero_proc.call("job.create", {"action": "a", "status": "succeeded"})
    assert await hero_proc.call("job.delete", {"id": job["id"]}) == {"deleted": True}


async def test_action_delete_refuses_while_referenced(hero_proc: Caller) -> None:
    """-32002 while a job references the action; deleted once the job is; -32001 after."""
    await make_action(hero_proc, "a", [])
    job = await hero_proc.call("job.create", {"action": "a"})
    assert (await hero_proc.error("action.delete", {"name": "a"}))["code"] == -32002
    await hero_proc.call("job.delete", {"id": job["id"], "force": True})
    assert await hero_proc.call("action.delete", {"name": "a"}) == {"deleted": True}
    assert (await hero_proc.error("action.delete", {"name": "a"}))["code"] == -32001


async def test_job_create_extensions_seed_status_and_age(hero_proc: Caller) -> None:
    """The simulator-only `status` and `created_at_ms` (null allowed) of job.create."""
    await make_action(hero_proc, "a", [])
    old = await hero_proc.call(
        "job.create", {"action": "a", "status": "failed", "created_at_ms": 5}
    )
    ageless = await hero_proc.call("job.create", {"action": "a", "created_at_ms": None})
    assert (await hero_proc.call("job.get", old))["created_at_ms"] == 5
    assert (await hero_proc.call("job.get", old))["status"] == "failed"
    assert (await hero_proc.call("job.get", ageless))["created_at_ms"] is None
    assert (await hero_proc.error("job.create", {"action": "missing"}))["code"] == -32001


async def test_job_create_extension_finished_at_ms(hero_proc: Caller) -> None:
    """`finished_at_ms` is kept as given (null too); without it a terminal job finished
    when it was created, and an active one has not finished."""
    await make_action(hero_proc, "a", [])
    given = {"action": "a", "status": "succeeded", "created_at_ms": 5, "finished_at_ms": 9}
    explicit = await hero_proc.call("job.create", given)
    missing = await hero_proc.call(
        "job.create",
        {"action": "a", "status": "failed", "created_at_ms": 5, "finished_at_ms": None},
    )
    implied = await hero_proc.call(
        "job.create", {"action": "a", "status": "cancelled", "created_at_ms": 7}
    )
    running = await hero_proc.call("job.create", {"action": "a", "status": "running"})
    assert (await hero_proc.call("job.get", explicit))["finished_at_ms"] == 9
    assert (await hero_proc.call("job.get", missing))["finished_at_ms"] is None
    assert (await hero_proc.call("job.get", implied))["finished_at_ms"] == 7
    assert (await hero_proc.call("job.get", running))["finished_at_ms"] is None
    bad = await hero_proc.error("job.create", {"action": "a", "finished_at_ms": "soon"})
    assert bad["code"] == -32602


async def test_job_list_by_tag_and_status(hero_proc: Caller) -> None:
    """A tag and a status filter together: both apply, in id order, paged by offset."""
    await make_action(hero_proc, "a", ["codescaler"])
    await make_action(hero_proc, "b", ["other"])
    made = []
    for i in range(6):
        status = "failed" if i % 2 else "succeeded"
        made.append((await hero_proc.call("job.create", {"action": "a", "status": status}))["id"])
        await hero_proc.call("job.create", {"action": "b", "status": status})
    flt = {"tag": "codescaler", "status": "failed", "limit": 2}
    first = await hero_proc.call("job.list", {"filter": flt})
    rest = await hero_proc.call("job.list", {"filter": {**flt, "offset": 2}})
    assert [j["id"] for j in first + rest] == made[1::2]


async def test_ids_are_never_reused(hero_proc: Caller) -> None:
    """A deleted job's id is not given again."""
    await make_action(hero_proc, "a", [])
    first = await hero_proc.call("job.create", {"action": "a"})
    await hero_proc.call("job.delete", {"id": first["id"], "force": True})
    second = await hero_proc.call("job.create", {"action": "a"})
    assert second["id"] > first["id"]


async def test_stats_cancel_and_discover(hero_proc: Caller) -> None:
    """stats counts jobs, actions and running jobs; job.cancel stops one; rpc.discover lists."""
    await make_action(hero_proc, "a", [])
    job = await hero_proc.call("job.create", {"action": "a", "status": "running"})
    assert await hero_proc.call("stats", {}) == {
        "job_count": 1,
        "action_count": 1,
        "running_count": 1,
    }
    assert await hero_proc.call("job.cancel", job) == {"id": job["id"], "status": "cancelled"}
    assert (await hero_proc.call("stats", {}))["running_count"] == 0
    names = {m["name"] for m in (await hero_proc.call("rpc.discover", {}))["methods"]}
    assert {"job.list", "job.delete", "action.delete", "stats"} <= names


async def test_batches_answer_each_item(hero_proc: Caller) -> None:
    """A batch gets one answer per request, errors in place; notifications get none."""
    await make_action(hero_proc, "a", [])
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "job.create", "params": {"action": "a"}},
        {"jsonrpc": "2.0", "id": 2, "method": "job.delete", "params": {"id": 999}},
        {"jsonrpc": "2.0", "method": "stats", "params": {}},
    ]
    status, answer = await hero_proc.post(json.dumps(batch))
    assert status == 200
    assert [a["id"] for a in answer] == [1, 2]
    assert answer[0]["result"] == {"id": 1}
    assert answer[1]["error"]["code"] == -32001


async def test_faults_batch_off_latency_failures_in_use_and_reset(hero_proc: Caller) -> None:
    """sim.faults switches batches off, fails methods, pins actions in use; sim.reset empties."""
    await make_action(hero_proc, "a", [])
    await hero_proc.call(
        "sim.faults", {"batch": False, "fail_rate": {"stats": 1.0}, "in_use_actions": ["a"]}
    )
    _, answer = await hero_proc.post(json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "stats"}]))
    assert answer["error"]["code"] == -32600
    assert (await hero_proc.error("stats", {}))["code"] == -32603
    assert (await hero_proc.error("action.delete", {"name": "a"}))["code"] == -32002
    await hero_proc.call("sim.faults", {})
    assert await hero_proc.call("action.delete", {"name": "a"}) == {"deleted": True}
    await hero_proc.call("sim.seed", {"codescaler": 10, "unrelated": 2, "lookalike": 2})
    assert (await hero_proc.call("stats", {}))["job_count"] == 14
    await hero_proc.call("sim.reset", {})
    assert (await hero_proc.call("stats", {}))["job_count"] == 0


async def test_seeded_population_mixes_what_cleanup_must_tell_apart(simulator: Simulator) -> None:
    """Seeding mixes codescaler jobs of every kind and status, look-alikes, unrelated, ageless."""
    pop = seed_population(simulator.store, 800, 100, 100, rng_seed=3)
    jobs = list(simulator.store.jobs.values())
    assert len(jobs) == pop.total == 1_000
    scoped = [j for j in jobs if "codescaler" in j["tags"]]
    assert len(scoped) == 800
    assert any(j["created_at_ms"] is None for j in scoped)
    assert {j["status"] for j in scoped} == {
        "pending",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    }
    assert any("codescalerfoo" in j["tags"] for j in jobs)
    assert any("codescaler_x" in j["tags"] and "codescaler" not in j["tags"] for j in jobs)
    done = [j for j in scoped if j["status"] in ("succeeded", "failed", "cancelled")]
    timed = [j for j in done if j["created_at_ms"] is not None]
    assert all(j["created_at_ms"] < j["finished_at_ms"] <= now_ms() for j in timed)
    assert all(j["finished_at_ms"] is None for j in done if j["created_at_ms"] is None)
    assert all(j["finished_at_ms"] is None for j in scoped if j["status"] in ("pending", "running"))


def test_seeding_is_deterministic() -> None:
    """The same arguments make the same population, job for job."""
    first, second = Simulator(), Simulator()
    for sim in (first, second):
        seed_population(sim.store, 300, 30, 30, rng_seed=7, now=10**12)
    assert first.store.state() == second.store.state()
