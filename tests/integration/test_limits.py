"""Limits and abuse: each gets a clear answer, and well-behaved callers keep being served."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hero_codescalers.simulator import Simulator

from ..conftest import Caller, Service, ServiceFactory


async def raw_exchange(socket: Path, data: bytes) -> bytes:
    """Send `data` on a fresh connection and read until the service closes it."""
    reader, writer = await asyncio.open_unix_connection(str(socket))
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


async def test_a_batch_over_the_limit_is_refused_whole(caller: Caller) -> None:
    """101 requests in one batch: one -32600 naming the limit, nothing run."""
    batch = [{"jsonrpc": "2.0", "id": i, "method": "stats"} for i in range(101)]
    status, answer = await caller.post(json.dumps(batch))
    assert status == 200
    assert answer["error"] == {
        "code": -32600,
        "message": "Invalid Request",
        "data": "batch larger than 100",
    }


async def test_deeply_nested_json_is_a_parse_error(caller: Caller) -> None:
    """A body nested 100,000 deep: -32700 saying so, no crash."""
    status, answer = await caller.post("[" * 100_000 + "]" * 100_000)
    assert status == 200
    assert answer["error"]["code"] == -32700
    assert answer["error"]["data"] == "JSON nested too deeply"


async def test_deep_params_get_a_short_reason(caller: Caller) -> None:
    """An `input` nested 500 deep: -32602 with a bounded explanation."""
    deep: Any = 1
    for _ in range(500):
        deep = {"x": deep}
    err = await caller.error(
        "jobs.submit", {"kind": "user", "actor": "a", "script": "s", "input": deep}
    )
    assert err["code"] == -32602
    assert len(err["data"]) <= 500


async def test_a_huge_value_is_refused_by_its_limit(caller: Caller) -> None:
    """A 900 kB script (under the body limit, over the field's): -32602 naming the field."""
    err = await caller.error("jobs.submit", {"kind": "user", "actor": "a", "script": "x" * 900_000})
    assert err["data"] == "script: String should have at most 65536 characters"


async def test_a_connection_that_never_finishes_its_headers_is_closed(
    make_service: ServiceFactory,
) -> None:
    """Half a request line, then silence: closed after the request timeout."""
    svc = await make_service(request_timeout=0.2)
    assert await raw_exchange(svc.socket, b"POST /rpc HTTP/1.1\r\nHost: x\r\n") == b""


async def test_a_body_that_never_arrives_gets_408(make_service: ServiceFactory) -> None:
    """Headers promising 100 bytes, then 10: 408 and a JSON-RPC error, not a held connection."""
    svc = await make_service(request_timeout=0.2)
    head = (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    reply = await raw_exchange(svc.socket, head + b'{"jsonrpc"')
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"]["data"] == "request body not received within 0.2s"


async def test_too_many_requests_in_flight_get_503(
    simulator: Simulator, make_service: ServiceFactory
) -> None:
    """With two requests held, a third is told to come back (503, -32012); then all is well."""
    svc = await make_service(max_inflight=2, admin_reserve=0)
    caller = Caller(svc.socket)
    held, release = asyncio.Event(), asyncio.Event()
    waiting = 0

    async def hold(method: str, params: dict[str, Any]) -> None:
        nonlocal waiting
        if method == "job.list":
            waiting += 1
            if waiting == 2:
                held.set()
            await release.wait()

    simulator.hooks.append(hold)
    slow = [asyncio.create_task(caller.call("jobs.list", {})) for _ in range(2)]
    await held.wait()
    status, answer = await caller.post('{"jsonrpc": "2.0", "id": 1, "method": "system.health"}')
    assert status == 503
    assert answer["error"]["code"] == -32012
    assert answer["error"]["message"] == "Server busy"
    release.set()
    await asyncio.gather(*slow)
    assert (await caller.call("system.health"))["status"] == "ok"


async def test_a_well_behaved_client_is_served_while_others_misbehave(
    make_service: ServiceFactory,
) -> None:
    """Stalled connections, oversized and garbage bodies at once: a good client is served."""
    svc = await make_service(request_timeout=0.5)
    good = Caller(svc.socket)
    stalled = [
        asyncio.create_task(
            raw_exchange(svc.socket, b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Le")
        )
        for _ in range(50)
    ]
    abusive = [asyncio.create_task(good.post(b"[" + b"0," * 600_000 + b"0]")) for _ in range(3)]
    abusive += [asyncio.create_task(good.post(b"\xff\x00garbage" * 1000)) for _ in range(10)]
    for _ in range(20):
        assert (await good.call("system.health"))["status"] == "ok"
    statuses = [status for status, _ in await asyncio.gather(*abusive)]
    assert statuses.count(413) == 3
    assert statuses.count(200) == 10
    assert all(reply == b"" for reply in await asyncio.gather(*stalled))


async def test_wrong_types_get_invalid_params_for_every_method(
    service: Service, caller: Caller
) -> None:
    """A param of the wrong type on each method is -32602, never -32603."""
    cases = {
        "rpc.discover": {"x": 1},
        "system.health": [1],
        "jobs.submit": {"kind": 1, "actor": [], "script": {}},
        "jobs.list": {"limit": "10", "cursor": 5},
        "stats": {"verbose": True},
        "jobs.cleanup": {"dry_run": "no", "older_than_ms": 1.5},
        "jobs.cleanup_history": {"limit": None},
    }
    for method, params in cases.items():
        assert (await caller.error(method, params))["code"] == -32602, method
