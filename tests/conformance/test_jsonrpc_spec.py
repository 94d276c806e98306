"""The examples section of the JSON-RPC 2.0 specification, against the live service.

The specification's examples call `subtract`, `sum`, `update`, `get_data` and
`foobar`; here each is played with a method of this service of the same shape
(positional or named params, a call or a notification, known or unknown), with
the specification's ids and structure kept.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from hero_codescalers.simulator import Simulator

from ..conftest import Caller
from ..integration.population import add_job

INVALID_REQUEST = {"code": -32600, "message": "Invalid Request"}


def without_data(answer: Any) -> Any:
    """Error objects without their explanatory `data` (the specification shows none)."""
    if isinstance(answer, list):
        return [without_data(a) for a in answer]
    if isinstance(answer, dict) and "error" in answer:
        return {**answer, "error": {k: v for k, v in answer["error"].items() if k != "data"}}
    return answer


@pytest.fixture
async def jobs(simulator: Simulator) -> list[int]:
    """Two jobs of alice and one of bob, so that calls have something to answer."""
    return [add_job(simulator.store, actor=a) for a in ("alice", "bob", "alice")]


async def test_call_with_positional_parameters(caller: Caller, jobs: list[int]) -> None:
    """`subtract [42, 23]`: params by position, in the documented order."""
    _, by_position = await caller.post(
        '{"jsonrpc": "2.0", "method": "jobs.list", "params": [null, null, "alice", null, null, 1], "id": 1}'
    )
    assert by_position["id"] == 1
    assert [j["id"] for j in by_position["result"]["jobs"]] == [jobs[0]]
    _, other_order = await caller.post(
        '{"jsonrpc": "2.0", "method": "jobs.list", "params": [null, null, "bob"], "id": 2}'
    )
    assert [j["id"] for j in other_order["result"]["jobs"]] == [jobs[1]]


async def test_call_with_named_parameters(caller: Caller, jobs: list[int]) -> None:
    """`subtract {subtrahend, minuend}`: by name, in any order, the same answer as by position."""
    _, first = await caller.post(
        '{"jsonrpc": "2.0", "method": "jobs.list", "params": {"actor": "alice", "limit": 1}, "id": 3}'
    )
    _, swapped = await caller.post(
        '{"jsonrpc": "2.0", "method": "jobs.list", "params": {"limit": 1, "actor": "alice"}, "id": 4}'
    )
    _, positional = await caller.post(
        '{"jsonrpc": "2.0", "method": "jobs.list", "params": [null, null, "alice", null, null, 1], "id": 4}'
    )
    assert first["id"] == 3
    assert swapped["id"] == 4
    assert first["result"] == swapped["result"] == positional["result"]
    assert [j["id"] for j in first["result"]["jobs"]] == [jobs[0]]


async def test_notifications(caller: Caller, simulator: Simulator) -> None:
    """`update [1,2,3,4,5]` and `foobar`: notifications, known or not, get no answer at all."""
    assert await caller.post(
        '{"jsonrpc": "2.0", "method": "jobs.submit", "params": ["user", "alice", "s"]}'
    ) == (204, None)
    assert await caller.post('{"jsonrpc": "2.0", "method": "foobar"}') == (204, None)
    assert len(simulator.store.jobs) == 1  # the notification was carried out


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
            {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"},
            id="non-existent-method",
        ),
        pytest.param(
            '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
            {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
            id="invalid-json",
        ),
        pytest.param(
            '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
            {"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None},
            id="invalid-request-object",
        ),
        pytest.param(
            '[\n  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},\n  {"jsonrpc": "2.0", "method"\n]',
            {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
            id="batch-invalid-json",
        ),
        pytest.param(
            "[]",
            {"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None},
            id="empty-array",
        ),
        pytest.param(
            "[1]",
            [{"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None}],
            id="invalid-batch-not-empty",
        ),
        pytest.param(
            "[1,2,3]",
            [{"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None}] * 3,
            id="invalid-batch",
        ),
    ],
)
async def test_error_examples(caller: Caller, body: str, expected: Any) -> None:
    """The specification's error examples get exactly its answers (plus an explanatory `data`)."""
    status, answer = await caller.post(body)
    assert status == 200
    assert without_data(answer) == expected
    for item in answer if isinstance(answer, list) else [answer]:
        assert isinstance(item["error"]["data"], str)


async def test_mixed_batch(caller: Caller, jobs: list[int]) -> None:
    """The specification's mixed batch: results, errors and silence, each in its place."""
    batch = [
        {"jsonrpc": "2.0", "method": "jobs.list", "params": [None, None, "alice"], "id": "1"},
        {"jsonrpc": "2.0", "method": "stats", "params": []},
        {"jsonrpc": "2.0", "method": "jobs.cleanup_history", "params": [2], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "system.health", "id": "9"},
    ]
    status, answer = await caller.post(json.dumps(batch))
    assert status == 200
    assert [a["id"] for a in answer] == ["1", "2", None, "5", "9"]
    assert [j["id"] for j in answer[0]["result"]["jobs"]] == [jobs[0], jobs[2]]
    assert answer[1]["result"] == {"runs": [], "next_cursor": None}
    assert without_data(answer[2]) == {"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None}
    assert without_data(answer[3]) == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found"},
        "id": "5",
    }
    assert answer[4]["result"]["status"] == "ok"


async def test_batch_of_notifications(caller: Caller) -> None:
    """A batch of notifications only: nothing is returned."""
    batch = [
        {"jsonrpc": "2.0", "method": "stats", "params": []},
        {"jsonrpc": "2.0", "method": "system.health"},
    ]
    assert await caller.post(json.dumps(batch)) == (204, None)
