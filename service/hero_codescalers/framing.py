"""JSON-RPC 2.0 framing: a request body to its request objects, and the answers back to one
response body.

The framing is done here, not by jsonrpcserver, so that a batch with one invalid
item gets one error for that item and answers for the others (jsonrpcserver
validates a batch as a whole). `parse` reads the body (a parse error or a batch
that is empty or larger than `max_batch` is refused as a whole);
`check_request` finds what makes one item no request object; `assemble` puts
each item's error or its call's answer back in the order of the items, leaving
out notifications.

Input reflected in an answer is bounded: an unknown method name is cut to
`MAX_NAME` characters, field names too, and a params error to `MAX_REASON`.
The params of a method that changes hero_proc are checked for duplicate keys
(`check_duplicates`; JSON leaves their meaning open and the parser would keep
the last one silently): -32602, never "last wins".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from . import errors

MAX_REASON = 500
MAX_NAME = 64

# An item that gets no answer: a notification to a method that does not exist, or
# refused. `is` tells it apart from an error answer.
DROPPED: dict[str, Any] = {}


class Parsed(NamedTuple):
    """A body's request objects (still unchecked), and whether it was a batch."""

    items: list[Any]
    batch: bool


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


def error_answer(code: int, data: Any = None, id_: Any = None) -> dict[str, Any]:
    """A JSON-RPC error response with the documented message of `code`."""
    err: dict[str, Any] = {"code": code, "message": errors.DOCUMENTED[code][1]}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": id_}


def parse(body: bytes, max_batch: int) -> Parsed | dict[str, Any]:
    """The request objects of `body`, or the error answer that refuses it as a whole."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return error_answer(errors.PARSE_ERROR, _parse_reason(body, exc))
    if not isinstance(payload, list):
        return Parsed([payload], batch=False)
    if not payload:
        return error_answer(errors.INVALID_REQUEST, "empty batch")
    if len(payload) > max_batch:
        return error_answer(errors.INVALID_REQUEST, f"batch larger than {max_batch}")
    return Parsed(payload, batch=True)


def _parse_reason(body: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not valid UTF-8"
    if "depth" in exc.msg or "recursion" in exc.msg:
        return "JSON nested too deeply"
    return f"invalid JSON at line {exc.lineno} column {exc.colno}"


def check_request(item: Any) -> dict[str, Any] | None:
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


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int | float) and not isinstance(value, bool))
    )


def assemble(parsed: Parsed, problems: list[dict[str, Any] | None], answers: Iterable[Any]) -> Any:
    """The JSON-able response body: for each item, in order, its problem (an error answer)
    or, when it had none, the next of `answers` (one per call that is not a
    notification); None when nothing is to be sent back."""
    calls = iter(answers)
    out = [
        problem if problem is not None else next(calls)
        for item, problem in zip(parsed.items, problems, strict=True)
        if problem is not DROPPED and (problem is not None or "id" in item)
    ]
    if parsed.batch:
        return out or None
    return out[0] if out else None


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
    """The path of the first key given twice inside `value`, or None.

    One frame per level of nesting, as the parser before it: whatever it could read
    is walked within the same recursion limit."""
    entries: Iterable[tuple[str | int, Any]]
    if isinstance(value, _Pairs):
        if value.duplicates:
            where = clip(value.duplicates[0])
            return f"{path}.{where}" if path else where
        entries = value.items()
    elif isinstance(value, list):
        entries = enumerate(value)
    else:
        return None
    for key, item in entries:
        name = clip(key) if isinstance(key, str) else str(key)
        found = _duplicate(item, f"{path}.{name}" if path else name)
        if found:
            return found
    return None


def check_duplicates(
    body: bytes,
    parsed: Parsed,
    problems: list[dict[str, Any] | None],
    mutating: frozenset[str],
) -> None:
    """-32602 for each call of a method in `mutating` whose params give a key twice.

    orjson keeps the last of duplicate keys without a word, so the body is parsed
    again, by the standard library with a hook that sees every key; only when a
    call of such a method is in it (they are rare and slow; the cost is measured
    by `make bench-rpc`).
    """
    again = _every_key(body, len(parsed.items))
    for index, item in enumerate(parsed.items):
        if problems[index] is not None or item["method"] not in mutating:
            continue
        reason = _duplicate_reason(again, index)
        if reason is not None:
            problems[index] = (
                error_answer(errors.INVALID_PARAMS, reason, item["id"]) if "id" in item else DROPPED
            )


def _every_key(body: bytes, count: int) -> list[Any] | None:
    """The `count` items of `body` parsed with every key seen, or None when that fails."""
    try:
        again = json.loads(body, object_pairs_hook=_pairs)
    except (ValueError, RecursionError):
        return None
    whole = again if isinstance(again, list) else [again]
    return whole if len(whole) == count else None


def _duplicate_reason(again: list[Any] | None, index: int) -> str | None:
    """Why the params of item `index` are refused, or None when no key is given twice."""
    if again is None or not isinstance(again[index], dict):
        return "params: nested too deeply to be checked"
    where = _duplicate(again[index].get("params"), "")
    return None if where is None else f"{where}: duplicate key"
