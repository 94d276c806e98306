"""hero_proc's JSON-RPC 2.0 surface over HTTP on a Unix socket, with fault injection."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ..unixsock import bind_unix, remove_socket
from .seed import seed_population
from .store import Faults, RpcFault, Store

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603
MAX_BODY = 64 * 1024 * 1024

Hook = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class DropConnection(Exception):
    """Raised to close the connection without an answer (a `drop_rate` fault)."""


def _error(code: int, message: str, id_: Any, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": id_}


def _rate(rates: dict[str, float], method: str) -> float:
    """The rate for `method`; "*" applies to every method without its own."""
    return rates.get(method, rates.get("*", 0.0))


class Simulator:
    """A hero_proc: a `Store` behind JSON-RPC, with faults and hooks for tests."""

    def __init__(self, store: Store | None = None, *, rng_seed: int = 0) -> None:
        self.store = store or Store()
        self.rng = random.Random(rng_seed)
        self.calls: Counter[str] = Counter()
        self.hooks: list[Hook] = []
        self.socket_path: Path | None = None
        self.crashed = False
        s = self.store
        self.methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "action.set": s.action_set,
            "action.get": s.action_get,
            "action.list": s.action_list,
            "action.delete": s.action_delete,
            "job.create": s.job_create,
            "job.get": s.job_get,
            "job.list": s.job_list,
            "job.cancel": s.job_cancel,
            "job.delete": s.job_delete,
            "stats": s.stats,
            "rpc.discover": self._discover,
            "sim.faults": self._faults,
            "sim.reset": self._reset,
            "sim.seed": self._seed,
        }

    @property
    def faults(self) -> Faults:
        return self.store.faults

    # JSON-RPC ----------------------------------------------------------------

    async def handle(self, payload: Any) -> Any:
        """The answer to a parsed request body; None when nothing is to be sent."""
        if isinstance(payload, list):
            if not self.faults.batch:
                return _error(
                    INVALID_REQUEST, "Invalid Request", None, "batch requests are not supported"
                )
            if not payload:
                return _error(INVALID_REQUEST, "Invalid Request", None, "empty batch")
            answers = [await self._call(item) for item in payload]
            return [a for a in answers if a is not None] or None
        return await self._call(payload)

    async def _call(self, item: Any) -> dict[str, Any] | None:
        if (
            not isinstance(item, dict)
            or item.get("jsonrpc") != "2.0"
            or not isinstance(item.get("method"), str)
        ):
            return _error(INVALID_REQUEST, "Invalid Request", None)
        method: str = item["method"]
        id_ = item.get("id")
        notification = "id" not in item
        params = item.get("params", {})
        if not isinstance(params, dict):
            return _error(-32602, "Invalid params", id_, "params must be an object")
        self.calls[method] += 1
        for hook in self.hooks:
            pending = hook(method, params)
            if pending is not None:
                await pending
        faults = self.faults
        if self.crashed:
            raise DropConnection
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.fail_rate and self.rng.random() < _rate(faults.fail_rate, method):
            return _error(INTERNAL_ERROR, "Internal error", id_, "injected failure")
        fn = self.methods.get(method)
        if fn is None:
            return (
                None if notification else _error(METHOD_NOT_FOUND, "Method not found", id_, method)
            )
        try:
            result = fn(params)
        except RpcFault as fault:
            answer = _error(fault.code, fault.message, id_, fault.data)
        else:
            answer = {"jsonrpc": "2.0", "result": result, "id": id_}
        # A dropped connection loses the answer, not the effect: the call was carried out.
        if faults.drop_rate and self.rng.random() < _rate(faults.drop_rate, method):
            raise DropConnection
        return None if notification else answer

    def crash(self) -> None:
        """Die as a killed process would: the socket file goes, every connection drops."""
        self.crashed = True
        if self.socket_path is not None:
            remove_socket(self.socket_path)

    # simulator-only methods --------------------------------------------------

    def _faults(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            latency = float(params.get("latency_ms", 0.0))
            fail = {str(k): float(v) for k, v in (params.get("fail_rate") or {}).items()}
            drop = {str(k): float(v) for k, v in (params.get("drop_rate") or {}).items()}
            batch = params.get("batch", True)
            in_use = frozenset(str(n) for n in params.get("in_use_actions") or [])
        except (TypeError, ValueError, AttributeError) as exc:
            raise RpcFault(-32602, "Invalid params", str(exc)) from None
        if latency < 0 or not isinstance(batch, bool):
            raise RpcFault(-32602, "Invalid params", "latency_ms >= 0 and batch: bool")
        self.store.faults = Faults(latency, fail or None, drop or None, batch, in_use)
        return {"ok": True}

    def _reset(self, params: dict[str, Any]) -> dict[str, Any]:
        self.store.reset()
        self.calls.clear()
        return {"ok": True}

    def _seed(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            counts = {k: int(params.get(k, 0)) for k in ("codescaler", "unrelated", "lookalike")}
            rng_seed = int(params.get("seed", 0))
            now = params.get("now_ms")
        except (TypeError, ValueError) as exc:
            raise RpcFault(-32602, "Invalid params", str(exc)) from None
        if min(counts.values()) < 0:
            raise RpcFault(-32602, "Invalid params", "counts must be >= 0")
        pop = seed_population(self.store, **counts, rng_seed=rng_seed, now=now)
        gc.freeze()  # the seeded store is long-lived: keep the cyclic collector off it
        return {
            "codescaler": pop.codescaler,
            "unrelated": pop.unrelated,
            "lookalike": pop.lookalike,
        }

    def _discover(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "openrpc": "1.3.2",
            "info": {"title": "hero_proc (simulator)", "version": "0.1.0"},
            "methods": [
                {"name": name, "params": [], "result": {"name": "result", "schema": {}}}
                for name in self.methods
            ],
        }

    # HTTP --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/rpc", self._http)
        return app

    async def _http(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer: Any = _error(PARSE_ERROR, "Parse error", None)
        else:
            try:
                answer = await self.handle(payload)
            except DropConnection:
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError from None
        if answer is None:
            return web.Response(status=204)
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    @contextlib.asynccontextmanager
    async def serve(self, path: Path, mode: int = 0o660) -> AsyncIterator[Simulator]:
        """Serve on the Unix socket `path` until the block exits."""
        sock, inode = bind_unix(path, mode)
        self.socket_path = path
        # A simulator need not drain: calls still in flight (a test's hung hook) are cancelled.
        runner = web.AppRunner(
            self.app(), handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            yield self
        finally:
            await runner.cleanup()
            sock.close()
            remove_socket(path, inode)
