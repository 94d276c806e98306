"""The hero_proc client maps every answer to a record or a typed error (HTTP mocked)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hero_codescalers.errors import (
    HeroProcProtocolError,
    HeroProcRpcError,
    HeroProcUnavailable,
    InUse,
    JobActive,
    NotAttempted,
    NotFound,
)
from hero_codescalers.heroproc import URL, HeroProcClient, Pacing

from .conftest import CompatAioresponses

SOCKET = Path("/run/hero/hero_proc/rpc.sock")


@pytest.fixture
async def client() -> AsyncIterator[HeroProcClient]:
    async with HeroProcClient(SOCKET, timeout=0.5, pacing=Pacing(batch=2, inflight=1)) as c:
        yield c


def answer(result: Any = None, error: dict[str, Any] | None = None, id_: Any = 1) -> dict[str, Any]:
    if error is not None:
        return {"jsonrpc": "2.0", "error": error, "id": id_}
    return {"jsonrpc": "2.0", "result": result, "id": id_}


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        pytest.param(-32001, NotFound, id="not-found"),
        pytest.param(-32002, InUse, id="in-use"),
        pytest.param(-32003, JobActive, id="active"),
        pytest.param(-32099, HeroProcRpcError, id="other-code"),
    ],
)
async def test_error_codes_become_typed_errors(
    mock_http: CompatAioresponses, client: HeroProcClient, code: int, error_type: type[Exception]
) -> None:
    """hero_proc's error codes raise the matching exception, carrying code and message."""
    mock_http.post(URL, payload=answer(error={"code": code, "message": "nope"}))
    with pytest.raises(error_type) as caught:
        await client.job_delete(7)
    assert isinstance(caught.value, HeroProcRpcError)
    assert caught.value.rpc_code == code
    assert caught.value.rpc_message == "nope"


async def test_records_are_parsed_tolerantly(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """Extra fields are ignored and null tags read as no tags."""
    mock_http.post(
        URL,
        payload=answer(
            [
                {"id": 1, "action_id": "a", "tags": None, "extra": True},
                {
                    "id": 2,
                    "action_id": "b",
                    "tags": ["codescaler"],
                    "created_at_ms": 5,
                    "status": "running",
                },
            ]
        ),
    )
    jobs = await client.job_list(tag="codescaler")
    assert [j.id for j in jobs] == [1, 2]
    assert jobs[0].tags == []
    assert jobs[1].created_at_ms == 5


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"<html>oops</html>", "not JSON", id="not-json"),
        pytest.param(b'{"result": 1}', "not a JSON-RPC 2.0 response", id="no-jsonrpc-member"),
        pytest.param(
            b'{"jsonrpc": "2.0", "id": 1}', "neither result nor error", id="empty-response"
        ),
        pytest.param(
            b'{"jsonrpc": "2.0", "error": {"message": "x"}, "id": 1}',
            "integer code",
            id="codeless-error",
        ),
        pytest.param(
            b'{"jsonrpc": "2.0", "result": [{"id": "x"}], "id": 1}', "wrong shape", id="bad-record"
        ),
    ],
)
async def test_answers_outside_the_contract_are_protocol_errors(
    mock_http: CompatAioresponses, client: HeroProcClient, body: bytes, reason: str
) -> None:
    """Anything that is not the contract's JSON-RPC is a protocol error, not a crash."""
    mock_http.post(URL, body=body)
    with pytest.raises(HeroProcProtocolError, match=reason):
        await client.job_list()


async def test_connection_failure_is_unavailable_and_names_the_socket(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """A refused connection is HeroProcUnavailable with the socket path."""
    mock_http.post(URL, exception=aiohttp.ClientConnectionError("refused"))
    with pytest.raises(HeroProcUnavailable) as caught:
        await client.stats()
    assert caught.value.socket == str(SOCKET)
    assert str(SOCKET) in caught.value.detail


async def test_dropped_connection_is_unavailable(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """A connection closed without an answer (each try) is HeroProcUnavailable."""
    for _ in range(3):
        mock_http.post(URL, exception=aiohttp.ServerDisconnectedError())
    with pytest.raises(HeroProcUnavailable, match="connection dropped"):
        await client.stats()


async def test_a_slow_answer_times_out(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """Every call has a timeout; past it the call is HeroProcUnavailable."""
    never = asyncio.Event()

    async def hang(url: Any, **kwargs: Any) -> None:
        await never.wait()

    mock_http.post(URL, callback=hang)
    async with HeroProcClient(SOCKET, timeout=0.1, attempts=1) as once:
        with pytest.raises(HeroProcUnavailable, match=r"no answer within 0\.1s"):
            await once.stats()


async def test_call_many_batches_and_keeps_per_item_errors(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """A batch answer is matched by id; one item's error does not fail its neighbours.

    With batches of two, three calls are one batch (answered out of order) and one single call.
    """
    mock_http.post(
        URL,
        payload=[
            answer({"deleted": True}, id_=1),
            answer(error={"code": -32001, "message": "gone"}, id_=0),
        ],
    )
    mock_http.post(URL, payload=answer({"deleted": True}))
    calls = [("job.delete", {"id": i, "force": True}) for i in (1, 2, 3)]
    results = await client.call_many(calls)
    assert isinstance(results[0], NotFound)
    assert results[1] == {"deleted": True}
    assert results[2] == {"deleted": True}
    assert client.batch_supported is True


async def test_call_many_falls_back_when_batches_are_refused(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """A batch answered by one -32600 means no batch support: the calls go one by one."""
    mock_http.post(
        URL, payload=answer(error={"code": -32600, "message": "Invalid Request"}, id_=None)
    )
    mock_http.post(URL, payload=answer({"deleted": True}))
    mock_http.post(URL, payload=answer(error={"code": -32002, "message": "in use"}))
    results = await client.call_many(
        [("action.delete", {"name": "a"}), ("action.delete", {"name": "b"})]
    )
    assert results[0] == {"deleted": True}
    assert isinstance(results[1], InUse)
    assert client.batch_supported is False


async def test_a_failed_batch_fails_each_of_its_items(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """When the batch's connection fails, every item of it reports the failure."""
    mock_http.post(URL, exception=aiohttp.ServerDisconnectedError())
    results = await client.call_many([("job.delete", {"id": 1}), ("job.delete", {"id": 2})])
    assert all(isinstance(r, HeroProcUnavailable) for r in results)


def requests_made(mock_http: CompatAioresponses) -> int:
    return sum(len(calls) for calls in mock_http.requests.values())


async def test_transient_failures_of_idempotent_calls_are_tried_again(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """A dropped connection, then hero_proc's -32603, then an answer: the caller sees the answer."""
    mock_http.post(URL, exception=aiohttp.ServerDisconnectedError())
    mock_http.post(URL, payload=answer(error={"code": -32603, "message": "Internal error"}))
    mock_http.post(URL, payload=answer({"job_count": 1, "action_count": 1, "running_count": 0}))
    assert (await client.stats()).job_count == 1
    assert requests_made(mock_http) == 3


async def test_retries_are_bounded(mock_http: CompatAioresponses, client: HeroProcClient) -> None:
    """After `attempts` tries the last transient error is raised."""
    for _ in range(5):
        mock_http.post(URL, exception=aiohttp.ServerDisconnectedError())
    with pytest.raises(HeroProcUnavailable, match="connection dropped"):
        await client.job_list()
    assert requests_made(mock_http) == 3


async def test_non_idempotent_calls_are_not_repeated(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """job.create could run twice if repeated after a lost answer: it is tried once."""
    mock_http.post(URL, exception=aiohttp.ServerDisconnectedError())
    with pytest.raises(HeroProcUnavailable):
        await client.job_create("a")
    assert requests_made(mock_http) == 1


async def test_definite_errors_are_not_repeated(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """Not found or in use is an answer, not a hiccup: one request."""
    mock_http.post(URL, payload=answer(error={"code": -32002, "message": "in use"}))
    with pytest.raises(InUse):
        await client.action_delete("a")
    assert requests_made(mock_http) == 1


async def test_call_many_tries_again_only_the_items_that_failed_transiently(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """In a batch, an item answered -32603 is sent again; its neighbours are not."""
    mock_http.post(
        URL,
        payload=[
            answer({"deleted": True}, id_=0),
            answer(error={"code": -32603, "message": "Internal error"}, id_=1),
        ],
    )
    mock_http.post(URL, payload=answer({"deleted": True}))
    results = await client.call_many([("job.delete", {"id": 1}), ("job.delete", {"id": 2})])
    assert results == [{"deleted": True}, {"deleted": True}]
    assert requests_made(mock_http) == 2


async def test_call_many_never_repeats_a_non_idempotent_item(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """A batch whose items both fail transiently: the delete is tried again on its own,
    the create (which could run twice) is not."""
    mock_http.post(
        URL,
        payload=[
            answer(error={"code": -32603, "message": "Internal error"}, id_=0),
            answer(error={"code": -32603, "message": "Internal error"}, id_=1),
        ],
    )
    mock_http.post(URL, payload=answer({"deleted": True}))
    results = await client.call_many([("job.create", {"action": "a"}), ("job.delete", {"id": 1})])
    assert isinstance(results[0], HeroProcRpcError)
    assert results[0].rpc_code == -32603
    assert results[1] == {"deleted": True}
    assert requests_made(mock_http) == 2


async def test_call_many_retries_only_transient_errors(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """Items answered "in use", "not found" or another definite error are not sent again."""
    mock_http.post(
        URL,
        payload=[
            answer(error={"code": -32002, "message": "in use"}, id_=0),
            answer(error={"code": -32099, "message": "no"}, id_=1),
        ],
    )
    results = await client.call_many([("action.delete", {"name": "a"}), ("job.delete", {"id": 1})])
    assert isinstance(results[0], InUse)
    assert isinstance(results[1], HeroProcRpcError)
    assert requests_made(mock_http) == 1


@pytest.mark.parametrize(
    "batch_answer",
    [
        pytest.param(
            [{"jsonrpc": "2.0", "error": "boom", "id": 0}, answer({"deleted": True}, id_=1)],
            id="error-not-an-object",
        ),
        pytest.param(
            [answer({"deleted": True}, id_=7), answer({"deleted": True}, id_=1)],
            id="id-not-asked",
        ),
        pytest.param([answer({"deleted": True}, id_=1)], id="item-missing"),
        pytest.param(
            [answer({"deleted": True}, id_=True), answer({"deleted": True}, id_=1)],
            id="id-of-another-type",
        ),
    ],
)
async def test_batch_items_outside_the_contract_are_errors_never_results(
    mock_http: CompatAioresponses, client: HeroProcClient, batch_answer: list[Any]
) -> None:
    """The first item's answer is malformed or not matched to its id: a protocol error in
    its slot (not a result, not None); its neighbour keeps its own answer."""
    mock_http.post(URL, payload=batch_answer)
    results = await client.call_many([("job.delete", {"id": 1}), ("job.delete", {"id": 2})])
    assert isinstance(results[0], HeroProcProtocolError)
    assert results[1] == {"deleted": True}


async def test_a_batch_answered_by_an_error_that_is_not_an_object(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """A whole batch answered `{"error": "boom"}`: each slot is a protocol error."""
    mock_http.post(URL, payload={"jsonrpc": "2.0", "error": "boom", "id": None})
    results = await client.call_many([("job.delete", {"id": 1}), ("job.delete", {"id": 2})])
    assert all(isinstance(r, HeroProcProtocolError) for r in results)


async def test_a_fault_inside_call_many_is_raised_not_left_as_empty_slots(
    client: HeroProcClient,
) -> None:
    """A bug in a batch worker fails the whole call: no slot is left to read as success."""

    async def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    client.batches._batch = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom"):
        await client.call_many([("job.delete", {"id": 1}), ("job.delete", {"id": 2})])


async def test_calls_not_sent_once_stopped_are_not_attempted(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """`stop` gives a reason after the first batch: the rest is never sent, each slot of it
    `NotAttempted` with that reason."""
    mock_http.post(
        URL, payload=[answer({"deleted": True}, id_=0), answer({"deleted": True}, id_=1)]
    )
    sent = 0

    def stop() -> str | None:
        nonlocal sent
        sent += 1
        return None if sent == 1 else "the deadline was reached"

    calls = [("job.delete", {"id": i}) for i in range(5)]
    results = await client.call_many(calls, stop=stop)
    assert results[:2] == [{"deleted": True}] * 2
    assert all(isinstance(r, NotAttempted) for r in results[2:])
    assert results[2].reason == "the deadline was reached"
    assert requests_made(mock_http) == 1


async def test_an_error_text_from_hero_proc_is_cut_and_cleaned(
    mock_http: CompatAioresponses, client: HeroProcClient
) -> None:
    """A long message with control characters becomes at most 200 printable characters."""
    mock_http.post(
        URL, payload=answer(error={"code": -32099, "message": "a\x00\nb" + "x" * 50_000})
    )
    with pytest.raises(HeroProcRpcError) as caught:
        await client.job_delete(1)
    assert len(caught.value.rpc_message) == 200
    assert caught.value.rpc_message.startswith("a b")
    assert caught.value.rpc_message.endswith("…")
    assert len(str(caught.value.public_data())) < 300
