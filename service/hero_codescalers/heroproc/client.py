"""The hero_proc client: JSON-RPC 2.0 over HTTP on a Unix socket (hero_proc_contract.md).

One `aiohttp.ClientSession` over a `UnixConnector` for the client's whole life,
a timeout on every call, bounded retries of idempotent calls after a transient
failure (tenacity: exponential backoff with jitter), and one method per method of
the contract. Answers are read by `answers.py`; many calls at once go through
the batch executor of `batches.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from ..errors import HeroProcError, HeroProcProtocolError, HeroProcUnavailable
from ..tuning import HERO_PROC_CONNECTIONS
from .answers import (
    ACTION,
    ACTIONS,
    CREATED_JOB,
    IDEMPOTENT,
    STATS,
    Action,
    HeroProcStats,
    JobSummary,
    job_summaries,
    parse,
    transient,
    unwrap,
)
from .batches import Batches, Call, Pacing, StopCheck

URL = "http://localhost/rpc"
_JSON = {"Content-Type": "application/json"}
MAX_LIMIT = 10_000  # the most jobs hero_proc lists in one page
FIRST_BACKOFF = 0.05  # seconds before the second try (and its jitter); doubling after


class HeroProcClient:
    """A hero_proc reached at `socket_path`; use as an async context manager."""

    def __init__(
        self,
        socket_path: Path,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        pacing: Pacing | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.attempts = attempts
        self.batches = Batches(self._post, self.call, pacing or Pacing())
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    @property
    def pacing(self) -> Pacing:
        return self.batches.pacing

    @property
    def batch_supported(self) -> bool | None:
        """Whether hero_proc takes batches, once the first batch told."""
        return self.batches.supported

    async def __aenter__(self) -> HeroProcClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.UnixConnector(
                path=str(self.socket_path), limit=HERO_PROC_CONNECTIONS
            )
            self._session = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # transport ---------------------------------------------------------------

    async def _post(self, payload: Any, timeout: float | None = None) -> Any:
        """POST one JSON-RPC payload; the parsed answer (None for an empty one)."""
        timeout = self.timeout if timeout is None else timeout
        if self._session is None:
            raise RuntimeError("HeroProcClient used before open()")
        socket = str(self.socket_path)
        try:
            async with (
                asyncio.timeout(timeout),
                self._session.post(URL, data=orjson.dumps(payload), headers=_JSON) as resp,
            ):
                status = resp.status
                body = await resp.read()
        except TimeoutError:
            raise HeroProcUnavailable(socket, f"no answer within {timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise HeroProcUnavailable(socket, _connect_reason(exc.os_error)) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            raise HeroProcUnavailable(socket, "connection dropped") from None
        except (aiohttp.ClientError, OSError):
            raise HeroProcUnavailable(socket, "connection failed") from None
        if status == 204 or not body:
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise HeroProcProtocolError(f"HTTP {status} with a body that is not JSON") from None

    async def _call_once(
        self, method: str, params: dict[str, Any] | None, timeout: float | None = None
    ) -> Any:
        request_id = next(self._ids)
        answer = await self._post(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}},
            timeout,
        )
        return unwrap(answer)

    def _retrying(self, tries: int, stop: StopCheck | None) -> AsyncRetrying:
        """Up to `tries` tries with exponential backoff and jitter between them, while the
        failure is transient; none once `stop` gives a reason."""

        def stopping(state: RetryCallState) -> bool:
            return state.attempt_number >= tries or (stop is not None and stop() is not None)

        return AsyncRetrying(
            stop=stopping,
            wait=wait_exponential_jitter(
                multiplier=2 * FIRST_BACKOFF, max=1.0, jitter=FIRST_BACKOFF
            ),
            retry=retry_if_exception(transient),
            reraise=True,
        )

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        attempts: int | None = None,
        stop: StopCheck | None = None,
    ) -> Any:
        """Call `method`; its result, or raise the typed error it answered.

        Idempotent methods are tried again after a transient failure (see `transient`),
        up to `attempts` tries in all (the client's own number by default), and not
        once `stop` gives a reason.
        """
        attempts = self.attempts if attempts is None else attempts
        try:
            return await self._call_once(method, params, timeout)
        except HeroProcError as exc:
            if method not in IDEMPOTENT or not transient(exc) or attempts < 2:
                raise
            if stop is not None and stop() is not None:
                raise
        # The first try failed transiently. tenacity takes the tries left, after a first
        # backoff. It stays out of the first try: it costs about 100 µs a call even when
        # nothing fails (without batches, 552 against 376 µs of CPU per deleted job).
        await asyncio.sleep(FIRST_BACKOFF * (1 + random.random()))  # noqa: S311 -- jitter
        retrying = self._retrying(attempts - 1, stop)
        return await retrying(self._call_once, method, params, timeout)

    async def call_many(self, calls: Sequence[Call], *, stop: StopCheck | None = None) -> list[Any]:
        """Each of `calls` (as JSON-RPC batches when hero_proc takes them): per call its
        result or the `Error` it ended with. See `batches.Batches.call_many`."""
        return await self.batches.call_many(calls, stop=stop)

    # the contract's methods --------------------------------------------------

    async def job_list(
        self,
        *,
        tag: str | None = None,
        status: str | None = None,
        action: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[JobSummary]:
        flt = _given(tag=tag, status=status, action=action, limit=limit, offset=offset)
        return job_summaries(await self._job_list(flt), "job.list")

    async def job_page(
        self, tag: str, *, limit: int, offset: int, status: str | None = None
    ) -> list[Any]:
        """One `job.list` page by tag as hero_proc answered it: a list, its items not
        checked (see `parse_job`): for a caller that checks what it uses."""
        flt = _given(tag=tag, status=status, limit=limit, offset=offset)
        return await self._job_list(flt)

    async def action_page(self, tag: str, *, limit: int, offset: int) -> list[Any]:
        """One `action.list` page by tag as hero_proc answered it, its items not checked."""
        result = await self.call("action.list", {"tag": tag, "limit": limit, "offset": offset})
        if not isinstance(result, list):
            raise HeroProcProtocolError("action.list answered a result of the wrong shape")
        return result

    async def _job_list(self, flt: dict[str, Any]) -> list[Any]:
        result = await self.call("job.list", {"filter": flt})
        if not isinstance(result, list):
            raise HeroProcProtocolError("job.list answered a result of the wrong shape")
        return result

    async def job_get(self, job_id: int) -> JobSummary:
        return job_summaries([await self.call("job.get", {"id": job_id})], "job.get")[0]

    async def job_create(
        self, action: str, *, tags: Sequence[str] = (), context: str | None = None
    ) -> int:
        params: dict[str, Any] = {"action": action, "tags": list(tags)}
        if context is not None:
            params["context"] = context
        result = await self.call("job.create", params)
        return parse(CREATED_JOB, result, "job.create").id

    async def job_delete(self, job_id: int, *, force: bool = False) -> None:
        await self.call("job.delete", {"id": job_id, "force": force})

    async def action_set(
        self, name: str, *, script: str, tags: Sequence[str], context: str | None = None
    ) -> None:
        params: dict[str, Any] = {"name": name, "spec": {"script": script, "tags": list(tags)}}
        if context is not None:
            params["context"] = context
        await self.call("action.set", params)

    async def action_get(self, name: str, *, context: str | None = None) -> Action:
        result = await self.call("action.get", action_params(name, context))
        return parse(ACTION, result, "action.get")

    async def action_list(
        self, *, tag: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> list[Action]:
        params = _given(tag=tag, limit=limit, offset=offset)
        return parse(ACTIONS, await self.call("action.list", params), "action.list")

    async def action_delete(self, name: str, *, context: str | None = None) -> None:
        await self.call("action.delete", action_params(name, context))

    async def stats(
        self, *, timeout: float | None = None, attempts: int | None = None
    ) -> HeroProcStats:
        result = await self.call("stats", {}, timeout=timeout, attempts=attempts)
        return parse(STATS, result, "stats")


def action_params(name: str, context: str | None) -> dict[str, Any]:
    """The params that name one action: its name, and its context when it has one."""
    return {"name": name} if context is None else {"name": name, "context": context}


def _given(**params: Any) -> dict[str, Any]:
    """The params that were given (not None)."""
    return {k: v for k, v in params.items() if v is not None}


def _connect_reason(err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "socket not found"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, PermissionError):
        return "permission denied"
    return "cannot connect"
