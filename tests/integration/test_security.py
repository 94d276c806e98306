"""Who may do what: admin methods, the relay token, the socket's mode and group, hostile names."""

from __future__ import annotations

import inspect
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from structlog.testing import capture_logs

from hero_codescalers.listener import listen
from hero_codescalers.logs import merge_call
from hero_codescalers.methods import registry
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator
from hero_codescalers.transport import METRICS
from hero_codescalers.unixsock import UnsafeSocketDir

from ..conftest import Caller, Service, ServiceFactory, raw_exchange
from ..names import ACTOR_ONLY, HOSTILE_NAMES
from .peers import IS_ROOT, NOBODY, PeerCannotConnect, post_as
from .population import add_job

needs_root = pytest.mark.skipif(not IS_ROOT, reason="starting a peer under another uid needs root")
ADMIN_METHODS = sorted(name for name, m in registry.methods.items() if m.admin)
SECRET = "s3cr3t-relay-token-0123456789"  # noqa: S105 -- a test token, the point of the test


def request(method: str, params: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}


@needs_root
@pytest.mark.parametrize("method", ADMIN_METHODS)
async def test_every_admin_method_refuses_a_non_admin(
    simulator: Simulator, make_service: ServiceFactory, method: str
) -> None:
    """Each admin method, called alone by uid 65534, answers -32010 and touches nothing."""
    add_job(simulator.store)
    svc = await make_service()
    _, answer = await post_as(NOBODY, NOBODY, svc.socket, request(method))
    assert answer["error"]["code"] == -32010
    assert simulator.calls["job.list"] == 0
    assert len(simulator.store.jobs) == 1


def test_admin_methods_are_the_destructive_ones() -> None:
    """The cleanup (in the background too, its status and its cancel), its history, the
    deleted jobs' tombstones and the retention policies are admin-only; reads and
    submissions are open."""
    assert ADMIN_METHODS == [
        "jobs.cleanup",
        "jobs.cleanup_cancel",
        "jobs.cleanup_history",
        "jobs.cleanup_start",
        "jobs.cleanup_status",
        "jobs.deleted",
        "retention.list",
        "retention.run",
    ]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


@needs_root
async def test_the_relay_token_makes_a_non_admin_peer_an_admin(
    simulator: Simulator, make_service: ServiceFactory, token_file: Path
) -> None:
    """Behind a relay (here uid 65534), the right bearer token is admin; wrong or none is not."""
    svc = await make_service(token_file=token_file)
    add_job(simulator.store)
    with capture_logs(processors=[merge_call]) as logs:
        _, missing = await post_as(NOBODY, NOBODY, svc.socket, request("jobs.cleanup"))
        _, wrong = await post_as(
            NOBODY, NOBODY, svc.socket, request("jobs.cleanup"), {"Authorization": "Bearer nope"}
        )
        _, malformed = await post_as(
            NOBODY, NOBODY, svc.socket, request("jobs.cleanup"), {"Authorization": SECRET}
        )
        _, right = await post_as(
            NOBODY,
            NOBODY,
            svc.socket,
            request("jobs.cleanup"),
            {"Authorization": f"Bearer {SECRET}"},
        )
    assert missing["error"]["data"]["reason"] == "not an admin uid or gid"
    assert wrong["error"]["data"]["reason"] == "invalid bearer token"
    assert malformed["error"]["code"] == -32010
    assert right["result"]["jobs_deleted"] == 1
    assert [e["reason"] for e in logs if e["event"] == "admin_refused"] == [
        "not an admin uid or gid",
        "invalid bearer token",
        "invalid bearer token",
    ]
    assert SECRET not in repr(logs), "the token reached the log"


async def test_a_wrong_token_is_refused_even_from_root(
    simulator: Simulator, make_service: ServiceFactory, token_file: Path
) -> None:
    """A presented token decides: a wrong one is refused whoever the peer is."""
    svc = await make_service(token_file=token_file)
    caller = Caller(svc.socket)
    body = '{"jsonrpc": "2.0", "id": 1, "method": "jobs.cleanup", "params": {}}'
    headers = {"Content-Type": "application/json", "Authorization": "Bearer guess"}
    _, answer = await caller.post(body, headers)
    assert answer["error"]["code"] == -32010
    _, answer = await caller.post(body, {**headers, "Authorization": f"Bearer {SECRET}"})
    assert "result" in answer


def test_the_token_is_never_printed(token_file: Path) -> None:
    """Settings hide a token given directly; a token file's content is read only when used."""
    direct = Settings(token=SECRET)
    from_file = Settings(token_file=token_file)
    assert SECRET not in repr(direct)
    assert SECRET not in str(direct.model_dump())
    assert SECRET not in repr(from_file)
    assert direct.bearer_token() == from_file.bearer_token() == SECRET


async def test_the_socket_is_created_with_its_mode(make_service: ServiceFactory) -> None:
    """0660 by default (owner and group only); configurable."""
    default = await make_service(socket_mode=0o660)
    assert stat.S_IMODE(default.socket.stat().st_mode) == 0o660
    assert stat.S_ISSOCK(default.socket.stat().st_mode)
    tight = await make_service(socket_mode=0o600)
    assert stat.S_IMODE(tight.socket.stat().st_mode) == 0o600


@needs_root
async def test_a_peer_outside_the_mode_cannot_connect(make_service: ServiceFactory) -> None:
    """Socket 0660 root:root: uid 65534 is refused by the kernel before any request."""
    svc = await make_service(socket_mode=0o660)
    with pytest.raises(PeerCannotConnect, match="PermissionError"):
        await post_as(NOBODY, NOBODY, svc.socket, request("system.health"))


@needs_root
async def test_a_socket_group_lets_its_members_in(make_service: ServiceFactory) -> None:
    """With socket_group set, the group's members connect (and stay non-admin)."""
    svc = await make_service(socket_mode=0o660, socket_group=str(NOBODY))
    assert svc.socket.stat().st_gid == NOBODY
    _, health = await post_as(NOBODY, NOBODY, svc.socket, request("system.health"))
    assert health["result"]["status"] == "ok"
    _, cleanup = await post_as(NOBODY, NOBODY, svc.socket, request("jobs.cleanup"))
    assert cleanup["error"]["code"] == -32010


@pytest.mark.parametrize("field", ["kind", "target", "actor"])
async def test_hostile_names_never_reach_hero_proc(
    simulator: Simulator, caller: Caller, field: str
) -> None:
    """Wildcards, %, .., empty, long, unicode look-alikes: -32602 naming the field, no listing."""
    add_job(simulator.store)
    names = [*HOSTILE_NAMES.values(), *(ACTOR_ONLY.values() if field == "actor" else ())]
    for name in names:
        err = await caller.error("jobs.cleanup", {field: name})
        assert err["code"] == -32602, name
        assert err["data"].startswith(f"{field}: "), name
    assert simulator.calls["job.list"] == 0
    assert len(simulator.store.jobs) == 1


async def test_the_service_runs_without_root(make_service: ServiceFactory) -> None:
    """Nothing in the service needs privileges: its files are its own (owner = this uid)."""
    svc = await make_service()
    assert svc.socket.stat().st_uid == os.geteuid()


CLEANUP_DRY = '{"jsonrpc": "2.0", "id": 1, "method": "jobs.cleanup", "params": {"dry_run": true}}'


@pytest.mark.parametrize(
    ("authorization", "admitted"),
    [
        pytest.param(f"Bearer {SECRET}", True, id="bearer"),
        pytest.param(f"bearer {SECRET}", True, id="scheme-lower-case"),
        pytest.param(f"BEARER  {SECRET} ", True, id="scheme-upper-case-extra-spaces"),
        pytest.param(f"Bearer {SECRET.upper()}", False, id="token-other-case"),
        pytest.param(f"Bearer {SECRET[:-1]}", False, id="token-prefix"),
        pytest.param(f"Bearer {SECRET}x", False, id="token-longer"),
        pytest.param(f"Basic {SECRET}", False, id="basic-scheme"),
        pytest.param(f"Token {SECRET}", False, id="other-scheme"),
        pytest.param(SECRET, False, id="no-scheme"),
        pytest.param(f"Bearer{SECRET}", False, id="no-space"),
        pytest.param("Bearer", False, id="no-token"),
        pytest.param(f"Bearer {SECRET} {SECRET}", False, id="two-tokens"),
    ],
)
async def test_only_the_bearer_scheme_and_the_exact_token_make_an_admin(
    make_service: ServiceFactory, token_file: Path, authorization: str, admitted: bool
) -> None:
    """The scheme is matched in any case (RFC 7235); the token byte for byte. A presented
    credential decides alone, so this holds for any caller, root included."""
    svc = await make_service(token_file=token_file)
    headers = {"Content-Type": "application/json", "Authorization": authorization}
    with capture_logs(processors=[merge_call]) as logs:
        _, answer = await Caller(svc.socket).post(CLEANUP_DRY, headers)
    if admitted:
        assert "result" in answer, answer
    else:
        assert answer["error"]["code"] == -32010
        assert answer["error"]["data"]["reason"] == "invalid bearer token"
    assert SECRET not in repr(logs)
    assert SECRET.upper() not in repr(logs)


def split_reply(reply: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


def raw_request(authorization: bytes, body: bytes = CLEANUP_DRY.encode()) -> bytes:
    return (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: " + authorization + b"\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


async def test_bytes_that_are_not_ascii_in_the_header_are_a_wrong_token(
    make_service: ServiceFactory, token_file: Path
) -> None:
    """Non-UTF-8 or non-ASCII bytes in Authorization: -32010 "invalid bearer token", not -32603."""
    svc = await make_service(token_file=token_file)
    for value in (b"Bearer \xff\xfe" + SECRET.encode(), "Bearer é".encode()):
        status, _, answer = split_reply(await raw_exchange(svc.socket, raw_request(value)))
        assert status == 200
        assert answer["error"]["code"] == -32010
        assert answer["error"]["data"]["reason"] == "invalid bearer token"


async def test_a_header_aiohttp_refuses_never_shows_the_token(
    make_service: ServiceFactory, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stray control character in Authorization: aiohttp refuses the request (400); the
    answer is a JSON-RPC error with a request id, logged as one warning line, counted, and
    neither the answer nor any log line holds the header's value or a traceback."""
    svc = await make_service(token_file=token_file)
    caplog.set_level(logging.DEBUG)
    with capture_logs(processors=[merge_call]) as logs:
        reply = await raw_exchange(
            svc.socket, raw_request(b"Bearer " + SECRET.encode() + b"\x01tail")
        )
    status, headers, answer = split_reply(reply)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"]
    assert answer["error"]["code"] == -32600
    assert answer["error"]["data"].startswith("malformed HTTP request")
    assert SECRET.encode() not in reply
    refusals = [e for e in logs if e["event"] == "http_refused"]
    assert len(refusals) == 1
    assert refusals[0]["log_level"] == "warning"
    assert refusals[0]["request_id"] == headers["x-request-id"]
    assert "exc_info" not in refusals[0]
    assert SECRET not in repr(logs)
    assert SECRET not in caplog.text
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    metrics = svc.app[METRICS].render().decode()
    assert 'hero_codescalers_http_refusals_total{status="400"} 1.0' in metrics


async def test_the_aiohttp_internals_relied_on_are_there() -> None:
    """The JSON-RPC answer to a malformed request relies on aiohttp calling
    `RequestHandler.handle_error(request, status, exc, message)` for it, and on
    `web.Server` keeping its handlers' arguments in `_kwargs`: an upgrade that changes
    either fails here (and in the test above) instead of leaking headers silently."""
    params = list(inspect.signature(RequestHandler.handle_error).parameters)
    assert params == ["self", "request", "status", "exc", "message"]
    assert "self.handle_error(" in inspect.getsource(RequestHandler._make_error_handler)
    server = web.Server(lambda request: None, keepalive_timeout=7)  # type: ignore[arg-type,return-value]
    assert server._kwargs == {"keepalive_timeout": 7}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/health", 200, id="health"),
        pytest.param("GET", "/metrics", 200, id="metrics"),
        pytest.param("GET", "/nowhere", 404, id="not-found"),
        pytest.param("PUT", "/rpc", 405, id="not-allowed"),
        pytest.param("DELETE", "/health", 405, id="not-allowed-health"),
    ],
)
async def test_every_response_has_a_request_id(
    service: Service, method: str, path: str, status: int
) -> None:
    """X-Request-Id on every response; refusals carry a JSON-RPC error body and are counted."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(service.socket))) as s,
        s.request(method, f"http://localhost{path}") as resp,
    ):
        assert resp.status == status
        assert resp.headers["X-Request-Id"]
        body = await resp.read()
    if status >= 400:
        assert json.loads(body)["error"]["code"] == -32600
        metrics = service.app[METRICS].render().decode()
        assert f'hero_codescalers_http_refusals_total{{status="{status}"}} 1.0' in metrics


async def test_a_token_file_readable_by_others_is_warned_about(
    make_service: ServiceFactory, token_file: Path
) -> None:
    """0600: nothing said; 0644: a warning at start naming the file, never the token."""
    with capture_logs() as logs:
        await make_service(token_file=token_file)
    assert not [e for e in logs if e["event"] == "token_file_unsafe"]
    os.chmod(token_file, 0o644)
    with capture_logs() as logs:
        await make_service(token_file=token_file)
    (warning,) = [e for e in logs if e["event"] == "token_file_unsafe"]
    assert warning["log_level"] == "warning"
    assert warning["path"] == str(token_file)
    assert "0644" in warning["problem"]
    assert SECRET not in repr(logs)


async def test_the_socket_directory_is_created_writable_by_its_owner_only(
    sock_dir: Path, make_service: ServiceFactory
) -> None:
    """…/hero_codescalers/ is created 0755 whatever the umask; 0750 and the socket's group
    when one is given (the group still reaches the socket)."""
    old = os.umask(0)
    try:
        svc = await make_service(socket=sock_dir / "own" / "rpc.sock")
    finally:
        os.umask(old)
    assert stat.S_IMODE(svc.socket.parent.stat().st_mode) == 0o755
    gid = os.getgid()
    grouped = await make_service(socket=sock_dir / "grouped" / "rpc.sock", socket_group=str(gid))
    st = grouped.socket.parent.stat()
    assert stat.S_IMODE(st.st_mode) == 0o750
    assert st.st_gid == gid


@pytest.mark.parametrize(
    ("mode", "safe"),
    [
        pytest.param(0o755, True, id="0755"),
        pytest.param(0o700, True, id="0700"),
        pytest.param(0o1777, True, id="sticky-like-tmp"),
        pytest.param(0o775, False, id="group-writable"),
        pytest.param(0o757, False, id="others-writable"),
        pytest.param(0o777, False, id="world-writable"),
    ],
)
def test_an_existing_socket_directory_others_may_write_is_refused(
    sock_dir: Path, mode: int, safe: bool
) -> None:
    """Writable by group or others without the sticky bit: UnsafeSocketDir, one clear line."""
    own = sock_dir / "hero_codescalers"
    own.mkdir()
    own.chmod(mode)
    settings = Settings(socket=own / "rpc.sock", hero_proc_socket=sock_dir / "hp.sock")
    if safe:
        sock, _ = listen(settings)
        sock.close()
        return
    with pytest.raises(UnsafeSocketDir) as caught:
        listen(settings)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{mode:04o}" in message
    assert str(own) in message
    assert not (own / "rpc.sock").exists()


@needs_root
def test_a_socket_directory_owned_by_another_user_is_refused(sock_dir: Path) -> None:
    """Owned by uid 65534 (even 0755): refused; the parent directory is not judged."""
    own = sock_dir / "hero_codescalers"
    own.mkdir(mode=0o755)
    os.chown(own, NOBODY, NOBODY)
    settings = Settings(socket=own / "rpc.sock", hero_proc_socket=sock_dir / "hp.sock")
    with pytest.raises(UnsafeSocketDir, match="belongs to uid 65534"):
        listen(settings)
    os.chown(sock_dir, NOBODY, NOBODY)  # the parent's owner does not matter
    os.chown(own, 0, 0)
    sock, _ = listen(settings)
    sock.close()
