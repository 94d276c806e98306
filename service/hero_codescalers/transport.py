"""The HTTP side: an aiohttp application on a Unix socket.

`POST /rpc` answers JSON-RPC 2.0: 200 with a JSON body, 204 when every request
was a notification; 413 (body over 1 MiB), 415 (a Content-Type other than JSON)
and 405 (not a POST) come with a JSON-RPC error body too. `GET /health` answers
the health summary. Each request
learns its peer's credentials from the connection (SO_PEERCRED) and gets a
request id (the `X-Request-Id` header). `serve()` binds the socket with its mode,
refuses to start when another instance answers on it, and removes it on exit.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from . import errors
from .auth import AdminPolicy, Peer
from .engine import Engine
from .heroproc import HeroProcClient
from .methods import Services, registry
from .openrpc import build_document
from .rpc import Dispatcher
from .settings import Settings
from .unixsock import bind_unix, remove_socket

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
# The media types JSON-RPC over HTTP accepts; no Content-Type at all is taken as JSON too.
JSON_TYPES = frozenset({"application/json", "application/json-rpc", "application/jsonrequest"})

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)


def create_app(settings: Settings) -> web.Application:
    """The service's aiohttp application; its hero_proc client lives with it."""
    app = web.Application(client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_services)
    app.router.add_post("/rpc", _rpc)
    app.router.add_route("*", "/rpc", _not_post)
    app.router.add_get("/health", _health)
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with HeroProcClient(
        settings.hero_proc_socket, timeout=settings.hero_proc_timeout
    ) as client:
        engine = Engine(client)
        document = build_document(registry)
        policy = AdminPolicy(uids=settings.admin_uids, gids=settings.admin_gids)
        app[ENGINE] = engine
        app[DISPATCHER] = Dispatcher(document, registry, Services(engine, document), policy)
        yield


def peer_of(request: web.Request) -> Peer:
    transport = request.transport
    return Peer.of_socket(transport.get_extra_info("socket") if transport else None)


def _refusal(status: int, reason: str, headers: dict[str, str]) -> web.Response:
    """An HTTP-level refusal that still carries a JSON-RPC error object."""
    answer = {
        "jsonrpc": "2.0",
        "error": {"code": errors.INVALID_REQUEST, "message": "Invalid Request", "data": reason},
        "id": None,
    }
    return web.json_response(answer, status=status, headers=headers)


async def _rpc(request: web.Request) -> web.StreamResponse:
    request_id = uuid.uuid4().hex[:16]
    headers = {"X-Request-Id": request_id}
    if "Content-Type" in request.headers and request.content_type not in JSON_TYPES:
        return _refusal(415, "Content-Type must be application/json", headers)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _refusal(413, f"request body larger than {MAX_BODY} bytes", headers)
    answer = await request.app[DISPATCHER].dispatch(body, peer_of(request), request_id)
    if answer is None:
        return web.Response(status=204, headers=headers)
    return web.json_response(answer, headers=headers)


async def _not_post(request: web.Request) -> web.StreamResponse:
    return _refusal(405, "JSON-RPC requests are POSTed to /rpc", {"Allow": "POST"})


async def _health(request: web.Request) -> web.StreamResponse:
    health = await request.app[ENGINE].health()
    return web.json_response(health.model_dump(mode="json"))


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM; the socket file is removed on the way out."""
    sock, inode = bind_unix(settings.socket, settings.socket_mode)
    runner = web.AppRunner(create_app(settings), handle_signals=False, access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        log.info(
            "service_started",
            socket=str(settings.socket),
            hero_proc_socket=str(settings.hero_proc_socket),
            admin_uids=sorted(settings.admin_uids),
            admin_gids=sorted(settings.admin_gids),
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("service_stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        sock.close()
        remove_socket(settings.socket, inode)
        log.info("service_stopped")
