"""Limits and abuse: each gets a clear answer, and well-behaved callers keep being served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.listener import FD_RESERVE, fd_limit
from hero_codescalers.simulator import Simulator
from hero_codescalers.transport import BUDGET, METRICS

from ..conftest import Caller, Service, ServiceFactory, raw_exchange
from .population import add_job


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


def ping(id_: int | None) -> dict[str, Any]:
    call: dict[str, Any] = {"jsonrpc": "2.0", "method": "system.ping"}
    if id_ is not None:
        call["id"] = id_
    return call


async def test_a_batch_of_exactly_the_limit_is_answered_whole(make_service: ServiceFactory) -> None:
    """max_batch calls in a batch: every one answered; one more: refused whole."""
    svc = await make_service(max_batch=7)
    caller = Caller(svc.socket)
    status, answer = await caller.post(json.dumps([ping(i) for i in range(7)]))
    assert status == 200
    assert [a["result"] for a in answer] == [{"pong": True}] * 7
    _, answer = await caller.post(json.dumps([ping(i) for i in range(8)]))
    assert answer["error"]["data"] == "batch larger than 7"


async def hold_lists(
    simulator: Simulator, *counts: int
) -> tuple[list[asyncio.Event], asyncio.Event]:
    """Make hero_proc's job.list wait: the n-th event is set once `counts[n]` calls wait,
    and they all go on when `release` is set."""
    reached = {count: asyncio.Event() for count in counts}
    release = asyncio.Event()
    waiting = 0

    async def hold(method: str, params: dict[str, Any]) -> None:
        nonlocal waiting
        if method == "job.list":
            waiting += 1
            if waiting in reached:
                reached[waiting].set()
            await release.wait()

    simulator.hooks.append(hold)
    return [reached[count] for count in counts], release


async def test_a_batch_counts_as_its_calls_and_the_excess_is_refused_in_place(
    simulator: Simulator, make_service: ServiceFactory
) -> None:
    """Budget 4, two calls running: a batch of 4 calls gets 2 answers and two -32012 in place
    (a notification beyond the budget is dropped); with all 4 taken, a call gets 503."""
    svc = await make_service(max_inflight=4, admin_reserve=0)
    caller = Caller(svc.socket)
    (two, four), release = await hold_lists(simulator, 2, 4)
    slow = [asyncio.create_task(caller.call("jobs.list", {})) for _ in range(2)]
    await two.wait()
    status, answer = await caller.post(json.dumps([ping(1), ping(2), ping(None), ping(3), ping(4)]))
    assert status == 200
    assert [a["id"] for a in answer] == [1, 2, 3, 4]
    assert [a.get("result") for a in answer[:2]] == [{"pong": True}] * 2
    for refused in answer[2:]:
        assert refused["error"] == {
            "code": -32012,
            "message": "Server busy",
            "data": "more than 4 calls in flight",
        }
    more = [asyncio.create_task(caller.call("jobs.list", {})) for _ in range(2)]
    await four.wait()
    status, answer = await caller.post(json.dumps(ping(9)))
    assert status == 503
    assert answer["error"]["code"] == -32012
    release.set()
    await asyncio.gather(*slow, *more)
    assert svc.app[BUDGET].used == 0
    metrics = svc.app[METRICS].render().decode()
    assert "hero_codescalers_calls_refused_busy_total 3.0" in metrics  # 2 + 1 dropped
    assert 'hero_codescalers_http_refusals_total{status="503"} 1.0' in metrics


async def test_admins_keep_a_reserve_of_the_budget(
    simulator: Simulator, make_service: ServiceFactory, tmp_path: Path
) -> None:
    """Budget 3 with 1 kept for admins, 2 calls running: a non-admin (here: a wrong token,
    which makes any peer a non-admin) gets 503; an admin (the right token) is served."""
    token = tmp_path / "token"
    token.write_text("t0ken")
    token.chmod(0o600)
    svc = await make_service(max_inflight=3, admin_reserve=1, token_file=token)
    caller = Caller(svc.socket)
    (held,), release = await hold_lists(simulator, 2)
    slow = [asyncio.create_task(caller.call("jobs.list", {})) for _ in range(2)]
    await held.wait()
    body = json.dumps(ping(1))
    as_other = {"Content-Type": "application/json", "Authorization": "Bearer wrong"}
    as_admin = {"Content-Type": "application/json", "Authorization": "Bearer t0ken"}
    assert (await caller.post(body, as_other))[0] == 503
    status, answer = await caller.post(body, as_admin)
    assert status == 200
    assert answer["result"] == {"pong": True}
    release.set()
    await asyncio.gather(*slow)


def walks(svc: Service) -> int:
    """The stats walks of hero_proc the service made, from its own counter."""
    return int(svc.app[METRICS].stats_walks._value.get())


# A stats walk over a few jobs lists one page, then the empty page that ends it.
LISTS_PER_WALK = 2


async def test_concurrent_stats_share_one_walk_and_reuse_it(
    simulator: Simulator, make_service: ServiceFactory
) -> None:
    """Five stats at once walk hero_proc once; within the reuse time, none; a submission or
    a cleanup through the service makes the next one walk again and see the change."""
    add_job(simulator.store)
    svc = await make_service(stats_reuse=60, admin_uids=[os.getuid()])  # root or not
    caller = Caller(svc.socket)
    (held,), release = await hold_lists(simulator, 1)
    calls = [asyncio.create_task(caller.call("stats")) for _ in range(5)]
    await held.wait()
    release.set()
    results = await asyncio.gather(*calls)
    simulator.hooks.clear()
    assert all(r == results[0] for r in results)
    assert walks(svc) == 1
    assert simulator.calls["job.list"] == LISTS_PER_WALK
    assert (await caller.call("stats")) == results[0]
    assert walks(svc) == 1
    assert simulator.calls["job.list"] == LISTS_PER_WALK
    await caller.call("jobs.submit", {"kind": "user", "actor": "alice", "script": "s"})
    assert (await caller.call("stats"))["codescaler"]["jobs"] == 2
    assert walks(svc) == 2
    lists = simulator.calls["job.list"]
    await caller.call("jobs.cleanup", {"dry_run": True})
    assert simulator.calls["job.list"] > lists  # the dry run listed
    await caller.call("stats")
    assert walks(svc) == 2  # a dry run changes nothing: stats reused
    await caller.call("jobs.cleanup", {})
    assert (await caller.call("stats"))["codescaler"]["jobs"] == 0
    assert walks(svc) == 3
    metrics = svc.app[METRICS].render().decode()
    assert "hero_codescalers_stats_walks_total 3.0" in metrics


async def test_a_batch_of_stats_walks_once(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """One request with 100 stats calls: one walk of hero_proc, 100 equal answers."""
    add_job(simulator.store)
    status, answer = await caller.post(
        json.dumps([{"jsonrpc": "2.0", "method": "stats", "id": i} for i in range(100)])
    )
    assert status == 200
    assert len({json.dumps(a["result"]) for a in answer}) == 1
    assert walks(service) == 1
    assert simulator.calls["job.list"] == LISTS_PER_WALK


async def test_stats_reuse_zero_still_shares_but_never_reuses(
    simulator: Simulator, make_service: ServiceFactory
) -> None:
    """With stats_reuse=0 each call after the last walk ended starts its own."""
    svc = await make_service(stats_reuse=0)
    caller = Caller(svc.socket)
    await caller.call("stats")
    await caller.call("stats")
    assert simulator.calls["job.list"] == 2


async def test_a_body_announced_over_the_limit_gets_413_at_once(
    make_service: ServiceFactory,
) -> None:
    """Content-Length over 1 MiB: 413 from the headers alone (no body sent; the request
    timeout is far away), and with `Expect: 100-continue` no `100 Continue` first."""
    svc = await make_service(request_timeout=50)
    head = (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2000000\r\n"
    )
    for extra in (b"", b"Expect: 100-continue\r\n"):
        reader, writer = await asyncio.open_unix_connection(str(svc.socket))
        writer.write(head + extra + b"\r\n")
        reply = await reader.readuntil(b"\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413 "), reply
        assert b"X-Request-Id: " in reply
        length = int(reply.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        answer = json.loads(await reader.readexactly(length))
        assert answer["error"]["data"] == "request body larger than 1048576 bytes"
        writer.close()


async def test_a_small_body_with_expect_gets_100_continue(service: Service) -> None:
    """Expect: 100-continue under the limit: `100 Continue`, then the answer."""
    body = json.dumps(ping(1)).encode()
    head = (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nExpect: 100-continue\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    reader, writer = await asyncio.open_unix_connection(str(service.socket))
    writer.write(head)
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert b'"pong":true' in reply


async def open_idle(socket: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection the service has accepted: one keep-alive request answered on it."""
    reader, writer = await asyncio.open_unix_connection(str(socket))
    body = json.dumps(ping(1)).encode()
    writer.write(
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    return reader, writer


async def closed_at_once(socket: Path) -> bool:
    """Whether a new connection is closed by the service without an answer."""
    try:
        reply = await raw_exchange(socket, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    except (ConnectionResetError, BrokenPipeError):
        return True
    return reply == b""


async def test_connections_over_the_cap_are_closed_at_once(make_service: ServiceFactory) -> None:
    """Cap 3: three held connections; a fourth is closed without an answer, and counted."""
    svc = await make_service(max_connections=3, admin_reserve=0, request_timeout=50)
    held = [await open_idle(svc.socket) for _ in range(3)]
    assert await closed_at_once(svc.socket)
    metrics = svc.app[METRICS].render().decode()
    assert 'hero_codescalers_connections_refused_total{reason="over_cap"} 1.0' in metrics
    assert "hero_codescalers_connections_open 3.0" in metrics
    for _, writer in held:
        writer.close()


async def test_an_admin_may_open_a_connection_of_the_reserve(make_service: ServiceFactory) -> None:
    """Cap 2 plus 1 for admins: this process (an admin: root, or its uid allowed) gets a
    third connection, not a fourth."""
    svc = await make_service(
        max_connections=2, admin_reserve=1, request_timeout=50, admin_uids=[os.getuid()]
    )
    held = [await open_idle(svc.socket) for _ in range(3)]
    assert await closed_at_once(svc.socket)
    for _, writer in held:
        writer.close()


async def test_the_listen_backlog_is_the_configured_one(make_service: ServiceFactory) -> None:
    """`ss -lx` reads the listening socket's backlog back: the configured 777, not 128."""
    if shutil.which("ss") is None:
        pytest.skip("ss is not installed")
    svc = await make_service(listen_backlog=777)
    proc = await asyncio.create_subprocess_exec("ss", "-xlnH", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    (line,) = [row for row in out.decode().splitlines() if str(svc.socket) in row]
    assert line.split()[3] == "777"  # Send-Q of a listening socket: its backlog


def test_the_soft_fd_limit_is_raised_to_the_hard_one() -> None:
    """fd_limit(raise_soft=True) lifts the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 64:
        pytest.skip("no finite hard limit to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
    try:
        assert fd_limit(raise_soft=True) == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_running_out_of_descriptors_is_logged_once_with_a_count(
    make_service: ServiceFactory,
) -> None:
    """With the process's descriptors exhausted, waiting connections are accepted and closed
    (the spare descriptor let go), logged once with a count, not per connection; once
    descriptors are back, callers are served."""
    svc = await make_service(request_timeout=50)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(5)]
    filler: list[int] = []
    with capture_logs() as logs:
        try:
            while True:  # use up every descriptor the process may have
                try:
                    filler.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            for client in clients:
                client.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    client.connect(str(svc.socket))
            loop = asyncio.get_running_loop()
            for client in clients:  # each is closed by the service without an answer
                assert await loop.sock_recv(client, 100) == b""
        finally:
            for fd in filler:
                os.close(fd)
            for client in clients:
                client.close()
    failures = [e for e in logs if e["event"] == "accept_failed"]
    assert len(failures) == 1
    assert failures[0]["error"] == "EMFILE"
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)
    assert (await Caller(svc.socket).call("system.ping")) == {"pong": True}


async def test_one_peer_runs_a_few_calls_at_a_time_and_an_admin_passes_by(
    simulator: Simulator, make_service: ServiceFactory, tmp_path: Path
) -> None:
    """Width 2: of a non-admin's batch of 4 jobs.list (a wrong token: a non-admin whoever
    the peer is), 2 reach hero_proc and the rest wait their turn; an admin's call does
    not wait behind them. All are answered in the end."""
    token = tmp_path / "token"
    token.write_text("t0ken")
    token.chmod(0o600)
    svc = await make_service(peer_concurrency=2, token_file=token)
    caller = Caller(svc.socket)
    (two, three), release = await hold_lists(simulator, 2, 3)
    batch = json.dumps(
        [{"jsonrpc": "2.0", "id": i, "method": "jobs.list", "params": {}} for i in range(4)]
    )
    other = {"Content-Type": "application/json", "Authorization": "Bearer wrong"}
    flood = asyncio.create_task(caller.post(batch, other))
    await two.wait()
    admin = {"Content-Type": "application/json", "Authorization": "Bearer t0ken"}
    call = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "jobs.list", "params": {}})
    admin_call = asyncio.create_task(caller.post(call, admin))
    await three.wait()  # the admin's call reached hero_proc; the batch's 3rd did not
    assert simulator.calls["job.list"] == 3
    release.set()
    status, answer = await flood
    assert status == 200
    assert [a["id"] for a in answer] == [0, 1, 2, 3]
    assert all("result" in a for a in answer)
    assert "result" in (await admin_call)[1]
    assert simulator.calls["job.list"] == 5


async def test_the_cap_is_lowered_to_fit_the_descriptor_limit(
    make_service: ServiceFactory,
) -> None:
    """With a soft limit of 400 descriptors, a cap of 4096 cannot hold: it is lowered to
    leave FD_RESERVE and the admins' reserve free, with a warning saying so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (400, hard))
    try:
        with capture_logs() as logs:
            await make_service(max_connections=4096, admin_reserve=8)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    (lowered,) = [e for e in logs if e["event"] == "max_connections_lowered"]
    assert lowered == {
        "event": "max_connections_lowered",
        "log_level": "warning",
        "configured": 4096,
        "to": 400 - FD_RESERVE - 8,
    }
