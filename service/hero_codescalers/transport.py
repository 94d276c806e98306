"""The HTTP side: an aiohttp application on a Unix socket.

`POST /rpc` answers JSON-RPC 2.0: 200 with a JSON body, 204 when every request
was a notification. Refusals at the HTTP level carry a JSON-RPC error body too:
405 (not a POST), 408 (the body did not arrive within the request timeout), 413
(body over 1 MiB), 415 (a Content-Type other than JSON), 503 (too many requests
in flight). `GET /health` answers the health summary, `GET /metrics` the
Prometheus metrics.

Each request learns its peer's credentials from the connection (SO_PEERCRED),
its bearer token from `Authorization` (for callers behind a relay), and gets a
request id (the `X-Request-Id` header). A connection that does not deliver a
request's headers within the request timeout is closed.

`serve()` binds the socket with its mode and group, refuses to start when
another instance answers on it, and on SIGINT/SIGTERM stops accepting, lets
running work finish (a cleanup stops at its next step) within the shutdown
grace, and removes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import grp
import itertools
import secrets
import signal
import socket
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web

from . import errors, systemd
from .auth import AdminPolicy, Peer
from .engine import Engine
from .heroproc import HeroProcClient
from .methods import Services, registry
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .openrpc import build_document
from .rpc import Dispatcher, error_answer
from .settings import Settings
from .unixsock import bind_unix, remove_socket

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
# The media types JSON-RPC over HTTP accepts; no Content-Type at all is taken as JSON too.
JSON_TYPES = frozenset({"application/json", "application/json-rpc", "application/jsonrequest"})


@dataclass
class Inflight:
    """Requests being handled now, against the cap."""

    limit: int
    count: int = 0


SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
INFLIGHT = web.AppKey("inflight", Inflight)
METRICS = web.AppKey("metrics", Metrics)


def create_app(settings: Settings) -> web.Application:
    """The service's aiohttp application; its hero_proc client lives with it."""
    app = web.Application(client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app[INFLIGHT] = Inflight(settings.max_inflight)
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_services)
    app.router.add_post("/rpc", _rpc)
    app.router.add_route("*", "/rpc", _not_post)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    return app


def runner_for(app: web.Application) -> web.AppRunner:
    """The runner of `app`: idle or header-less connections close after the request
    timeout, and shutdown waits up to the grace for running requests."""
    settings = app[SETTINGS]
    return web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=settings.request_timeout,
        lingering_time=settings.request_timeout,
        shutdown_timeout=settings.shutdown_grace,
    )


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with HeroProcClient(
        settings.hero_proc_socket,
        timeout=settings.hero_proc_timeout,
        attempts=settings.hero_proc_attempts,
    ) as client:
        engine = Engine(client, deadline=settings.cleanup_deadline)
        document = build_document(registry)
        policy = AdminPolicy(
            uids=settings.admin_uids, gids=settings.admin_gids, token=settings.bearer_token()
        )
        metrics = app[METRICS]
        app[ENGINE] = engine
        app[DISPATCHER] = Dispatcher(
            document,
            registry,
            Services(engine, document, metrics),
            policy,
            max_batch=settings.max_batch,
            metrics=metrics,
        )
        yield


_PEERS: weakref.WeakKeyDictionary[asyncio.BaseTransport, Peer] = weakref.WeakKeyDictionary()


def peer_of(request: web.Request) -> Peer:
    """The peer of the request's connection, asked of the kernel once per connection."""
    transport = request.transport
    if transport is None:
        return Peer.unknown()
    peer = _PEERS.get(transport)
    if peer is None:
        peer = _PEERS[transport] = Peer.of_socket(transport.get_extra_info("socket"))
    return peer


_REQUEST_IDS = itertools.count(1)
_PROCESS = secrets.token_hex(4)  # request ids differ from one start to the next


def request_id() -> str:
    return f"{_PROCESS}-{next(_REQUEST_IDS):x}"


def bearer_of(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header ("" when malformed)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _refusal(
    status: int, reason: str, headers: dict[str, str], code: int = errors.INVALID_REQUEST
) -> web.Response:
    """An HTTP-level refusal that still carries a JSON-RPC error object."""
    return web.json_response(error_answer(code, reason), status=status, headers=headers)


def _closing(response: web.Response) -> web.Response:
    """Close the connection after `response`: the rest of its request body is not wanted.

    aiohttp still reads and drops what the client sends for a while (the request
    timeout), so that a client still writing its body gets to read the answer.
    """
    response.force_close()
    return response


async def _rpc(request: web.Request) -> web.StreamResponse:
    rid = request_id()
    headers = {"X-Request-Id": rid}
    if "Content-Type" in request.headers and request.content_type not in JSON_TYPES:
        return _refusal(415, "Content-Type must be application/json", headers)
    inflight = request.app[INFLIGHT]
    if inflight.count >= inflight.limit:
        log.warning("server_busy", inflight=inflight.count)
        return _refusal(
            503, f"more than {inflight.limit} requests in flight", headers, errors.SERVER_BUSY
        )
    inflight.count += 1
    try:
        timeout = request.app[SETTINGS].request_timeout
        try:
            if request.content.is_eof():  # all there already (small requests): no timer
                body = await request.read()
            else:
                async with asyncio.timeout(timeout):
                    body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _closing(_refusal(413, f"request body larger than {MAX_BODY} bytes", headers))
        except TimeoutError:
            log.warning("slow_request_refused", request_id=rid, timeout_s=timeout)
            reason = f"request body not received within {timeout:g}s"
            return _closing(_refusal(408, reason, headers))
        answer = await request.app[DISPATCHER].dispatch(
            body, peer_of(request), rid, bearer=bearer_of(request)
        )
    finally:
        inflight.count -= 1
    if answer is None:
        return web.Response(status=204, headers=headers)
    return _json(answer, headers=headers)


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(value), status=status, headers=headers, content_type="application/json"
    )


async def _not_post(request: web.Request) -> web.StreamResponse:
    return _refusal(405, "JSON-RPC requests are POSTed to /rpc", {"Allow": "POST"})


async def _health(request: web.Request) -> web.StreamResponse:
    health = await request.app[ENGINE].health()
    request.app[METRICS].hero_proc_up.set(health.hero_proc.reachable)
    return _json(health.model_dump(mode="json"))


async def _metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text format."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def group_id(group: str | None) -> int | None:
    """A group name or number as a gid."""
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    return grp.getgrnam(group).gr_gid


def listen(settings: Settings) -> tuple[socket.socket, int]:
    """The service's listening socket, with its mode and group, and the file's inode;
    or the socket systemd passed (its file is systemd's: inode -1, never removed)."""
    if (inherited := systemd.inherited_socket()) is not None:
        return inherited, -1
    return bind_unix(settings.socket, settings.socket_mode, group_id(settings.socket_group))


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM; the socket file is removed on the way out."""
    sock, inode = listen(settings)
    app = create_app(settings)
    runner = runner_for(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        # What is alive now lives as long as the service: keep it out of the cyclic
        # collector, which otherwise rescans it again and again during a large cleanup.
        gc.freeze()
        log.info(
            "service_started",
            socket=str(settings.socket),
            hero_proc_socket=str(settings.hero_proc_socket),
            admin_uids=sorted(settings.admin_uids),
            admin_gids=sorted(settings.admin_gids),
            bearer_token="configured" if settings.bearer_token() else "none",
        )
        if ready is not None:
            ready.set()
        systemd.notify("READY=1")
        await stop.wait()
        systemd.notify("STOPPING=1")
        remove_socket(settings.socket, inode)  # no new callers while the last ones finish
        app[ENGINE].stop()
        log.info("service_stopping", grace_s=settings.shutdown_grace)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        remove_socket(settings.socket, inode)
        await runner.cleanup()
        if ENGINE in app:
            # A cleanup cancelled by the end of the grace still logs its summary.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await app[ENGINE].idle()
        sock.close()
        log.info("service_stopped")
