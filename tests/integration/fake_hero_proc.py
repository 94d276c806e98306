"""A hero_proc that breaks its contract on purpose, for tests only.

It is the simulator (same store, same socket serving) with a `job.list` of its
own and switches that make its answers wrong the ways a buggy or foreign
hero_proc might: results of the wrong shape, batch items whose `error` is not
an object, answers for ids not asked or missing, malformed jobs in listings,
short pages, an ignored offset, pages longer than the limit, calls that never
answer, and huge error texts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hero_codescalers.simulator import Simulator


@dataclass
class Misbehaviour:
    """What the fake does wrong; the defaults are a well-behaved hero_proc."""

    # method -> the result answered instead of the real one; the call is carried out
    # only when the method is also in `carry_out`.
    results: dict[str, Any] = field(default_factory=dict)
    carry_out: set[str] = field(default_factory=set)
    # method -> what a batch answers as the `error` member of that method's items (not
    # an error object); carried out when in `carry_out`.
    batch_error: dict[str, Any] = field(default_factory=dict)
    shift_batch_ids: int = 0  # batch answers carry ids shifted by this (ids not asked)
    drop_batch_items: bool = False  # batch answers leave out every other item
    # job.list: entries listed right after the job of each key id (0: first)
    phantoms: dict[int, list[Any]] = field(default_factory=dict)
    page_cap: int | None = None  # job.list answers at most this many jobs
    ignore_offset: bool = False  # job.list and action.list list from the start
    over_limit: int = 0  # job.list answers this many jobs beyond the limit
    hang: set[str] = field(default_factory=set)  # methods that never answer
    # method -> (code, message) answered as an error object, without effect
    errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    refuse_ids: set[int] = field(default_factory=set)  # job.delete of these: -32003
    # action.list: these pages answered in turn (each whatever the offset), then []
    action_pages: list[list[Any]] | None = None


class FakeHeroProc(Simulator):
    """The simulator with a `Misbehaviour`, served on a real Unix socket by `serve`."""

    def __init__(self) -> None:
        super().__init__()
        self.bad = Misbehaviour()
        self.released = asyncio.Event()  # set at teardown: hung calls end
        self.list_calls: list[dict[str, Any]] = []  # the filters of job.list calls
        self.methods["job.list"] = self._job_list
        self._action_list = self.methods["action.list"]
        self.methods["action.list"] = self._actions

    async def handle(self, payload: Any) -> Any:
        answer = await super().handle(payload)
        if not isinstance(payload, list) or not isinstance(answer, list):
            return answer
        bad = self.bad
        if bad.shift_batch_ids:
            for item in answer:
                item["id"] = item["id"] + bad.shift_batch_ids
        if bad.drop_batch_items:
            answer = answer[1::2]
        if bad.batch_error:
            for item, request in zip(answer, payload, strict=False):
                if request.get("method") in bad.batch_error:
                    item.pop("result", None)
                    item["error"] = bad.batch_error[request["method"]]
        return answer

    async def _call(self, item: Any) -> dict[str, Any] | None:
        method = item.get("method") if isinstance(item, dict) else None
        bad = self.bad
        if method in bad.hang:
            self.calls[method] += 1
            for hook in self.hooks:
                pending = hook(method, item.get("params") or {})
                if pending is not None:
                    await pending
            await self.released.wait()
            return None
        if method in bad.errors:
            self.calls[method] += 1
            code, message = bad.errors[method]
            return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": item["id"]}
        if method == "job.delete" and item.get("params", {}).get("id") in bad.refuse_ids:
            self.calls[method] += 1
            err = {"code": -32003, "message": "Job is active"}
            return {"jsonrpc": "2.0", "error": err, "id": item["id"]}
        replaced = method in bad.results or method in bad.batch_error
        if replaced and method not in bad.carry_out:
            self.calls[method] += 1
            answer: dict[str, Any] | None = {"jsonrpc": "2.0", "result": None, "id": item["id"]}
        else:
            answer = await super()._call(item)
        if answer is not None and method in bad.results:
            answer = {"jsonrpc": "2.0", "result": bad.results[method], "id": item["id"]}
        return answer

    def _actions(self, params: dict[str, Any]) -> Any:
        if self.bad.action_pages is None:
            return self._action_list(params)
        return self.bad.action_pages.pop(0) if self.bad.action_pages else []

    def _job_list(self, params: dict[str, Any]) -> list[Any]:
        """`job.list` over the store plus the phantom entries, with the page faults."""
        flt = params.get("filter") or {}
        self.list_calls.append(dict(flt))
        tag, status = flt.get("tag"), flt.get("status")
        limit = min(flt.get("limit") or 1_000, 10_000)
        offset = 0 if self.bad.ignore_offset else flt.get("offset") or 0
        listing: list[Any] = list(self.bad.phantoms.get(0, []))
        for job_id, job in self.store.jobs.items():
            if (tag is None or any(t.startswith(tag) for t in job["tags"])) and (
                status is None or job["status"] == status
            ):
                listing.append(job)
            listing.extend(self.bad.phantoms.get(job_id, []))
        size = limit + self.bad.over_limit
        if self.bad.page_cap is not None:
            size = min(size, self.bad.page_cap)
        return listing[offset : offset + size]
