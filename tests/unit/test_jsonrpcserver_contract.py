"""What the dispatcher relies on of jsonrpcserver outside its documented API.

`hero_codescalers.rpc` calls four functions that jsonrpcserver does not export
(`create_request`, the async `dispatch_request`, `to_response`,
`to_serializable_one`): its documented entry point costs 13-16% more CPU per call
(make bench-rpc). Each test pins one thing relied on, by signature and by the
shapes that go in and come out, so that an upgrade within the range of
pyproject.toml that changes one of them fails here, by name, instead of changing
the service's answers.
"""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from jsonrpcserver import Error, Success
from jsonrpcserver.async_dispatcher import dispatch_request
from jsonrpcserver.dispatcher import create_request, to_response
from jsonrpcserver.response import to_serializable_one

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
# The range this contract was checked against: widening it means reading these
# functions of the new versions again, and updating this file.
CHECKED_RANGE = "jsonrpcserver>=5.0.9,<6"


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_range_allowed_is_the_range_checked() -> None:
    """pyproject.toml allows exactly the range this contract was written for, and the
    version installed is in it."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert CHECKED_RANGE in dependencies
    major, minor, patch, *_ = (int(part) for part in version("jsonrpcserver").split("."))
    assert (5, 0, 9) <= (major, minor, patch) < (6, 0, 0)


def test_the_signatures_relied_on() -> None:
    """The functions take what the dispatcher passes, in that order."""
    assert parameters(create_request) == ["request"]
    assert parameters(dispatch_request) == ["methods", "context", "request"]
    assert inspect.iscoroutinefunction(dispatch_request)
    assert parameters(to_response) == ["request", "result"]
    assert parameters(to_serializable_one) == ["response"]


@pytest.mark.parametrize(
    ("item", "method", "params", "id_"),
    [
        pytest.param({"jsonrpc": "2.0", "method": "m", "params": {"a": 1}, "id": 7}, "m",
                     {"a": 1}, 7, id="by-name"),
        pytest.param({"jsonrpc": "2.0", "method": "m", "params": [1, 2], "id": "x"}, "m",
                     [1, 2], "x", id="by-position"),
        pytest.param({"jsonrpc": "2.0", "method": "m", "params": {}, "id": None}, "m", {},
                     None, id="null-id"),
    ],
)  # fmt: skip
def test_create_request_keeps_method_params_and_id(
    item: dict[str, Any], method: str, params: Any, id_: Any
) -> None:
    """A request object becomes a request with its method, params and id (null kept as
    null: a call, not a notification)."""
    request = create_request(item)
    assert (request.method, request.params, request.id) == (method, params, id_)


class Recorder:
    """A method of the table: records its arguments and returns a ready result."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def __call__(self, ctx: object, /, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(((ctx, *args), kwargs))
        return self.result


async def test_dispatch_request_calls_the_method_with_the_context_first() -> None:
    """The method named is called with the context, then params by position or by name (the
    context alone when there are none); its own result comes back unchanged, with the
    request it answers."""
    context = object()
    returned = Success({"pong": True})
    method = Recorder(returned)
    for params, expected in [
        ({"params": [1, 2]}, ((context, 1, 2), {})),
        ({"params": {"a": 1}}, ((context,), {"a": 1})),
        ({}, ((context,), {})),
    ]:
        request = create_request({"jsonrpc": "2.0", "method": "m", **params, "id": 1})
        answered, result = await dispatch_request({"m": method}, context, request)
        assert answered is request
        assert result is returned
        assert method.calls.pop() == expected


async def test_dispatch_request_lets_cancellation_through() -> None:
    """A call cancelled (the service shutting down) stays cancelled: it is not turned into
    an error answer."""

    async def cancelled(ctx: object, /) -> Any:
        raise asyncio.CancelledError

    request = create_request({"jsonrpc": "2.0", "method": "m", "id": 1})
    with pytest.raises(asyncio.CancelledError):
        await dispatch_request({"m": cancelled}, None, request)


async def test_dispatch_request_checks_arguments_by_the_signature_given() -> None:
    """The arguments are checked against `inspect.signature` of the method, so a ready-made
    `__signature__` (the dispatcher gives one to each wrapper) is what is read."""
    method = Recorder(Success(None))
    method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_ONLY)]
    )
    request = create_request({"jsonrpc": "2.0", "method": "m", "params": [1], "id": 1})
    _, result = await dispatch_request({"m": method}, None, request)
    answer = to_serializable_one(to_response(request, result))
    assert answer["error"]["code"] == -32602
    assert method.calls == []


@pytest.mark.parametrize(
    ("result", "answer"),
    [
        pytest.param(Success({"n": 1}), {"jsonrpc": "2.0", "result": {"n": 1}, "id": 5},
                     id="success"),
        pytest.param(Success(None), {"jsonrpc": "2.0", "result": None, "id": 5},
                     id="success-null"),
        pytest.param(Error(-32001, "Admin required"),
                     {"jsonrpc": "2.0", "error": {"code": -32001, "message": "Admin required"},
                      "id": 5}, id="error-without-data"),
        pytest.param(Error(-32602, "Invalid params", "kind: required"),
                     {"jsonrpc": "2.0", "error": {"code": -32602, "message": "Invalid params",
                                                  "data": "kind: required"}, "id": 5},
                     id="error-with-data"),
    ],
)  # fmt: skip
def test_a_result_becomes_its_answer(result: Any, answer: dict[str, Any]) -> None:
    """`Success` and `Error` become the JSON-RPC response object exactly: no `data` unless
    given, the request's id."""
    request = create_request({"jsonrpc": "2.0", "method": "m", "id": 5})
    assert to_serializable_one(to_response(request, result)) == answer


def test_a_call_with_a_null_id_is_answered_with_a_null_id() -> None:
    """An id of null is an id: the call is answered, with "id": null."""
    request = create_request({"jsonrpc": "2.0", "method": "m", "id": None})
    assert to_serializable_one(to_response(request, Success(1)))["id"] is None
