"""The method registry: what an RPC method is, and the `Example` type of the OpenRPC document.

A method is an `async def handler(ctx: CallContext, params: Model) -> Result`
registered under its JSON-RPC name with `@registry.method(...)` (`methods.py`
fills the service's one `Registry`). Its `MethodDef` keeps what the rest of the
service reads from it: `openrpc.py` builds the document (params and result
schemas, errors, examples), `rpc.Dispatcher` calls the handler (admin check,
params model, whether its params get the duplicate-key check). Nothing here
knows JSON-RPC's wire format.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .auth import Peer
from .models import Params


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
    """A registered method: its handler and what the document says of it."""

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
