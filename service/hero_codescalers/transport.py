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

Connections reach the application through `listener.Listener` (the socket, its
cap, its backlog, file-descriptor limits); a connection's handler here adds the
HTTP answer to a request aiohttp cannot parse. `serve()` binds the socket
(`listener.listen`), refuses to start when another instance answers on it, and
on SIGINT/SIGTERM stops accepting, lets running work finish (a cleanup stops at
its next step) within the shutdown grace, and removes the socket.

Above 350 lines because it is the one place where aiohttp meets the service:
the routes and their refusals, and the application's lifecycle (`_services`,
`serve`) that builds what they reach through the same typed app keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from . import errors, systemd
from .admission import Budget
from .auth import AdminPolicy, bearer_token, token_file_problem
from .engine import Engine, now_ms
from .framing import error_answer
from .heroproc import HeroProcClient
from .listener import Connection, Gate, Listener, connection_cap, fd_limit, listen, peer_of
from .methods import Services, registry
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .openrpc import build_document
from .retention import Policy, PolicyFileError, load
from .retention.scheduler import Clock, Scheduler, WallClock
from .rpc import Dispatcher
from .settings import Settings
from .state import State
from .tuning import HOUSEKEEPING_INTERVAL_S, LEASE_TTL_S
from .unixsock import remove_socket

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
# The media types JSON-RPC over HTTP accepts; no Content-Type at all is taken as JSON too.
JSON_TYPES = frozenset({"application/json", "application/json-rpc", "application/jsonrequest"})


SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
BUDGET = web.AppKey("budget", Budget)
POLICY = web.AppKey("policy", AdminPolicy)
METRICS = web.AppKey("metrics", Metrics)
SCHEDULER = web.AppKey("scheduler", Scheduler)
REQUEST_ID = web.RequestKey("request_id", str)


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], int] | None = None,
    state: State | None = None,
    policies: dict[str, Policy] | None = None,
    schedule_clock: Clock | None = None,
) -> web.Application:
    """The service's aiohttp application; its hero_proc client, its state database and
    its retention scheduler live with it (`state`, when given, is the database already
    opened; it is closed with the app; `policies`, when given, those already read, else
    the file of the settings is read now: PolicyFileError). `clock` (wall time in ms) is
    the engine's and the state's, `schedule_clock` the scheduler's, for tests."""
    if policies is None:
        policies = read_policies(settings)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_request_ids])
    app[SETTINGS] = settings
    app[BUDGET] = Budget(settings.max_inflight, settings.admin_reserve)
    app[POLICY] = AdminPolicy(
        uids=settings.admin_uids, gids=settings.admin_gids, token=settings.bearer_token()
    )
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(
        lambda app: _services(app, clock or now_ms, state, policies, schedule_clock or WallClock())
    )
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


def read_policies(settings: Settings) -> dict[str, Policy]:
    """The policies of the settings' file (none without one); PolicyFileError."""
    return {} if settings.policies is None else load(settings.policies)


async def _services(
    app: web.Application,
    clock: Callable[[], int],
    state: State | None,
    policies: dict[str, Policy],
    schedule_clock: Clock,
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
            await engine.record.housekeep()
            for run in await state.last_finished():
                metrics.last_run(
                    run["policy"], run["outcome"], run["finished_at_ms"], run["duration_ms"]
                )
            scheduler = Scheduler(
                policies,
                engine=engine,
                clock=schedule_clock,
                force_dry_run=settings.policies_dry_run,
                on_event=metrics.policy_fired,
            )
            document = build_document(registry)
            app[ENGINE] = engine
            app[SCHEDULER] = scheduler
            app[DISPATCHER] = Dispatcher(
                document,
                registry,
                Services(
                    engine,
                    document,
                    metrics,
                    scheduler,
                    policies_file=None if settings.policies is None else str(settings.policies),
                    stats_reuse_s=settings.stats_reuse,
                ),
                app[POLICY],
                max_batch=settings.max_batch,
                metrics=metrics,
                budget=app[BUDGET],
                lane_width=settings.peer_concurrency,
            )
            housekeeping = asyncio.create_task(_housekeeping(engine))
            if policies:
                scheduler.start()
            try:
                yield
            finally:
                await scheduler.stop()  # first: no run starts while the service stops
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
        await engine.record.housekeep()


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


class _Connection(Connection):
    """A connection with its own answer to a request it cannot parse.

    aiohttp answers a malformed request (a stray control character in a header, a
    line too long) with a text body quoting the offending input, and logs it at
    error with a traceback: the `Authorization` header could be in both. Here it
    is a JSON-RPC error body with a request id, logged as one warning line naming
    the kind of error only. This relies on `RequestHandler.handle_error` (called
    for every such request) and `web.Server`'s handler arguments, both pinned by
    a test (tests/integration/test_security.py).
    """

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


async def start_site(runner: web.AppRunner, sock: socket.socket) -> Listener:
    """Serve the runner's application on the bound socket `sock`, within the cap that
    the settings and the file-descriptor limit allow."""
    app = runner.app
    settings = app[SETTINGS]
    cap = connection_cap(settings.max_connections, settings.admin_reserve)
    gate = Gate(cap, settings.admin_reserve, app[POLICY], app[METRICS])
    site = Listener(runner, sock, gate, settings.listen_backlog, _Connection)
    await site.start()
    return site


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM, reloading on SIGHUP; the socket file is removed on
    the way out."""
    policies = read_policies(settings)  # a mistake here is told in one line (PolicyFileError)
    sock, inode = listen(settings)  # as is one here, nothing before it
    try:
        state = await open_state(settings)  # as is one here (StateUnusable)
    except BaseException:
        sock.close()
        remove_socket(settings.socket, inode)
        raise
    fd_limit(raise_soft=True)
    app = create_app(settings, state=state, policies=policies)
    runner = runner_for(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload(app))
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
        await app[SCHEDULER].stop()  # first: no policy run starts while the service stops
        remove_socket(settings.socket, inode)  # no new callers while the last ones finish
        app[ENGINE].stop()
        log.info("service_stopping", grace_s=settings.shutdown_grace)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        remove_socket(settings.socket, inode)
        await runner.cleanup()  # a cleanup cancelled by the end of the grace records itself
        sock.close()
        log.info("service_stopped")


def reload(app: web.Application) -> None:
    """SIGHUP (`systemctl reload`): read the token file and the policies file again. A
    file that cannot be used keeps what was loaded, and the log says why."""
    settings = app[SETTINGS]
    log.info("reload_requested")
    try:
        token = settings.bearer_token()
    except (OSError, UnicodeDecodeError) as exc:
        log.error("token_reload_failed", path=str(settings.token_file), error=type(exc).__name__)
    else:
        app[POLICY].token = token
    if settings.policies is None:
        return
    scheduler = app[SCHEDULER]
    try:
        policies = load(settings.policies)
    except PolicyFileError as exc:
        log.error("policies_reload_failed", error=str(exc), kept=sorted(scheduler.policies))
        return
    scheduler.reload(policies)
