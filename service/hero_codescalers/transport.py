"""The HTTP side: an aiohttp application on a Unix socket.

`POST /rpc` answers JSON-RPC 2.0: 200 with a JSON body, 204 when every request
was a notification. Refusals at the HTTP level carry a JSON-RPC error body too:
400 (an HTTP request aiohttp could not parse), 404, 405 (not a POST), 408 (the
body did not arrive within the request timeout), 413 (body over 1 MiB, refused
on its announced Content-Length before any of it is read, without
`100 Continue`), 415 (a Content-Type other than JSON), 503 (no call of the
request could start: the in-flight budget is spent). Every response carries an
`X-Request-Id` header; each refusal is logged as one warning line (never a
header's value) and counted in `/metrics`. `GET /health` answers the health
summary, `GET /metrics` the Prometheus metrics.

Each request learns its peer's credentials from the connection (SO_PEERCRED),
its bearer token from `Authorization` (for callers behind a relay), and gets a
request id. A connection that does not deliver a request's headers within the
request timeout is closed.

Connections are accepted by the service's own loop on the listening socket
(`Listener`), not asyncio's: at most `max_connections` are open at once (a
connection beyond is closed as soon as it is accepted, unless it comes from an
admin uid or gid and the admin reserve has room), the listen backlog is the
configured one, and running out of file descriptors is logged once per interval
with a count, never per connection. At start the soft file-descriptor limit is
raised to the hard one, and the cap is lowered, with a warning, when it would
not leave `FD_RESERVE` descriptors for the rest of the service.

`serve()` binds the socket with its mode and group, refuses to start when
another instance answers on it, and on SIGINT/SIGTERM stops accepting, lets
running work finish (a cleanup stops at its next step) within the shutdown
grace, and removes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import grp
import itertools
import os
import resource
import secrets
import signal
import socket
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from . import errors, systemd
from .auth import AdminPolicy, Peer, bearer_token, token_file_problem
from .engine import Engine, now_ms
from .heroproc import HeroProcClient
from .logs import Throttled
from .methods import Services, registry
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .openrpc import build_document
from .rpc import Budget, Dispatcher, error_answer
from .settings import Settings
from .state import State
from .tuning import HERO_PROC_CONNECTIONS, HOUSEKEEPING_INTERVAL_S, LEASE_TTL_S
from .unixsock import bind_unix, remove_socket

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
# The media types JSON-RPC over HTTP accepts; no Content-Type at all is taken as JSON too.
JSON_TYPES = frozenset({"application/json", "application/json-rpc", "application/jsonrequest"})
# File descriptors left for everything but callers' connections: hero_proc's
# connection pool, the listening socket, logs, the token file, a spare.
FD_RESERVE = HERO_PROC_CONNECTIONS + 64
ACCEPT_BATCH = 128  # connections accepted per wake-up, so other work gets its turn


SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
BUDGET = web.AppKey("budget", Budget)
POLICY = web.AppKey("policy", AdminPolicy)
METRICS = web.AppKey("metrics", Metrics)
REQUEST_ID = web.RequestKey("request_id", str)


def create_app(
    settings: Settings, *, clock: Callable[[], int] | None = None, state: State | None = None
) -> web.Application:
    """The service's aiohttp application; its hero_proc client and its state database live
    with it (`state`, when given, is the database already opened; it is closed with the
    app). `clock` (wall time in ms) is the engine's and the state's, for tests."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_request_ids])
    app[SETTINGS] = settings
    app[BUDGET] = Budget(settings.max_inflight, settings.admin_reserve)
    app[POLICY] = AdminPolicy(
        uids=settings.admin_uids, gids=settings.admin_gids, token=settings.bearer_token()
    )
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(lambda app: _services(app, clock or now_ms, state))
    app.router.add_post("/rpc", _rpc, expect_handler=_expect)
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


async def open_state(settings: Settings, clock: Callable[[], int] = now_ms) -> State:
    """The state database of `settings`; StateUnusable when it cannot serve."""
    return await State.open(settings.state_dir, clock=clock, lease_ttl_ms=LEASE_TTL_S * 1000)


async def _services(
    app: web.Application, clock: Callable[[], int], state: State | None
) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    problem = token_file_problem(settings.token_file)
    if problem is not None:
        log.warning("token_file_unsafe", path=str(settings.token_file), problem=problem)
    metrics = app[METRICS]
    if state is None:
        state = await open_state(settings, clock)
    try:
        async with HeroProcClient(
            settings.hero_proc_socket,
            timeout=settings.hero_proc_timeout,
            attempts=settings.hero_proc_attempts,
        ) as client:
            engine = Engine(
                client,
                state,
                deadline=settings.cleanup_deadline,
                history_days=settings.history_days,
                clock=clock,
                on_run=metrics.observe_run,
            )
            await engine.housekeep()
            for run in await state.last_finished():
                metrics.last_run(
                    run["policy"], run["outcome"], run["finished_at_ms"], run["duration_ms"]
                )
            document = build_document(registry)
            app[ENGINE] = engine
            app[DISPATCHER] = Dispatcher(
                document,
                registry,
                Services(engine, document, metrics, stats_reuse_s=settings.stats_reuse),
                app[POLICY],
                max_batch=settings.max_batch,
                metrics=metrics,
                budget=app[BUDGET],
                lane_width=settings.peer_concurrency,
            )
            housekeeping = asyncio.create_task(_housekeeping(engine))
            try:
                yield
            finally:
                housekeeping.cancel()
                # A cleanup cancelled by the end of the grace records itself first.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await engine.idle()
    finally:
        await state.close()


async def _housekeeping(engine: Engine) -> None:
    """The history's retention and the sweep of interrupted runs, every interval."""
    while True:
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
        await engine.housekeep()


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


def bearer_of(request: web.BaseRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header ("" when malformed)."""
    return bearer_token(request.headers.get("Authorization"))


def _refusal(
    status: int,
    reason: str,
    headers: dict[str, str] | None = None,
    code: int = errors.INVALID_REQUEST,
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


_HTTP_REASONS = {
    404: "no such path: JSON-RPC requests are POSTed to /rpc",
    405: "method not allowed",
}


@web.middleware
async def _request_ids(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every response gets its request id; aiohttp's own refusals (404, 405, ...) get a
    JSON-RPC error body; refusals are counted and logged as one line."""
    rid = request[REQUEST_ID] = request_id()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = _HTTP_REASONS.get(exc.status, exc.reason)
        kept = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        response = _refusal(exc.status, reason, kept)
    response.headers["X-Request-Id"] = rid
    if response.status >= 400:
        _refused(request.app[METRICS], rid, response.status, request.path)
    return response


def _refused(metrics: Metrics, rid: str, status: int, path: str, cause: str | None = None) -> None:
    metrics.http_refusals.labels(str(status)).inc()
    if status == 503:  # a flood's symptom: summed up, not a line per request
        metrics.busy_log.note(last_request_id=rid)
    else:
        log.warning("http_refused", request_id=rid, status=status, path=path[:64], cause=cause)


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` on /rpc: 413 at once for a body announced over the limit,
    417 for another expectation, else `100 Continue` (as aiohttp's own handler)."""
    response: web.Response | None = None
    if (request.content_length or 0) > MAX_BODY:
        response = _closing(_refusal(413, f"request body larger than {MAX_BODY} bytes"))
    elif request.headers.get("Expect", "").lower() != "100-continue":
        response = _closing(_refusal(417, "only Expect: 100-continue is understood"))
    if response is not None:
        rid = request_id()
        response.headers["X-Request-Id"] = rid
        _refused(request.app[METRICS], rid, response.status, request.path)
        return response
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
    return None


async def _body(request: web.Request) -> bytes | web.Response:
    """The request's body, or the refusal to send when it is too large or too slow."""
    timeout = request.app[SETTINGS].request_timeout
    try:
        if request.content.is_eof():  # all there already (small requests): no timer
            return await request.read()
        async with asyncio.timeout(timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _closing(_refusal(413, f"request body larger than {MAX_BODY} bytes"))
    except TimeoutError:
        return _closing(_refusal(408, f"request body not received within {timeout:g}s"))


def _all_busy(answer: Any) -> bool:
    """Whether every call of the request was refused for the in-flight budget."""
    items = answer if isinstance(answer, list) else [answer]
    return bool(items) and all(
        isinstance(a, dict) and a.get("error", {}).get("code") == errors.SERVER_BUSY for a in items
    )


async def _rpc(request: web.Request) -> web.StreamResponse:
    rid = request[REQUEST_ID]
    if "Content-Type" in request.headers and request.content_type not in JSON_TYPES:
        return _refusal(415, "Content-Type must be application/json")
    if (request.content_length or 0) > MAX_BODY:
        return _closing(_refusal(413, f"request body larger than {MAX_BODY} bytes"))
    dispatcher = request.app[DISPATCHER]
    peer, bearer = peer_of(request), bearer_of(request)
    if dispatcher.busy(peer, bearer):
        limit = request.app[BUDGET].limit
        return _refusal(503, f"more than {limit} calls in flight", code=errors.SERVER_BUSY)
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    answer = await dispatcher.dispatch(body, peer, rid, bearer=bearer)
    if answer is None:
        return web.Response(status=204)
    return _json(answer, status=503 if _all_busy(answer) else 200)


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


@dataclass
class Gate:
    """Who may have a connection: the cap, the admins' reserve, the count of open ones."""

    cap: int
    reserve: int
    policy: AdminPolicy
    metrics: Metrics
    open: int = 0
    over_cap: Throttled = field(default_factory=lambda: Throttled("connections_refused"))
    out_of_fds: Throttled = field(default_factory=lambda: Throttled("accept_failed"))

    def admits(self, peer: Peer) -> bool:
        if self.open < self.cap:
            return True
        return self.open < self.cap + self.reserve and self.policy.is_admin(peer)

    def opened(self) -> None:
        self.open += 1
        self.metrics.connections_open.set(self.open)

    def closed(self) -> None:
        self.open -= 1
        self.metrics.connections_open.set(self.open)


class _Connection(RequestHandler):
    """aiohttp's connection handler, counted against the cap, and with its own
    answer to a request it cannot parse.

    aiohttp answers a malformed request (a stray control character in a header, a
    line too long) with a text body quoting the offending input, and logs it at
    error with a traceback: the `Authorization` header could be in both. Here it
    is a JSON-RPC error body with a request id, logged as one warning line naming
    the kind of error only. This relies on `RequestHandler.handle_error` (called
    for every such request) and `web.Server`'s handler arguments, both pinned by
    a test (tests/integration/test_security.py).
    """

    gate: Gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.gate.opened()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.gate.closed()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        rid = request_id()
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun: no error answer can follow")
        if status >= 500:
            log.error("http_internal_error", request_id=rid, exc_info=exc)
            answer = error_answer(errors.INTERNAL_ERROR, {"request_id": rid})
        else:
            cause = type(exc).__name__ if exc is not None else None
            self.gate.metrics.http_refusals.labels(str(status)).inc()
            log.warning("http_refused", request_id=rid, status=status, cause=cause)
            reason = f"malformed HTTP request ({cause})" if cause else "malformed HTTP request"
            answer = error_answer(errors.INVALID_REQUEST, reason)
        response = web.Response(
            body=orjson.dumps(answer),
            status=status,
            content_type="application/json",
            headers={"X-Request-Id": rid},
        )
        response.force_close()
        return response


class Listener(web.BaseSite):
    """A site on an already bound Unix socket that accepts connections itself, within
    the gate's cap, with the configured backlog, and survives running out of file
    descriptors (a spare one is let go to accept and close the waiting connection)."""

    __slots__ = ("_factory", "_gate", "_paused", "_sock", "_spare", "_tasks")

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, gate: Gate, backlog: int):
        super().__init__(runner, backlog=backlog)
        server = runner.server
        if server is None:
            raise RuntimeError("runner.setup() must come before the site")
        loop = asyncio.get_running_loop()
        handler_args: dict[str, Any] = server._kwargs  # aiohttp's own; pinned by a test

        def factory() -> _Connection:
            connection = _Connection(server, loop=loop, **handler_args)
            connection.gate = gate
            return connection

        self._sock = sock
        self._gate = gate
        self._factory = factory
        self._spare: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused = False

    @property
    def name(self) -> str:
        return f"unix:{self._sock.getsockname()}"

    @property
    def backlog(self) -> int:
        return self._backlog

    async def start(self) -> None:
        await super().start()
        self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._sock.setblocking(False)
        self._sock.listen(self._backlog)
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._accept)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        self._gate.over_cap.close()
        self._gate.out_of_fds.close()
        self._gate.metrics.busy_log.close()
        await super().stop()

    def _accept(self) -> None:
        gate = self._gate
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                gate.out_of_fds.note(error=errno.errorcode.get(exc.errno or 0, str(exc.errno)))
                gate.metrics.connections_refused.labels("accept_failed").inc()
                if not (exc.errno in (errno.EMFILE, errno.ENFILE) and self._shed()):
                    self._pause()
                return
            peer = Peer.of_socket(conn)
            if not gate.admits(peer):
                conn.close()
                gate.metrics.connections_refused.labels("over_cap").inc()
                gate.over_cap.note(cap=gate.cap, peer_uid=peer.uid)
                continue
            task = asyncio.get_running_loop().create_task(self._serve(conn, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket, peer: Peer) -> None:
        try:
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                self._factory, conn
            )
        except OSError:
            conn.close()
            return
        _PEERS[transport] = peer

    def _shed(self) -> bool:
        """Out of descriptors: let the spare go, accept the waiting connection and close it
        at once (its caller learns at once instead of waiting in the backlog)."""
        if self._spare is None:
            return False
        os.close(self._spare)
        self._spare = None
        try:
            conn, _ = self._sock.accept()
            conn.close()
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return True

    def _pause(self) -> None:
        """Stop accepting for a second (asyncio does the same on these errors)."""
        if self._paused:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._sock.fileno())
        self._paused = True

        def resume() -> None:
            self._paused = False
            with contextlib.suppress(ValueError, OSError):
                loop.add_reader(self._sock.fileno(), self._accept)

        loop.call_later(1.0, resume)


def fd_limit(raise_soft: bool = False) -> int:
    """The soft limit of open file descriptors, raised to the hard limit first if asked."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_soft and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("fd_limit_not_raised", soft=soft, hard=hard, error=str(exc))
        else:
            log.info("fd_limit_raised", soft=soft, to=hard)
            soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


async def start_site(runner: web.AppRunner, sock: socket.socket) -> Listener:
    """Serve the runner's application on the bound socket `sock`, within the cap that
    the settings and the file-descriptor limit allow."""
    app = runner.app
    settings = app[SETTINGS]
    room = fd_limit() - FD_RESERVE - settings.admin_reserve
    cap = settings.max_connections
    if room < cap:
        log.warning("max_connections_lowered", configured=cap, to=max(room, 1))
        cap = max(room, 1)
    gate = Gate(cap, settings.admin_reserve, app[POLICY], app[METRICS])
    site = Listener(runner, sock, gate, settings.listen_backlog)
    await site.start()
    return site


def group_id(group: str | None) -> int | None:
    """A group name or number as a gid."""
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    return grp.getgrnam(group).gr_gid


def listen(settings: Settings) -> tuple[socket.socket, int]:
    """The service's listening socket, with its mode, group and backlog, and the file's
    inode; or the socket systemd passed (its file is systemd's: inode -1, never removed)."""
    if (inherited := systemd.inherited_socket()) is not None:
        return inherited, -1
    return bind_unix(
        settings.socket,
        settings.socket_mode,
        group_id(settings.socket_group),
        backlog=settings.listen_backlog,
    )


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM; the socket file is removed on the way out."""
    sock, inode = listen(settings)  # a mistake here is told in one line, nothing before it
    try:
        state = await open_state(settings)  # as is one here (StateUnusable)
    except BaseException:
        sock.close()
        remove_socket(settings.socket, inode)
        raise
    fd_limit(raise_soft=True)
    app = create_app(settings, state=state)
    runner = runner_for(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        await start_site(runner, sock)
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
            state=str(app[ENGINE].state.path),
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
        await runner.cleanup()  # a cleanup cancelled by the end of the grace records itself
        sock.close()
        log.info("service_stopped")
