"""JSON-RPC 2.0 framing and dispatch, with methods registered from the OpenRPC document.

The framing (parse, per-item validation of requests, batch assembly) is done
here, so that a batch with one invalid item gets one error for that item and
answers for the others; valid items are dispatched by jsonrpcserver with an
explicit method table and a per-request context. Each method wrapper checks
admin rights, validates params with the method's pydantic model and maps errors
to codes: an `Error` to its own code, anything else to -32603 "Internal error"
with a request id (the detail goes to the log, never to the caller).

Calls, not HTTP requests, count against the in-flight budget: a batch takes one
slot per call, and its calls beyond the budget each get -32012 in place. A few
slots are kept for admins (by the same rule as the admin check), so that an
admin is served while others hold the rest. The calls of one peer (uid) that
is not an admin run at most `lane_width` at a time; the others of its batches
wait their turn. So one peer's flood keeps the event loop's queue short and
another caller's call is not stuck behind hundreds of its calls.

Input reflected in an answer is bounded: an unknown method name is cut to
`MAX_NAME` characters, field names too. The params of a method that changes
hero_proc are checked for duplicate keys (JSON leaves their meaning open; the
parser would keep the last one silently): -32602, never "last wins".
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from jsonrpcserver import Error as ErrorResult
from jsonrpcserver import Success
from jsonrpcserver.async_dispatcher import dispatch_request
from jsonrpcserver.dispatcher import create_request, to_response
from jsonrpcserver.response import to_serializable_one
from jsonrpcserver.sentinels import NOID
from pydantic import BaseModel, ValidationError

from . import errors
from .auth import AdminPolicy, Peer
from .logs import CALL
from .metrics import Metrics
from .models import Params

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a method knows of its call: the services, the peer, the request id."""

    services: Any
    peer: Peer
    request_id: str
    bearer: str | None = field(default=None, repr=False)


Handler = Callable[[CallContext, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Example:
    """A named params → result pairing for the OpenRPC document."""

    name: str
    params: dict[str, Any]
    result: Any
    summary: str = ""
    partial: bool = False


@dataclass(frozen=True)
class MethodDef:
    name: str
    summary: str
    description: str
    handler: Handler
    params: type[Params]
    result: type[BaseModel] | None
    errors: tuple[int, ...]
    admin: bool
    examples: tuple[Example, ...]
    mutates: bool = False


@dataclass
class Registry:
    """Method definitions, in declaration order."""

    methods: dict[str, MethodDef] = field(default_factory=dict)

    def method(
        self,
        name: str,
        *,
        summary: str,
        admin: bool = False,
        mutates: bool = False,
        errors: tuple[int, ...] = (),
        examples: tuple[Example, ...] = (),
    ) -> Callable[[Handler], Handler]:
        """Register an `async def handler(ctx, params: Model) -> Result` as `name`;
        `mutates` when it changes hero_proc (its params get the duplicate-key check)."""

        def register(handler: Handler) -> Handler:
            hints = typing.get_type_hints(handler)
            result = hints.get("return")
            self.methods[name] = MethodDef(
                name=name,
                summary=summary,
                description=inspect.cleandoc(handler.__doc__ or summary),
                handler=handler,
                params=hints["params"],
                result=result
                if isinstance(result, type) and issubclass(result, BaseModel)
                else None,
                errors=errors,
                admin=admin,
                examples=examples,
                mutates=mutates,
            )
            return handler

        return register


MAX_REASON = 500
MAX_NAME = 64


def clip(text: str, limit: int = MAX_NAME) -> str:
    """`text` cut to `limit` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def readable(exc: ValidationError) -> str:
    """A pydantic error as `field: reason` parts, short even for deeply nested input."""
    parts = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(clip(str(p)) for p in err["loc"]) or "params"
        if len(where) > MAX_NAME * 2:
            where = f"{where[:MAX_NAME]}…{where[-MAX_NAME // 2 :]}"
        if err["type"] == "extra_forbidden":
            reason = "unknown parameter"
        elif err["type"] == "missing":
            reason = "required"
        else:
            reason = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {reason}")
    text = "; ".join(parts)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


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
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return error_answer(errors.PARSE_ERROR, _parse_reason(body, exc))
        if isinstance(payload, list):
            if not payload:
                return error_answer(errors.INVALID_REQUEST, "empty batch")
            if len(payload) > self.max_batch:
                return error_answer(errors.INVALID_REQUEST, f"batch larger than {self.max_batch}")
            items = payload
        else:
            items = [payload]
        problems = [self._check(item) for item in items]
        if any(
            p is None and item["method"] in self._mutating
            for item, p in zip(items, problems, strict=True)
        ):
            _check_duplicates(body, items, problems, self._mutating)
        wanted = problems.count(None)
        admin = self.policy.grants(peer, bearer)
        granted = self.budget.take(wanted, admin) if wanted else 0
        try:
            if granted < wanted:
                self._refuse_beyond(items, problems, granted)
            valid = [item for item, problem in zip(items, problems, strict=True) if problem is None]
            context = CallContext(self.services, peer, request_id, bearer)
            answers: Iterator[Any]
            if not valid:
                answers = iter([])
            elif admin:
                answers = iter(await self._run(valid, context))
            else:
                async with self.lanes.lane(peer.uid) as lane:
                    answers = iter(await self._run_in(lane, valid, context))
        finally:
            self.budget.give(granted)
        out = [
            problem if problem is not None else next(answers)
            for item, problem in zip(items, problems, strict=True)
            if problem is not _DROPPED and (problem is not None or "id" in item)
        ]
        if isinstance(payload, list):
            return out or None
        return out[0] if out else None

    def _check(self, item: Any) -> dict[str, Any] | None:
        """An error answer for an item that is not a request of a known method, else None."""
        problem = _check_request(item)
        if problem is None and item["method"] not in self._table:
            if "id" not in item:
                return _DROPPED
            return error_answer(errors.METHOD_NOT_FOUND, clip(item["method"]), item["id"])
        return problem

    def _refuse_beyond(
        self, items: list[Any], problems: list[dict[str, Any] | None], granted: int
    ) -> None:
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
                else _DROPPED
            )
        self.metrics.calls_refused_busy.inc(refused)
        self.metrics.busy_log.note(in_flight=self.budget.used)

    async def _run(self, valid: list[dict[str, Any]], context: CallContext) -> list[Any]:
        """Dispatch valid request objects with jsonrpcserver (method lookup, arguments,
        call, error and response objects); their answers, notifications left out.

        Its request-level entry point is bypassed: the framing is done here already,
        and its batch machinery would make a task of every request, a single one too.
        """
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
        request, result = await dispatch_request(self._table, context, create_request(item))
        if request.id is NOID:
            return None
        return to_serializable_one(to_response(request, result))

    def _wrap(self, spec: MethodDef) -> Callable[..., Awaitable[Any]]:
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

        # `ctx` is positional-only: a param named "ctx" is then an unknown parameter
        # like any other, not a clash with the context argument.
        async def call(ctx: CallContext, /, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            peer = ctx.peer
            # Every line logged during the call carries these (bound without a context
            # manager: this runs on every call).
            token = CALL.set(
                {
                    "request_id": ctx.request_id,
                    "method": spec.name,
                    "peer_uid": peer.uid,
                    "peer_pid": peer.pid,
                }
            )
            try:
                if spec.admin:
                    policy.require_admin(peer, spec.name, ctx.bearer)
                if len(args) > len(names):
                    raise errors.InvalidParams(f"params: at most {len(names)} positional params")
                raw = dict(zip(names, args, strict=False)) if args else kwargs
                try:
                    params = spec.params.model_validate(raw)
                except ValidationError as exc:
                    raise errors.InvalidParams(readable(exc)) from None
                result = await spec.handler(ctx, params)
            except errors.Error as exc:
                done(t0, exc.code)
                data = exc.public_data()
                if exc.code == errors.INTERNAL_ERROR:  # a fault that still answers its data
                    data = {"request_id": ctx.request_id, **(data or {})}
                return ErrorResult(exc.code, exc.message, *(() if data is None else (data,)))
            except Exception:
                log.exception("rpc_internal_error")
                done(t0, errors.INTERNAL_ERROR)
                return ErrorResult(
                    errors.INTERNAL_ERROR, "Internal error", {"request_id": ctx.request_id}
                )
            else:
                done(t0, None)
                if isinstance(result, BaseModel):
                    return Success(result.model_dump(mode="json"))
                return Success(result)
            finally:
                CALL.reset(token)

        # jsonrpcserver checks each call's arguments against the method's signature:
        # give it ready-made, instead of inspecting the function on every call.
        call.__signature__ = inspect.signature(call)  # type: ignore[attr-defined]
        return call


class Lanes:
    """One semaphore of `width` per peer uid, kept while some request of it runs."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._lanes: dict[int | None, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def lane(self, uid: int | None) -> AsyncIterator[asyncio.Semaphore]:
        entry = self._lanes.get(uid)
        if entry is None:
            entry = self._lanes[uid] = (asyncio.Semaphore(self.width), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            yield semaphore
        finally:
            users[0] -= 1
            if not users[0]:
                del self._lanes[uid]


@dataclass
class Budget:
    """Calls running now against the cap; the last `reserve` slots are for admins."""

    limit: int
    reserve: int
    used: int = 0

    def free(self, admin: bool) -> int:
        cap = self.limit if admin else self.limit - self.reserve
        return max(0, cap - self.used)

    def take(self, wanted: int, admin: bool) -> int:
        """Take up to `wanted` slots; how many were granted."""
        granted = min(wanted, self.free(admin))
        self.used += granted
        return granted

    def give(self, count: int) -> None:
        self.used -= count


# A notification to a method that does not exist, or refused: no answer is sent.
_DROPPED: dict[str, Any] = {}


class _Pairs(dict[str, Any]):
    """A JSON object that also knows its keys given more than once."""

    duplicates: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    obj = _Pairs(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = []
        for key, _ in pairs:
            if key in seen:
                twice.append(key)
            seen.add(key)
        obj.duplicates = tuple(twice)
    return obj


def _duplicate(value: Any, path: str) -> str | None:
    """The path of the first key given twice inside `value`, or None."""
    if isinstance(value, _Pairs):
        if value.duplicates:
            return f"{path}.{clip(value.duplicates[0])}" if path else clip(value.duplicates[0])
        for key, item in value.items():
            found = _duplicate(item, f"{path}.{clip(key)}" if path else clip(key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _duplicate(item, f"{path}.{index}" if path else str(index))
            if found:
                return found
    return None


def _check_duplicates(
    body: bytes,
    items: list[Any],
    problems: list[dict[str, Any] | None],
    mutating: frozenset[str],
) -> None:
    """-32602 for each call of a method in `mutating` whose params give a key twice.

    orjson keeps the last of duplicate keys without a word, so the body is parsed
    again, by the standard library with a hook that sees every key; only when a
    call of such a method is in it (they are rare and slow; the cost is measured
    by `make bench-rpc`).
    """
    try:
        again = json.loads(body, object_pairs_hook=_pairs)
    except (ValueError, RecursionError):
        again = None
    whole = again if isinstance(again, list) else [again]
    for index, item in enumerate(items):
        if problems[index] is not None or item["method"] not in mutating:
            continue
        if again is None or len(whole) != len(items) or not isinstance(whole[index], dict):
            reason = "params: nested too deeply to be checked"
        else:
            where = _duplicate(whole[index].get("params"), "")
            if where is None:
                continue
            reason = f"{where}: duplicate key"
        problems[index] = (
            error_answer(errors.INVALID_PARAMS, reason, item["id"]) if "id" in item else _DROPPED
        )


def error_answer(code: int, data: Any = None, id_: Any = None) -> dict[str, Any]:
    """A JSON-RPC error response with the documented message of `code`."""
    err: dict[str, Any] = {"code": code, "message": errors.DOCUMENTED[code][1]}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": id_}


def _parse_reason(body: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not valid UTF-8"
    if "depth" in exc.msg or "recursion" in exc.msg:
        return "JSON nested too deeply"
    return f"invalid JSON at line {exc.lineno} column {exc.colno}"


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int | float) and not isinstance(value, bool))
    )


def _check_request(item: Any) -> dict[str, Any] | None:
    """An Invalid Request answer for `item`, or None when it is a request object."""
    if not isinstance(item, dict):
        return error_answer(errors.INVALID_REQUEST, "not a request object")
    id_ = item.get("id")
    answer_id = id_ if _valid_id(id_) else None
    if not _valid_id(id_):
        reason = "id must be a string, a number or null"
    elif item.get("jsonrpc") != "2.0":
        reason = 'jsonrpc must be "2.0"'
    elif not isinstance(item.get("method"), str):
        reason = "method must be a string"
    elif "params" in item and not isinstance(item["params"], dict | list):
        reason = "params must be an object or an array"
    else:
        return None
    return error_answer(errors.INVALID_REQUEST, reason, answer_id)
