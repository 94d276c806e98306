"""JSON-RPC dispatch: a request body's calls to the methods of the OpenRPC document.

`Dispatcher.dispatch` answers one request body: `framing` parses it and checks
each item, `admission` grants its calls their slots of the in-flight budget
(and runs a non-admin's calls in its peer's lane), and each valid call is
dispatched by jsonrpcserver with an explicit method table and a per-call
context. The table holds the registry's handlers, each wrapped: the wrapper
checks admin rights, validates params with the method's pydantic model, logs
one `rpc_call` line, counts the call in the metrics and maps errors to codes:
an `Error` to its own code, anything else to -32603 "Internal error" with a
request id (the detail goes to the log, never to the caller).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog

# Documented API of jsonrpcserver (its `__all__`): the result types a method returns.
from jsonrpcserver import Error, Success

# Outside jsonrpcserver's documented API, and pinned by
# tests/unit/test_jsonrpcserver_contract.py for the range pyproject.toml allows
# (>=5.0.9,<6): an upgrade that changes one of them fails there, not in production.
# Its documented entry point (`async_dispatch_to_serializable`) validates the
# request again and runs every call through its batch machinery (a task each),
# which framing.py has made needless: through it the whole path cost 13-16% more
# CPU per call (make bench-rpc). So each call goes through the steps it is made of.
from jsonrpcserver.async_dispatcher import dispatch_request
from jsonrpcserver.dispatcher import create_request, to_response
from jsonrpcserver.response import to_serializable_one
from pydantic import BaseModel, ValidationError

from . import errors, framing
from .admission import Budget, Lanes
from .auth import AdminPolicy, Peer
from .framing import DROPPED, Parsed, error_answer
from .logs import CALL
from .metrics import Metrics
from .registry import CallContext, MethodDef, Registry

log = structlog.get_logger(__name__)

Problems = list[dict[str, Any] | None]


class Dispatcher:
    """Answers JSON-RPC request bodies for the methods of an OpenRPC document."""

    def __init__(
        self,
        document: Mapping[str, Any],
        registry: Registry,
        services: Any,
        policy: AdminPolicy,
        *,
        max_batch: int = 100,
        metrics: Metrics | None = None,
        budget: Budget | None = None,
        lane_width: int = 4,
    ) -> None:
        declared = [m["name"] for m in document["methods"]]
        undeclared = set(registry.methods) - set(declared)
        unhandled = set(declared) - set(registry.methods)
        if undeclared or unhandled:
            raise RuntimeError(
                f"OpenRPC document and handlers differ: no handler for {sorted(unhandled)}, "
                f"not in the document: {sorted(undeclared)}"
            )
        self.services = services
        self.policy = policy
        self.max_batch = max_batch
        self.metrics = metrics or Metrics()
        self.budget = budget or Budget(256, 0)
        self.lanes = Lanes(lane_width)
        self._table = {name: self._wrap(registry.methods[name]) for name in declared}
        self._mutating = frozenset(n for n, m in registry.methods.items() if m.mutates)

    def busy(self, peer: Peer, bearer: str | None) -> bool:
        """Whether no call of this caller could start now (before its body is read)."""
        return self.budget.free(self.policy.grants(peer, bearer)) == 0

    async def dispatch(
        self, body: bytes, peer: Peer, request_id: str, *, bearer: str | None = None
    ) -> Any:
        """The JSON-able answer to `body`, or None when nothing is to be sent back."""
        parsed = framing.parse(body, self.max_batch)
        if not isinstance(parsed, Parsed):
            return parsed  # the body refused as a whole
        problems = self._problems(body, parsed)
        wanted = problems.count(None)
        admin = self.policy.grants(peer, bearer)
        granted = self.budget.take(wanted, admin) if wanted else 0
        try:
            if granted < wanted:
                self._refuse_beyond(parsed.items, problems, granted)
            valid = [
                item
                for item, problem in zip(parsed.items, problems, strict=True)
                if problem is None
            ]
            context = CallContext(self.services, peer, request_id, bearer)
            answers: Iterable[Any]
            if not valid:
                answers = ()
            elif admin:  # all at once
                answers = await self._run(valid, context)
            else:  # in the lane of the peer's uid
                async with self.lanes.lane(peer.uid) as lane:
                    answers = await self._run_in(lane, valid, context)
        finally:
            self.budget.give(granted)
        return framing.assemble(parsed, problems, answers)

    def _problems(self, body: bytes, parsed: Parsed) -> Problems:
        """For each item: its error answer, DROPPED, or None when it is a call to make."""
        problems = [self._check(item) for item in parsed.items]
        if any(
            p is None and item["method"] in self._mutating
            for item, p in zip(parsed.items, problems, strict=True)
        ):
            framing.check_duplicates(body, parsed, problems, self._mutating)
        return problems

    def _check(self, item: Any) -> dict[str, Any] | None:
        """An error answer for an item that is not a request of a known method, else None."""
        problem = framing.check_request(item)
        if problem is None and item["method"] not in self._table:
            if "id" not in item:
                return DROPPED
            return error_answer(errors.METHOD_NOT_FOUND, framing.clip(item["method"]), item["id"])
        return problem

    def _refuse_beyond(self, items: list[Any], problems: Problems, granted: int) -> None:
        """Calls past the `granted` first ones get -32012 (notifications are dropped)."""
        refused = 0
        for index, (item, problem) in enumerate(zip(items, problems, strict=True)):
            if problem is not None:
                continue
            if granted:
                granted -= 1
                continue
            refused += 1
            problems[index] = (
                error_answer(
                    errors.SERVER_BUSY,
                    f"more than {self.budget.limit} calls in flight",
                    item["id"],
                )
                if "id" in item
                else DROPPED
            )
        self.metrics.calls_refused_busy.inc(refused)
        self.metrics.busy_log.note(in_flight=self.budget.used)

    async def _run(self, valid: list[dict[str, Any]], context: CallContext) -> list[Any]:
        """Dispatch the calls `valid`, all at once; their answers, notifications left out."""
        if len(valid) == 1:
            answers = [await self._one(valid[0], context)]
        else:
            answers = await asyncio.gather(*(self._one(item, context) for item in valid))
        return [answer for answer in answers if answer is not None]

    async def _run_in(
        self, lane: asyncio.Semaphore, valid: list[dict[str, Any]], context: CallContext
    ) -> list[Any]:
        """As `_run`, at most the lane's width of calls at a time (shared with the peer's
        other requests); a few workers take the calls in turn, not a task per call."""
        answers: list[Any] = [None] * len(valid)
        todo = iter(enumerate(valid))

        async def worker() -> None:
            for index, item in todo:
                async with lane:
                    answers[index] = await self._one(item, context)
                # A call that needs no I/O (a reused stats, a ping) never gives the loop
                # back: let others' work run between two calls of a batch.
                await asyncio.sleep(0)

        workers = min(self.lanes.width, len(valid))
        if workers == 1:
            await worker()
        else:
            await asyncio.gather(*(worker() for _ in range(workers)))
        return [answer for answer in answers if answer is not None]

    async def _one(self, item: dict[str, Any], context: CallContext) -> Any:
        """One call through jsonrpcserver (method lookup, arguments, call, response object):
        its answer, or None for a notification."""
        request, result = await dispatch_request(self._table, context, create_request(item))
        if "id" not in item:
            return None
        return to_serializable_one(to_response(request, result))

    def _wrap(self, spec: MethodDef) -> Callable[..., Awaitable[Any]]:
        """The method table's entry for `spec`: called by jsonrpcserver with the context
        and the call's params (by position or by name), it answers a `Success` or an
        `Error`."""
        names = tuple(spec.params.model_fields)
        policy = self.policy
        observe = self.metrics.for_method(spec.name)

        def done(t0: float, code: int | None) -> None:
            seconds = time.perf_counter() - t0
            log.info(
                "rpc_call",
                outcome="ok" if code is None else "error",
                code=code,
                duration_ms=round(seconds * 1000, 3),
            )
            observe(code, seconds)

        def params_of(ctx: CallContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            """The call's params as the method's model, once the caller may call it."""
            if spec.admin:
                policy.require_admin(ctx.peer, spec.name, ctx.bearer)
            if len(args) > len(names):
                raise errors.InvalidParams(f"params: at most {len(names)} positional params")
            raw = dict(zip(names, args, strict=False)) if args else kwargs
            try:
                return spec.params.model_validate(raw)
            except ValidationError as exc:
                raise errors.InvalidParams(framing.readable(exc)) from None

        # `ctx` is positional-only: a param named "ctx" is then an unknown parameter
        # like any other, not a clash with the context argument.
        async def call(ctx: CallContext, /, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            # Every line logged during the call carries these (see logs.CALL).
            token = CALL.set(
                {
                    "request_id": ctx.request_id,
                    "method": spec.name,
                    "peer_uid": ctx.peer.uid,
                    "peer_pid": ctx.peer.pid,
                }
            )
            try:
                result = await spec.handler(ctx, params_of(ctx, args, kwargs))
                if isinstance(result, BaseModel):
                    result = result.model_dump(mode="json")
            except errors.Error as exc:
                done(t0, exc.code)
                return _error(exc, ctx.request_id)
            except Exception:
                log.exception("rpc_internal_error")
                done(t0, errors.INTERNAL_ERROR)
                return Error(
                    errors.INTERNAL_ERROR, "Internal error", {"request_id": ctx.request_id}
                )
            else:
                done(t0, None)
                return Success(result)
            finally:
                CALL.reset(token)

        # jsonrpcserver checks each call's arguments against the method's signature:
        # give it ready-made, instead of inspecting the function on every call.
        call.__signature__ = inspect.signature(call)  # type: ignore[attr-defined]
        return call


def _error(exc: errors.Error, request_id: str) -> Any:
    """The `Error` result of `exc`: its code, message and public data (with the request
    id for an internal error that still answers its data)."""
    data = exc.public_data()
    if exc.code == errors.INTERNAL_ERROR:
        data = {"request_id": request_id, **(data or {})}
    return Error(exc.code, exc.message, *(() if data is None else (data,)))
