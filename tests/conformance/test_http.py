"""HTTP behaviour of POST /rpc: content types, status codes, methods, size."""

from __future__ import annotations

import aiohttp
import pytest
from multidict import CIMultiDict

from ..conftest import Caller, Service

CALL = '{"jsonrpc": "2.0", "method": "system.health", "id": 1}'


async def request(
    service: Service, method: str, path: str, body: str = "", headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(service.socket))) as s,
        s.request(
            method,
            f"http://localhost{path}",
            data=body.encode(),
            headers=headers or {},
            skip_auto_headers=() if headers else ("Content-Type",),
        ) as resp,
    ):
        return resp.status, CIMultiDict(resp.headers), await resp.read()


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json", id="json"),
        pytest.param("application/json; charset=utf-8", id="json-charset"),
        pytest.param("application/json-rpc", id="json-rpc"),
        pytest.param("application/jsonrequest", id="jsonrequest"),
        pytest.param(None, id="none"),
    ],
)
async def test_json_content_types_are_accepted(service: Service, content_type: str | None) -> None:
    """JSON media types (or none at all) are answered 200 with an application/json body."""
    headers = {"Content-Type": content_type} if content_type else {}
    status, response_headers, body = await request(service, "POST", "/rpc", CALL, headers)
    assert status == 200
    assert response_headers["Content-Type"].startswith("application/json")
    assert response_headers["X-Request-Id"]
    assert b'"result"' in body


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_other_content_types_get_415_with_a_json_rpc_error(
    service: Service, content_type: str
) -> None:
    """curl's default form type, text or XML: 415, and a JSON-RPC body saying what to send."""
    status, headers, body = await request(
        service, "POST", "/rpc", CALL, {"Content-Type": content_type}
    )
    assert status == 415
    assert headers["Content-Type"].startswith("application/json")
    assert b'"data": "Content-Type must be application/json"' in body


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_rpc_takes_only_post(service: Service, method: str) -> None:
    """GET /rpc (or any other verb) is 405 with Allow: POST and a JSON-RPC error body."""
    status, headers, body = await request(service, method, "/rpc")
    assert status == 405
    assert headers["Allow"] == "POST"
    assert b'"code": -32600' in body


async def test_status_codes(service: Service, caller: Caller) -> None:
    """200 for answers (errors included), 204 for notifications, 413 over the size limit, 404 elsewhere."""
    assert (await caller.post('{"jsonrpc": "2.0", "method": "nope", "id": 1}'))[0] == 200
    assert await caller.post('{"jsonrpc": "2.0", "method": "stats"}') == (204, None)
    status, answer = await caller.post(b"{" + b" " * (1024 * 1024) + b"}")
    assert status == 413
    assert answer["error"]["data"] == "request body larger than 1048576 bytes"
    assert (await request(service, "GET", "/nowhere"))[0] == 404
