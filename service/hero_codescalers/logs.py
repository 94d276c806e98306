"""structlog configuration, done once by the entry point.

JSON lines when stderr is not a terminal (or when asked), readable console
output otherwise; the standard library's loggers (aiohttp, jsonrpcserver) go
through the same renderer. What `CALL` holds (request id, method, peer uid/pid)
lands on every line logged during the call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal

import orjson
import structlog

log = structlog.get_logger(__name__)

# Recurring problems (out of descriptors, over the connection cap, server busy) are
# logged at most this often.
PROBLEM_LOG_INTERVAL = 10.0

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


# What every line logged during an RPC call carries (request id, method, peer uid and
# pid): one context variable holding a dict, set once per call and merged by
# `merge_call`. structlog's own helpers (`structlog.contextvars`: a variable per key,
# bound and reset per call, and every context variable scanned for them on every
# line) cost 5-7% more of the service's CPU per call on `make bench-rpc`, where one
# line is logged per call: this one variable does the same job.
CALL: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "hero_call", default=None
)


def merge_call(
    logger: Any, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    call = CALL.get()
    if call:
        for key, value in call.items():
            event.setdefault(key, value)
    return event


def configure(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Route structlog and stdlib logging to stderr at `level`, rendered as `fmt`.

    The service's own lines go straight from structlog to stderr (JSON by orjson,
    written as bytes: the cheap path, taken once per RPC call); lines of other
    libraries (aiohttp, asyncio, jsonrpcserver) go through stdlib logging and the
    same processors, so every line looks alike.
    """
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.typing.Processor] = [
        merge_call,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
            wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[*shared, _console()],
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
            cache_logger_on_first_use=True,
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info
            if as_json
            else structlog.processors.StackInfoRenderer(),
            structlog.processors.JSONRenderer() if as_json else _console(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class Throttled:
    """A warning about a recurring problem, logged at most once per `interval` seconds
    with the number of times it happened (the first at once, the rest summed up)."""

    def __init__(self, event: str, interval: float = PROBLEM_LOG_INTERVAL) -> None:
        self.event = event
        self.interval = interval
        self.count = 0
        self.total = 0
        self._last = float("-inf")
        self._flush: asyncio.TimerHandle | None = None
        self._fields: dict[str, Any] = {}

    def note(self, **fields: Any) -> None:
        self.count += 1
        self.total += 1
        self._fields = fields
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._emit()
        elif self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_at(loop.time() + self.interval - (now - self._last), self._emit)

    def _emit(self) -> None:
        self._flush = None
        if self.count:
            log.warning(self.event, count=self.count, interval_s=self.interval, **self._fields)
            self.count = 0
            self._last = time.monotonic()

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        self._emit()


def _console() -> structlog.dev.ConsoleRenderer:
    """The console renderer, tracebacks as plain text: structlog's default once rich is
    installed (the CLI's tables) would print every frame's local variables, which may
    hold a caller's request or the relay token."""
    return structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
