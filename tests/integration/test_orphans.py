"""The orphan-action sweep, against the simulator on its socket: only codescaler actions
that no codescaler job references go; hero_proc's "in use" refusal is not a failure."""

from __future__ import annotations

from typing import Any

from hero_codescalers.cleanup.orphans import orphans, sweep
from hero_codescalers.heroproc import HeroProcClient
from hero_codescalers.simulator import Simulator
from hero_codescalers.tags import SCOPE_TAG, action_name, action_tags

from ..conftest import simulator_socket
from .population import add_job


def put_action(
    simulator: Simulator, name: str, tags: list[str], context: str | None = None
) -> None:
    simulator.store.action_set(
        {"name": name, "context": context, "spec": {"script": "x", "tags": tags}}
    )


async def test_only_codescaler_actions_without_a_job_are_swept(simulator: Simulator) -> None:
    """Swept: codescaler actions no job references (with or without a context). Kept: one
    a job runs, one a job was made for between the listing and its deletion (hero_proc
    refuses: in use, not a failure), a foreign action, a lookalike without the scope tag,
    and one named otherwise."""
    store = simulator.store
    used = action_name("user", "used")
    add_job(store, action=used)
    lone = action_name("user", "lone")
    put_action(simulator, lone, action_tags("user"))
    lone_ctx = action_name("service", "ctx")
    put_action(simulator, lone_ctx, action_tags("service"), context="prod")
    raced = action_name("user", "raced")
    put_action(simulator, raced, action_tags("user"))

    def submit_at_its_deletion(method: str, params: dict[str, Any]) -> None:
        if method == "action.delete" and params.get("name") == raced:
            store.job_create({"action": raced})

    simulator.hooks.append(submit_at_its_deletion)
    put_action(simulator, "backup_nightly", ["ops"])
    lookalike = action_name("user", "lookalike")
    put_action(simulator, lookalike, ["ops"])
    put_action(simulator, "report_weekly", [SCOPE_TAG])
    before = set(store.actions)
    async with HeroProcClient(simulator_socket(simulator)) as client:
        assert set(await orphans(client)) == {
            (lone, None),
            (lone_ctx, "prod"),
            (raced, None),
        }
        result = await sweep(client)
    assert (result.found, result.deleted, result.in_use, result.gone) == (3, 2, 1, 0)
    assert result.errors == []
    assert before - set(store.actions) == {(lone, None), (lone_ctx, "prod")}


async def test_a_sweep_with_nothing_to_do_deletes_nothing(simulator: Simulator) -> None:
    add_job(simulator.store)
    async with HeroProcClient(simulator_socket(simulator)) as client:
        result = await sweep(client)
    assert (result.found, result.deleted) == (0, 0)
    assert simulator.calls["action.delete"] == 0


async def test_a_sweep_of_a_stopping_run_sends_nothing_and_says_so_once(
    simulator: Simulator,
) -> None:
    for name in ("a", "b", "c"):
        put_action(simulator, action_name("user", name), action_tags("user"))
    async with HeroProcClient(simulator_socket(simulator)) as client:
        result = await sweep(client, stop=lambda: "the service is shutting down")
    assert (result.found, result.deleted, result.not_attempted) == (3, 0, 3)
    assert result.errors == ["3 orphan actions not attempted: the service is shutting down"]
    assert simulator.calls["action.delete"] == 0
    assert len(simulator.store.actions) == 3
