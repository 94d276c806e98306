"""The hero_proc client against the simulator over its real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hero_codescalers.errors import HeroProcUnavailable, InUse, JobActive, NotFound
from hero_codescalers.heroproc import HeroProcClient, Pacing
from hero_codescalers.simulator import Simulator

from ..conftest import simulator_socket
from .population import add_job


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[HeroProcClient]:
    async with HeroProcClient(
        simulator_socket(simulator), timeout=2.0, pacing=Pacing(batch=3, inflight=2)
    ) as c:
        yield c


async def test_typed_errors_from_a_real_hero_proc(
    simulator: Simulator, client: HeroProcClient
) -> None:
    """-32001, -32002 and -32003 arrive as NotFound, InUse and JobActive."""
    job = add_job(simulator.store, status="running")
    with pytest.raises(JobActive):
        await client.job_delete(job)
    with pytest.raises(InUse):
        await client.action_delete("codescaler_user_user0")
    await client.job_delete(job, force=True)
    with pytest.raises(NotFound):
        await client.job_get(job)


async def test_records_round_trip(client: HeroProcClient) -> None:
    """action.set, job.create, job.list, action.get and stats read back what was written."""
    await client.action_set("codescaler_user_x", script="echo", tags=["codescaler"])
    job_id = await client.job_create("codescaler_user_x", tags=["codescaler_alice"])
    [job] = await client.job_list(tag="codescaler_alice")
    assert job.id == job_id
    assert job.tags == ["codescaler", "codescaler_alice"]
    assert (await client.action_get("codescaler_user_x")).spec.script == "echo"
    assert (await client.stats()).job_count == 1


@pytest.mark.parametrize("batch", [True, False], ids=["batches", "no-batches"])
async def test_call_many_with_and_without_batch_support(
    simulator: Simulator, client: HeroProcClient, batch: bool
) -> None:
    """Per-call outcomes in order, whether hero_proc takes batches or not."""
    simulator.store.faults.batch = batch
    ids = [add_job(simulator.store) for _ in range(7)]
    calls = [("job.delete", {"id": i, "force": True}) for i in [*ids, 999]]
    results = await client.call_many(calls)
    assert results[:7] == [{"deleted": True}] * 7
    assert isinstance(results[7], NotFound)
    assert client.batch_supported is batch
    assert not simulator.store.jobs


async def test_a_hung_hero_proc_times_out(simulator: Simulator) -> None:
    """A hero_proc that never answers costs one timeout, then HeroProcUnavailable."""
    never = asyncio.Event()

    async def hang(method: str, params: dict[str, Any]) -> None:
        await never.wait()

    simulator.hooks.append(hang)
    try:
        async with HeroProcClient(simulator_socket(simulator), timeout=0.2) as client:
            with pytest.raises(HeroProcUnavailable, match=r"no answer within 0\.2s"):
                await client.stats()
    finally:
        never.set()
