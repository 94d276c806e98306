"""JSON-RPC 2.0 framing over the service's socket: batches, notifications, errors."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.logs import merge_call
from hero_codescalers.simulator import Simulator

from ..conftest import Caller, Service, ServiceFactory
from .population import add_job


def req(method: str, params: Any = None, id_: Any = 1) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        out["params"] = params
    if id_ is not None:
        out["id"] = id_
    return out


async def test_a_batch_gets_one_answer_per_request_with_errors_in_place(caller: Caller) -> None:
    """Valid calls answered, invalid items each get -32600, notifications get nothing."""
    batch = [
        req("system.health", id_="a"),
        1,
        {"jsonrpc": "1.0", "method": "stats", "id": "old"},
        req("stats", id_=None),
        req("no.such.method", id_="b"),
        req("jobs.list", {"limit": 0}, id_="c"),
    ]
    status, answer = await caller.post(json.dumps(batch))
    assert status == 200
    assert [a["id"] for a in answer] == ["a", None, "old", "b", "c"]
    assert answer[0]["result"]["status"] == "ok"
    assert answer[1]["error"]["code"] == -32600
    assert answer[2]["error"] == {
        "code": -32600,
        "message": "Invalid Request",
        "data": 'jsonrpc must be "2.0"',
    }
    assert answer[3]["error"]["code"] == -32601
    assert answer[4]["error"]["code"] == -32602


async def test_notifications_get_no_body(caller: Caller) -> None:
    """A notification, or a batch of them, is answered 204 with an empty body."""
    assert await caller.post(json.dumps(req("stats", id_=None))) == (204, None)
    assert await caller.post(
        json.dumps([req("stats", id_=None), req("system.health", id_=None)])
    ) == (204, None)


@pytest.mark.parametrize(
    ("body", "code", "data"),
    [
        pytest.param(
            '{"jsonrpc": "2.0", "method"',
            -32700,
            "invalid JSON at line 1 column 28",
            id="truncated",
        ),
        pytest.param(b"\xff\xfe{}", -32700, "the body is not valid UTF-8", id="not-utf8"),
        pytest.param("[]", -32600, "empty batch", id="empty-batch"),
        pytest.param('"hello"', -32600, "not a request object", id="string"),
        pytest.param(
            '{"jsonrpc": "2.0", "method": 1, "id": 1}',
            -32600,
            "method must be a string",
            id="method-type",
        ),
        pytest.param(
            '{"jsonrpc": "2.0", "method": "stats", "params": "x", "id": 1}',
            -32600,
            "params must be an object or an array",
            id="params-type",
        ),
        pytest.param(
            '{"jsonrpc": "2.0", "method": "stats", "id": {}}',
            -32600,
            "id must be a string, a number or null",
            id="id-type",
        ),
    ],
)
async def test_malformed_requests_get_precise_errors(
    caller: Caller, body: str | bytes, code: int, data: str
) -> None:
    """Each malformed request gets its code and a reason, never a traceback."""
    status, answer = await caller.post(body)
    assert status == 200
    assert answer["error"]["code"] == code
    assert answer["error"]["data"] == data
    assert answer["id"] in (None, 1)


@pytest.mark.parametrize(
    ("params", "data"),
    [
        pytest.param({"kind": 5}, "kind: Input should be a valid string", id="kind-type"),
        pytest.param(
            {"older_than_ms": "1d"}, "older_than_ms: Input should be a valid integer", id="age-type"
        ),
        pytest.param(
            {"older_than_ms": -1},
            "older_than_ms: Input should be greater than or equal to 0",
            id="age-negative",
        ),
        pytest.param(
            {"dry_run": "yes"}, "dry_run: Input should be a valid boolean", id="dry-run-type"
        ),
        pytest.param({"force": True}, "force: unknown parameter", id="unknown"),
        pytest.param(
            {"actor": "kind_user"},
            "actor: must be ASCII letters, digits, '.' or '-' (no '_'), "
            "starting and ending with a letter or digit",
            id="widening-actor",
        ),
        pytest.param({"actor": ""}, "actor: must not be empty", id="empty-actor"),
        pytest.param(
            {"target": "x" * 65}, "target: must be at most 64 characters", id="long-target"
        ),
    ],
)
async def test_invalid_params_name_the_field(
    simulator: Any, caller: Caller, params: dict[str, Any], data: str
) -> None:
    """-32602 with `field: reason`; nothing reaches hero_proc."""
    err = await caller.error("jobs.cleanup", params)
    assert err == {"code": -32602, "message": "Invalid params", "data": data}
    assert simulator.calls["job.list"] == 0


async def test_positional_params_follow_the_documented_order(caller: Caller) -> None:
    """Params may be an array, in the order of the OpenRPC document."""
    result = await caller.call("jobs.cleanup", ["user", None, None, None, True])
    assert result["dry_run"] is True
    result = await caller.call("jobs.cleanup", [None, None, None, None, True, "because"])
    [run] = (await caller.call("jobs.cleanup_history", {"limit": 1}))["runs"]
    assert run["reason"] == "because"
    result = await caller.call("jobs.cleanup", [None, None, None, None, True, None, ["failed"]])
    assert result["dry_run"] is True
    [run] = (await caller.call("jobs.cleanup_history", {"limit": 1}))["runs"]
    assert run["params"] == {"statuses": ["failed"]}
    every = [None, None, None, None, True, "why", None, None, None, False, None, 5, False]
    result = await caller.call("jobs.cleanup", every)  # ... plan_id, max_jobs, ids
    assert (result["dry_run"], result["ids_omitted"]) == (True, True)
    [run] = (await caller.call("jobs.cleanup_history", {"limit": 1}))["runs"]
    assert run["params"] == {"max_jobs": 5}
    err = await caller.error("jobs.cleanup", [*every, "extra"])
    assert err["data"] == "params: at most 13 positional params"


async def test_positional_params_put_required_ones_first(caller: Caller) -> None:
    """jobs.submit by position: kind, actor, script (required), then target, input."""
    made = await caller.call("jobs.submit", ["user", "alice", "render", "web", {"page": 1}])
    assert made["tags"] == [
        "codescaler",
        "codescaler_kind_user",
        "codescaler_alice",
        "codescaler_target_web",
    ]
    again = await caller.call(
        "jobs.submit", {"kind": "user", "actor": "bob", "script": "render", "input": {"page": 1}}
    )
    assert again["action_id"] == made["action_id"]


async def test_internal_errors_answer_a_request_id_and_nothing_else(
    service: Service, caller: Caller
) -> None:
    """A fault inside a handler is -32603 with the request id; its text stays in the log."""

    async def broken() -> None:
        raise RuntimeError("secret internal detail")

    service.engine.stats = broken
    with capture_logs(processors=[merge_call]) as logs:
        _, answer = await caller.post(json.dumps(req("stats")))
    err = answer["error"]
    assert err["code"] == -32603
    assert err["message"] == "Internal error"
    assert set(err["data"]) == {"request_id"}
    assert "secret" not in json.dumps(answer)
    logged = next(e for e in logs if e["event"] == "rpc_internal_error")
    assert logged["request_id"] == err["data"]["request_id"]
    assert logged["exc_info"] is True
    assert (await caller.call("system.health"))["status"] == "ok"  # still serving


async def test_every_call_logs_one_line(caller: Caller) -> None:
    """One `rpc_call` line per call, with method, outcome, peer and duration."""
    with capture_logs(processors=[merge_call]) as logs:
        await caller.call("system.health")
        await caller.error("jobs.list", {"limit": 0})
    lines = [e for e in logs if e["event"] == "rpc_call"]
    assert [(e["method"], e["outcome"], e["code"]) for e in lines] == [
        ("system.health", "ok", None),
        ("jobs.list", "error", -32602),
    ]
    assert all(isinstance(e["duration_ms"], float) and e["peer_uid"] is not None for e in lines)


async def test_oversized_body_is_refused_with_a_json_rpc_error(caller: Caller) -> None:
    """A body over the limit gets HTTP 413 and a JSON-RPC error, not a closed connection."""
    status, answer = await caller.post(b"[" + b" " * (2 * 1024 * 1024) + b"]")
    assert status == 413
    assert answer["error"]["code"] == -32600
    assert "larger than" in answer["error"]["data"]
    assert (await caller.call("system.health"))["status"] == "ok"


async def test_health_endpoint(caller: Caller, service: Service) -> None:
    """GET /health answers the health summary without JSON-RPC."""
    import aiohttp  # noqa: PLC0415

    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(service.socket))) as s,
        s.get("http://localhost/health") as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "ok"
    assert body["hero_proc"]["reachable"] is True
    assert body["version"]


async def test_metrics_count_calls_and_cleanups(
    simulator: Any, service: Service, caller: Caller
) -> None:
    """GET /metrics: calls by method and outcome, their durations, cleanup runs and deletions."""
    import aiohttp  # noqa: PLC0415

    from .population import add_job  # noqa: PLC0415

    add_job(simulator.store)
    await caller.call("system.ping")
    await caller.error("jobs.list", {"limit": 0})
    await caller.call("jobs.cleanup", {})
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(service.socket))) as s,
        s.get("http://localhost/metrics") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    lines = set(text.splitlines())
    assert 'hero_codescalers_rpc_calls_total{method="system.ping",outcome="ok"} 1.0' in lines
    assert 'hero_codescalers_rpc_calls_total{method="jobs.list",outcome="-32602"} 1.0' in lines
    assert 'hero_codescalers_cleanups_total{dry_run="false",outcome="ok"} 1.0' in lines
    assert "hero_codescalers_jobs_deleted_total 1.0" in lines
    assert "hero_codescalers_actions_deleted_total 1.0" in lines
    assert 'hero_codescalers_rpc_duration_seconds_count{method="jobs.cleanup"} 1.0' in lines


async def test_an_unknown_method_name_is_cut_in_the_answer(caller: Caller) -> None:
    """A 500 kB method name: -32601 whose data holds at most 64 characters of it."""
    answer = await caller.answer("x" * 500_000)
    assert answer["error"]["code"] == -32601
    assert len(answer["error"]["data"]) <= 64
    assert answer["error"]["data"].startswith("xxxx")


async def test_an_unknown_field_name_is_cut_in_the_answer(caller: Caller) -> None:
    """A 100 kB params name: -32602 "unknown parameter", the name cut short."""
    err = await caller.error("jobs.list", {"y" * 100_000: 1})
    assert err["code"] == -32602
    assert err["data"].endswith(": unknown parameter")
    assert len(err["data"]) <= 64 + len(": unknown parameter")


@pytest.mark.parametrize("method", ["stats", "jobs.list", "jobs.cleanup", "system.ping"])
async def test_a_param_named_ctx_is_an_unknown_parameter(
    make_service: ServiceFactory, method: str
) -> None:
    """`ctx` is a name like any other: -32602 "ctx: unknown parameter", nothing of Python."""
    svc = await make_service(admin_uids=[os.getuid()])  # an admin, root or not
    err = await Caller(svc.socket).error(method, {"ctx": 1})
    assert err == {"code": -32602, "message": "Invalid params", "data": "ctx: unknown parameter"}


@pytest.mark.parametrize(
    ("method", "params", "where"),
    [
        pytest.param(
            "jobs.cleanup", '{"dry_run": true, "dry_run": false}', "dry_run", id="cleanup-dry-run"
        ),
        pytest.param(
            "jobs.cleanup", '{"actor": "alice", "actor": "bob"}', "actor", id="cleanup-actor"
        ),
        pytest.param(
            "jobs.submit",
            '{"kind": "user", "actor": "a", "script": "s", "input": {"n": 1, "n": 2}}',
            "input.n",
            id="submit-nested",
        ),
    ],
)
async def test_duplicate_keys_in_a_changing_call_are_refused(
    simulator: Simulator, caller: Caller, method: str, params: str, where: str
) -> None:
    """JSON leaves duplicate keys undefined: for a method that changes hero_proc they are
    -32602 naming the key, and nothing reaches hero_proc (never "last wins")."""
    add_job(simulator.store)
    body = f'{{"jsonrpc": "2.0", "id": 7, "method": "{method}", "params": {params}}}'
    status, answer = await caller.post(body)
    assert status == 200
    assert answer == {
        "jsonrpc": "2.0",
        "error": {"code": -32602, "message": "Invalid params", "data": f"{where}: duplicate key"},
        "id": 7,
    }
    assert len(simulator.store.jobs) == 1
    assert simulator.calls["job.list"] == 0
    assert simulator.calls["job.create"] == 0


async def test_duplicate_keys_are_checked_item_by_item_in_a_batch(
    simulator: Simulator, make_service: ServiceFactory
) -> None:
    """In a batch, only the call with duplicate keys is refused; the others run."""
    add_job(simulator.store)
    caller = Caller((await make_service(admin_uids=[os.getuid()])).socket)
    body = (
        '[{"jsonrpc": "2.0", "id": 1, "method": "system.ping"},'
        ' {"jsonrpc": "2.0", "id": 2, "method": "jobs.cleanup",'
        ' "params": {"dry_run": true, "dry_run": false}},'
        ' {"jsonrpc": "2.0", "id": 3, "method": "jobs.cleanup", "params": {"dry_run": true}}]'
    )
    _, answer = await caller.post(body)
    assert answer[0]["result"] == {"pong": True}
    assert answer[1]["error"]["data"] == "dry_run: duplicate key"
    assert answer[2]["result"]["dry_run"] is True
    assert len(simulator.store.jobs) == 1


SUBMIT = '"kind": "user", "actor": "a", "script": "s"'
LONG = "k" * 100
# Nesting that orjson reads (up to 1,024 levels) and the standard library's parser,
# which the duplicate-key check uses, does not (about 1,000).
DEEP = 1_000
NESTED = '{"a": ' * DEEP + "1" + "}" * DEEP


@pytest.mark.parametrize(
    ("params", "data"),
    [
        pytest.param(
            '["user", "a", "s", null, {"n": 1, "n": 2}]', "4.n: duplicate key", id="by-position"
        ),
        pytest.param(
            f'{{{SUBMIT}, "input": {{"xs": [{{"k": 1}}, {{"k": 1, "k": 2}}]}}}}',
            "input.xs.1.k: duplicate key",
            id="inside-a-list",
        ),
        pytest.param(
            f'{{{SUBMIT}, "input": {{"{LONG}": 1, "{LONG}": 2}}}}',
            f"input.{LONG[:63]}…: duplicate key",
            id="long-name-clipped",
        ),
        pytest.param(
            f'{{{SUBMIT}, "input": {{"{LONG}": {{"n": 1, "n": 2}}}}}}',
            f"input.{LONG[:63]}….n: duplicate key",
            id="under-a-long-name",
        ),
        pytest.param(
            f'{{{SUBMIT}, "input": {NESTED}}}',
            "params: nested too deeply to be checked",
            id="too-deep-to-check",
        ),
    ],
)
async def test_duplicate_keys_are_found_wherever_they_are(
    simulator: Simulator, caller: Caller, params: str, data: str
) -> None:
    """A key given twice in params by position, inside a list, or under a long name is
    named (the name clipped); params too deep for the check are refused as such."""
    body = f'{{"jsonrpc": "2.0", "id": 7, "method": "jobs.submit", "params": {params}}}'
    _, answer = await caller.post(body)
    assert answer == {
        "jsonrpc": "2.0",
        "error": {"code": -32602, "message": "Invalid params", "data": data},
        "id": 7,
    }
    assert simulator.calls["job.create"] == 0


async def test_a_notification_with_duplicate_keys_is_dropped(
    simulator: Simulator, caller: Caller
) -> None:
    """A notification whose params give a key twice is not run, and gets no answer."""
    body = f'{{"jsonrpc": "2.0", "method": "jobs.submit", "params": {{{SUBMIT}, "actor": "b"}}}}'
    assert await caller.post(body) == (204, None)
    assert simulator.calls["job.create"] == 0
    assert not simulator.store.jobs
