"""The hero_proc client: JSON-RPC 2.0 over HTTP on a Unix socket (hero_proc_contract.md).

One `aiohttp.ClientSession` over a `UnixConnector` for the client's whole life,
a timeout on every call, and hero_proc's answers turned into records or into
the typed errors of `errors.py`. Tolerant in what it accepts: extra fields are
ignored and `null` tags read as no tags.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NamedTuple, TypeVar

import aiohttp
import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from .errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    QUOTE_LENGTH,
    HeroProcError,
    HeroProcProtocolError,
    HeroProcRpcError,
    HeroProcUnavailable,
    NotAttempted,
    quote,
    upstream_error,
)

URL = "http://localhost/rpc"
_JSON = {"Content-Type": "application/json"}
MAX_LIMIT = 10_000
MAX_ID = 2**63 - 1  # job ids are positive and fit a signed 64-bit integer

# Asked before each call is sent: a reason to send no more (the run is stopping), or None.
StopCheck = Callable[[], str | None]

Tags = Annotated[list[str], BeforeValidator(lambda v: [] if v is None else v)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class JobSummary(NamedTuple):
    """A job as `job.list` and `job.get` return it (parsed without pydantic: it is the
    hot path of a cleanup)."""

    id: int
    action_id: str
    context: str | None
    tags: list[str]
    status: str | None
    created_at_ms: int | None
    finished_at_ms: int | None


def _int_or_none(value: Any) -> int | None:
    return value if type(value) is int else None


def _str_or_none(value: Any) -> str | None:
    return value if type(value) is str else None


def valid_id(value: Any) -> bool:
    """A job id as the contract has it: an integer (not a bool), positive, 64-bit."""
    return type(value) is int and 0 < value <= MAX_ID


def valid_tags(tags: Any) -> bool:
    """A job's tags as the contract has them: null, or a list of strings."""
    if tags is None:
        return True
    if type(tags) is not list:
        return False
    try:
        "".join(tags)  # a TypeError at the first item that is not a string (fast, in C)
    except TypeError:
        return False
    return True


def parse_job(item: Any) -> JobSummary | None:
    """A listed job, or None when it is malformed: no integer id in range, tags that are
    not a list of strings, or an action that is not a string. Optional fields of the
    wrong type read as absent, `null` tags as no tags."""
    if type(item) is not dict:
        return None
    job_id, action, tags = item.get("id"), item.get("action_id"), item.get("tags")
    if type(job_id) is not int or not valid_id(job_id):
        return None
    if type(action) is not str or not valid_tags(tags):
        return None
    return JobSummary(
        job_id,
        action,
        _str_or_none(item.get("context")),
        tags or [],
        _str_or_none(item.get("status")),
        _int_or_none(item.get("created_at_ms")),
        _int_or_none(item.get("finished_at_ms")),
    )


def sample(item: Any) -> str:
    """A short, printable sample of an item hero_proc answered (for a log line)."""
    try:
        text = orjson.dumps(item)[: QUOTE_LENGTH * 2].decode(errors="replace")
    except (TypeError, orjson.JSONEncodeError):
        text = type(item).__name__
    return quote(text)


def job_summaries(value: Any, method: str) -> list[JobSummary]:
    """Jobs from an answer, tolerantly: extra fields ignored, `null` tags as no tags, a
    malformed optional field as absent; a job without an integer id and a string
    action is a protocol error."""
    if not isinstance(value, list):
        raise HeroProcProtocolError(f"{method} answered a result of the wrong shape")
    jobs = []
    for item in value:
        job = parse_job(item)
        if job is None:
            raise HeroProcProtocolError(f"{method} answered a job of the wrong shape")
        jobs.append(job)
    return jobs


class ActionSpec(_Record):
    script: str = ""
    tags: Tags = []


class Action(_Record):
    name: str
    context: str | None = None
    spec: ActionSpec = ActionSpec()
    created_at_ms: int | None = None


class HeroProcStats(_Record):
    job_count: int
    action_count: int
    running_count: int = 0


Call = tuple[str, dict[str, Any]]

# Calls that are safe to send again: reads, upserts, and deletes (a delete whose
# first answer was lost answers "not found" the second time: already gone).
IDEMPOTENT = frozenset(
    {
        "job.list",
        "job.get",
        "job.delete",
        "action.get",
        "action.list",
        "action.set",
        "action.delete",
        "stats",
        "rpc.discover",
    }
)


def transient(outcome: object) -> bool:
    """A failure that another try may not meet: hero_proc unreachable, or its -32603."""
    return isinstance(outcome, HeroProcUnavailable) or (
        isinstance(outcome, HeroProcRpcError) and outcome.rpc_code == INTERNAL_ERROR
    )


MAX_IN_FLIGHT = 128  # requests to hero_proc at once, at most (the connection pool)
SINGLES_IN_FLIGHT = 32  # single calls at once when hero_proc takes no batches
SLOW_CALL = 50e-6  # seconds per call in a batch above which hero_proc is latency-bound
PROBE = 200  # calls in a batch while what `Pacing` knows is stale
STALE_AFTER = 2.0  # seconds after which `Pacing` probes again


@dataclass
class Pacing:
    """How `call_many` batches: the size of a batch and how many are in flight.

    Learnt from how long hero_proc takes per call of a batch. Cheap calls (the time
    is the requests' own overhead): few large batches, the overhead spread thin.
    Slow calls (hero_proc takes its time per call, and a batch's calls run one
    after another): many small batches at once. It starts in between.
    """

    batch: int = 200
    inflight: int = 2
    per_call: float | None = None  # seconds per call inside a batch, smoothed
    learnt_at: float = float("-inf")  # time.monotonic() of the last lesson

    def stale(self) -> bool:
        return time.monotonic() - self.learnt_at > STALE_AFTER

    def learn(self, calls: int, seconds: float) -> None:
        self.learnt_at = time.monotonic()
        sample = seconds / calls
        self.per_call = sample if self.per_call is None else 0.7 * self.per_call + 0.3 * sample
        if self.per_call > SLOW_CALL:
            self.batch, self.inflight = 32, MAX_IN_FLIGHT
        else:
            self.batch, self.inflight = 2_000, 2


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
        self.pacing = pacing or Pacing()
        self.batch_supported: bool | None = None  # learnt from the first batch
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HeroProcClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.UnixConnector(path=str(self.socket_path), limit=MAX_IN_FLIGHT)
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
        return _unwrap(answer)

    def _retrying(self, attempts: int, stop: StopCheck | None) -> AsyncRetrying:
        """Bounded tries with exponential backoff and jitter, for transient failures;
        none once `stop` gives a reason."""

        def stopping(state: RetryCallState) -> bool:
            return state.attempt_number >= attempts or (stop is not None and stop() is not None)

        return AsyncRetrying(
            stop=stopping,
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
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
            failed: HeroProcError | None = exc
        # The first try failed transiently (rare): the retry policy takes over, counting
        # that try as its first so that it backs off before the next.
        async for attempt in self._retrying(attempts, stop):
            with attempt:
                if failed is not None:
                    first, failed = failed, None
                    raise first
                return await self._call_once(method, params, timeout)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def call_many(self, calls: Sequence[Call], *, stop: StopCheck | None = None) -> list[Any]:
        """Call each of `calls`; per call its result or the `Error` it ended with.

        One call's error never fails its neighbours. Calls go as JSON-RPC batches when
        hero_proc accepts them, sized and overlapped as `Pacing` learns hero_proc's
        speed; a call a batch could not settle (an item failing transiently, or the
        whole batch lost with its connection) is tried again on its own, as `call`
        does: idempotent calls only. Without batch support every call goes on its
        own, `SINGLES_IN_FLIGHT` at a time.

        `stop` is asked before anything is sent: once it gives a reason, nothing more
        is sent, and each call never sent ends as `NotAttempted`. Calls already on their
        way end within one call timeout. Every slot of the answer holds a result
        hero_proc sent for that call or an error: none is left that reads as success.
        """
        n = len(calls)
        results: list[Any] = [_NOT_SENT] * n
        alone: list[int] = []
        if self.batch_supported is False or n == 1:
            alone = list(range(n))
        else:
            await self._batches(calls, results, alone, stop)
        if alone:
            await self._singles(calls, alone, results, stop)
        reason = None
        for i, outcome in enumerate(results):
            if outcome is _NOT_SENT:
                if reason is None:
                    reason = (stop() if stop is not None else None) or "not sent"
                results[i] = NotAttempted(reason)
        return results

    async def _batches(
        self,
        calls: Sequence[Call],
        results: list[Any],
        alone: list[int],
        stop: StopCheck | None,
    ) -> None:
        """Send `calls` as batches by a pool of workers that grows to what `pacing` asks;
        positions left to be called alone go to `alone`."""
        n = len(calls)
        cursor = 0
        # When what `pacing` knows is old (hero_proc may have changed), batches stay
        # small until one has been timed: finding out that hero_proc became slow then
        # costs a small batch, not large ones. Within a cleanup it is always fresh.
        probing = self.pacing.stale()
        workers: set[asyncio.Task[None]] = set()
        started: list[asyncio.Task[None]] = []

        def grow() -> None:
            while len(workers) < self.pacing.inflight and cursor < n:
                task = asyncio.create_task(worker())
                workers.add(task)
                started.append(task)
                task.add_done_callback(workers.discard)

        async def worker() -> None:
            nonlocal cursor
            nonlocal probing
            while cursor < n:
                if stop is not None and stop() is not None:
                    return  # what is left stays unsent
                if self.batch_supported is False:  # learnt meanwhile: the rest one by one
                    alone.extend(range(cursor, n))
                    cursor = n
                    return
                size = min(PROBE, self.pacing.batch) if probing else self.pacing.batch
                start, cursor = cursor, min(n, cursor + size)
                chunk = range(start, cursor)
                if len(chunk) == 1:
                    alone.append(start)
                    continue
                t0 = time.monotonic()
                unsettled = await self._batch(calls, chunk, results)
                if unsettled is None:
                    alone.extend(chunk)
                    continue
                self.pacing.learn(len(chunk), time.monotonic() - t0)
                probing = False
                alone.extend(i for i in unsettled if calls[i][0] in IDEMPOTENT)
                grow()

        try:
            grow()
            while workers:
                await asyncio.wait(set(workers))
        finally:
            # Cancelled (or a worker failed): no worker outlives this call.
            for task in started:
                task.cancel()
            await asyncio.gather(*started, return_exceptions=True)
        for task in started:
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc  # a fault of this code: the caller must not read the slots

    async def _singles(
        self,
        calls: Sequence[Call],
        positions: Sequence[int],
        results: list[Any],
        stop: StopCheck | None,
    ) -> None:
        """Each call at `positions` on its own, by a pool of workers (not a task per call).

        A position that already holds an outcome (a batch's transient failure) keeps
        it when `stop` says to send no more: its call was sent, its outcome unknown."""
        todo = iter(positions)

        async def worker() -> None:
            for i in todo:
                if stop is not None and stop() is not None:
                    continue
                try:
                    results[i] = await self.call(*calls[i], stop=stop)
                except HeroProcError as exc:
                    results[i] = exc

        await asyncio.gather(*(worker() for _ in range(min(SINGLES_IN_FLIGHT, len(positions)))))

    async def _batch(
        self, calls: Sequence[Call], chunk: Sequence[int], results: list[Any]
    ) -> list[int] | None:
        """One batch POST for `chunk`, outcomes into `results`: the positions it left
        unsettled (a transient failure), or None when hero_proc does not take batches."""
        # Ids only need to be unique within the batch: its position.
        payload = [
            {"jsonrpc": "2.0", "id": n, "method": calls[i][0], "params": calls[i][1]}
            for n, i in enumerate(chunk)
        ]
        try:
            answer = await self._post(payload)
        except HeroProcError as exc:
            for i in chunk:
                results[i] = exc
            return list(chunk) if transient(exc) else []
        if isinstance(answer, dict):
            error = answer.get("error")
            if type(error) is dict and error.get("code") == INVALID_REQUEST:
                self.batch_supported = False
                return None
        if not isinstance(answer, list):
            err = HeroProcProtocolError("a batch answered with something other than a list")
            for i in chunk:
                results[i] = err
            return []
        self.batch_supported = True
        return _settle(answer, chunk, results)

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
        return _parse(_ID, result, "job.create").id

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
        return _parse(_ACTION, result, "action.get")

    async def action_list(
        self, *, tag: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> list[Action]:
        params = _given(tag=tag, limit=limit, offset=offset)
        return _parse(_ACTIONS, await self.call("action.list", params), "action.list")

    async def action_delete(self, name: str, *, context: str | None = None) -> None:
        await self.call("action.delete", action_params(name, context))

    async def stats(
        self, *, timeout: float | None = None, attempts: int | None = None
    ) -> HeroProcStats:
        result = await self.call("stats", {}, timeout=timeout, attempts=attempts)
        return _parse(_STATS, result, "stats")


class _Id(_Record):
    id: int


T = TypeVar("T")
_ACTIONS = TypeAdapter(list[Action])
_ACTION = TypeAdapter(Action)
_STATS = TypeAdapter(HeroProcStats)
_ID = TypeAdapter(_Id)


_NOT_SENT = object()  # the outcome slot of a call not (yet) sent


def action_params(name: str, context: str | None) -> dict[str, Any]:
    """The params that name one action: its name, and its context when it has one."""
    return {"name": name} if context is None else {"name": name, "context": context}


def _given(**params: Any) -> dict[str, Any]:
    """The params that were given (not None)."""
    return {k: v for k, v in params.items() if v is not None}


def _settle(answer: list[Any], chunk: Sequence[int], results: list[Any]) -> list[int]:
    """Each item of a batch answer into `results`, matched by the id it answers: an item
    for an id not asked is ignored, an asked id without its item is a protocol error.
    The positions that failed transiently."""
    by_id: dict[int, Any] | None = None
    unsettled = []
    answers = len(answer)
    for n, i in enumerate(chunk):
        item = answer[n] if n < answers else None
        if (
            type(item) is dict
            and item.get("id") == n
            and "result" in item
            and "error" not in item
            and type(item["id"]) is int
            and item.get("jsonrpc") == "2.0"
        ):
            results[i] = item["result"]  # the common case: in order, a result
            continue
        if type(item) is not dict or type(item.get("id")) is not int or item["id"] != n:
            if by_id is None:  # answers out of order: match ids (integers only: not 1.0)
                by_id = {}
                for a in answer:
                    if type(a) is dict and type(a.get("id")) is int:
                        by_id.setdefault(a["id"], a)
            item = by_id.get(n)
        if item is None:
            results[i] = HeroProcProtocolError("a batch answer is missing an item")
            continue
        try:
            results[i] = _unwrap(item)
        except HeroProcError as exc:
            results[i] = exc
            if transient(exc):
                unsettled.append(i)
    return unsettled


def _unwrap(answer: Any) -> Any:
    if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
        raise HeroProcProtocolError("an answer that is not a JSON-RPC 2.0 response")
    if "error" in answer:
        err = answer["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int):
            raise HeroProcProtocolError("an error object without an integer code")
        raise upstream_error(err["code"], err.get("message", ""))
    if "result" not in answer:
        raise HeroProcProtocolError("a response with neither result nor error")
    return answer["result"]


def _parse(adapter: TypeAdapter[T], value: Any, method: str) -> T:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        raise HeroProcProtocolError(f"{method} answered a result of the wrong shape") from None


def _connect_reason(err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "socket not found"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, PermissionError):
        return "permission denied"
    return "cannot connect"
