"""JSON-RPC 2.0 framing and dispatch, with methods registered from the OpenRPC document.

The framing (parse, per-item validation of requests, batch assembly) is done
here, so that a batch with one invalid item gets one error for that item and
answers for the others; valid items are dispatched by jsonrpcserver with an
explicit method table and a per-request context. Each method wrapper checks
admin rights, validates params with the method's pydantic model and maps errors
to codes: an `Error` to its own code, anything else to -32603 "Internal error"
with a request id (the detail goes to the log, never to the caller).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import typing
from collections.abc import Awaitable, Callable, Mapping
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
        errors: tuple[int, ...] = (),
        examples: tuple[Example, ...] = (),
    ) -> Callable[[Handler], Handler]:
        """Register an `async def handler(ctx, params: Model) -> Result` as `name`."""

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
            )
            return handler

        return register


MAX_REASON = 500


def readable(exc: ValidationError) -> str:
    """A pydantic error as `field: reason` parts, short even for deeply nested input."""
    parts = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "params"
        if len(where) > 60:
            where = f"{where[:30]}…{where[-20:]}"
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
        self._table = {name: self._wrap(registry.methods[name]) for name in declared}

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
        problems = [_check_request(item) for item in items]
        valid = [item for item, problem in zip(items, problems, strict=True) if problem is None]
        context = CallContext(self.services, peer, request_id, bearer)
        answers = iter(await self._run(valid, context) if valid else [])
        out = []
        for item, problem in zip(items, problems, strict=True):
            if problem is not None:
                out.append(problem)
            elif "id" in item:
                out.append(next(answers))
        if isinstance(payload, list):
            return out or None
        return out[0] if out else None

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

        async def call(ctx: CallContext, *args: Any, **kwargs: Any) -> Any:
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
