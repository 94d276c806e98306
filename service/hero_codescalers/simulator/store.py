"""hero_proc's state as the contract describes it: actions, jobs, their semantics.

Plain synchronous code with no I/O: the server wraps it in JSON-RPC, tests and
seeding call it directly. Methods raise `RpcFault` with hero_proc's codes.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

NOT_FOUND = -32001
IN_USE = -32002
JOB_ACTIVE = -32003
INVALID_PARAMS = -32602

MAX_INDEXES = 32  # tag prefixes indexed at once (the oldest is dropped)
DEFAULT_LIMIT = 1_000
MAX_LIMIT = 10_000
STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = frozenset({"pending", "running"})

ActionKey = tuple[str, str | None]


class RpcFault(Exception):
    """A JSON-RPC error answer: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _invalid(message: str) -> RpcFault:
    return RpcFault(INVALID_PARAMS, "Invalid params", message)


def _opt_str(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    return value


def _req_str(params: dict[str, Any], key: str) -> str:
    value = _opt_str(params, key)
    if not value:
        raise _invalid(f"{key} is required")
    return value


def _opt_int(params: dict[str, Any], key: str, minimum: int = 0) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _invalid(f"{key} must be an integer >= {minimum}")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise _invalid(f"{key} must be a list of strings")
    return list(value)


@dataclass
class Faults:
    """Fault injection, changed at run time by `sim.faults`."""

    latency_ms: float = 0.0
    fail_rate: dict[str, float] | None = None
    drop_rate: dict[str, float] | None = None
    batch: bool = True
    in_use_actions: frozenset[str] = frozenset()


class Store:
    """Actions and jobs. Jobs are kept in id order (ids only grow)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.actions: dict[ActionKey, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        # Jobs per action, keyed by name alone when the context is null (the usual case):
        # a string key is hashed once and compared by identity, where a tuple is not.
        self.refs: Counter[str | ActionKey] = Counter()
        # Ids of the jobs with a tag starting with each prefix asked for, in id order:
        # an index, so that a page at an offset skips the jobs before it in C (as a
        # database's index would), not one Python comparison per job.
        self.by_prefix: dict[str, dict[int, None]] = {}
        self._dead: dict[str, int] = {}  # keys deleted from each index since it was built
        self.next_id = 1
        self.faults = Faults()

    # actions ---------------------------------------------------------------

    def action_set(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _req_str(params, "name")
        context = _opt_str(params, "context")
        spec = params.get("spec")
        if not isinstance(spec, dict):
            raise _invalid("spec must be an object")
        script = spec.get("script", "")
        if not isinstance(script, str):
            raise _invalid("spec.script must be a string")
        tags = _str_list(spec.get("tags"), "spec.tags")
        key = (name, context)
        existing = self.actions.get(key)
        self.actions[key] = {
            "name": name,
            "context": context,
            "spec": {"script": script, "tags": tags},
            "created_at_ms": existing["created_at_ms"] if existing else now_ms(),
        }
        return {"name": name}

    def action_get(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (_req_str(params, "name"), _opt_str(params, "context"))
        action = self.actions.get(key)
        if action is None:
            raise RpcFault(NOT_FOUND, "Action not found", {"name": key[0]})
        return action

    def action_list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        tag = _opt_str(params, "tag")
        limit, offset = self._page(params)
        found = (
            a for a in self.actions.values() if tag is None or _has_prefix(a["spec"]["tags"], tag)
        )
        return _slice(found, offset, limit)

    def action_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (_req_str(params, "name"), _opt_str(params, "context"))
        if key not in self.actions:
            raise RpcFault(NOT_FOUND, "Action not found", {"name": key[0]})
        refs = self.refs[_ref(*key)]
        if refs > 0 or key[0] in self.faults.in_use_actions:
            raise RpcFault(IN_USE, "Action in use", {"name": key[0], "jobs": refs})
        del self.actions[key]
        self.refs.pop(_ref(*key), None)
        return {"deleted": True}

    # jobs ------------------------------------------------------------------

    def job_create(self, params: dict[str, Any]) -> dict[str, Any]:
        """`job.create`, with the simulator's `status`, `created_at_ms` and `finished_at_ms`
        extensions (a terminal status without `finished_at_ms` gets the creation time; an
        explicit null, or any value, is kept as given: tests seed odd jobs with it)."""
        key = (_req_str(params, "action"), _opt_str(params, "context"))
        action = self.actions.get(key)
        if action is None:
            raise RpcFault(NOT_FOUND, "Action not found", {"name": key[0]})
        status = params.get("status", "pending")
        if status not in STATUSES:
            raise _invalid(f"status must be one of {', '.join(STATUSES)}")
        created = _opt_int(params, "created_at_ms") if "created_at_ms" in params else now_ms()
        if "finished_at_ms" in params:
            finished = _opt_int(params, "finished_at_ms")
        else:
            finished = None if status in ACTIVE_STATUSES else created
        extra = _str_list(params.get("tags"), "tags")
        job_id = self.next_id
        self.next_id += 1
        self.jobs[job_id] = {
            "id": job_id,
            "action_id": key[0],
            "context": key[1],
            "tags": [*action["spec"]["tags"], *extra],
            "status": status,
            "created_at_ms": created,
            "finished_at_ms": finished,
        }
        self.refs[_ref(*key)] += 1
        for prefix, members in self.by_prefix.items():
            if _has_prefix(self.jobs[job_id]["tags"], prefix):
                members[job_id] = None
        return {"id": job_id}

    def job_get(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._job(params)

    def job_list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        flt = params.get("filter") or {}
        if not isinstance(flt, dict):
            raise _invalid("filter must be an object")
        tag = _opt_str(flt, "tag")
        status = _opt_str(flt, "status")
        action = _opt_str(flt, "action")
        limit, offset = self._page(flt)
        if tag is not None and status is None and action is None:
            members = self._tagged(tag)
            page = itertools.islice(members, offset, offset + limit)
            return [self.jobs[job_id] for job_id in page]
        # By tag, the index gives the candidates (in id order); the rest are checked.
        jobs = self.jobs
        candidates = (jobs[i] for i in self._tagged(tag)) if tag is not None else jobs.values()
        found = (
            j
            for j in candidates
            if (status is None or j["status"] == status)
            and (action is None or j["action_id"] == action)
        )
        return _slice(found, offset, limit)

    def _tagged(self, prefix: str) -> dict[int, None]:
        """The ids of the jobs with a tag starting with `prefix`, indexed on first use."""
        members = self.by_prefix.get(prefix)
        if members is not None and self._dead.get(prefix, 0) > len(members):
            # A dict keeps the slots of deleted keys, and iterating walks them: once
            # they outnumber the living, copy it (compact) so pages stay cheap.
            members = self.by_prefix[prefix] = dict(members)
            self._dead[prefix] = 0
        if members is None:
            if len(self.by_prefix) >= MAX_INDEXES:
                self.by_prefix.pop(next(iter(self.by_prefix)))
            members = {i: None for i, j in self.jobs.items() if _has_prefix(j["tags"], prefix)}
            self.by_prefix[prefix] = members
        return members

    def job_cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._job(params)
        if job["status"] in ACTIVE_STATUSES:
            job["status"] = "cancelled"
            job["finished_at_ms"] = now_ms()
        return {"id": job["id"], "status": job["status"]}

    def job_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._job(params)
        force = params.get("force", False)
        if job["status"] in ACTIVE_STATUSES and force is not True:
            raise RpcFault(JOB_ACTIVE, "Job is active; delete with force", {"id": job["id"]})
        del self.jobs[job["id"]]
        for prefix, members in self.by_prefix.items():
            if members.pop(job["id"], 0) is None:
                self._dead[prefix] = self._dead.get(prefix, 0) + 1
        ref = _ref(job["action_id"], job["context"])
        left = self.refs[ref] - 1
        if left > 0:
            self.refs[ref] = left
        else:
            del self.refs[ref]
        return {"deleted": True}

    def stats(self, params: dict[str, Any]) -> dict[str, Any]:
        running = sum(1 for j in self.jobs.values() if j["status"] == "running")
        return {
            "job_count": len(self.jobs),
            "action_count": len(self.actions),
            "running_count": running,
        }

    # helpers ---------------------------------------------------------------

    def _job(self, params: dict[str, Any]) -> dict[str, Any]:
        job_id = _opt_int(params, "id", minimum=1)
        if job_id is None:
            raise _invalid("id is required")
        job = self.jobs.get(job_id)
        if job is None:
            raise RpcFault(NOT_FOUND, "Job not found", {"id": job_id})
        return job

    @staticmethod
    def _page(params: dict[str, Any]) -> tuple[int, int]:
        limit = _opt_int(params, "limit")
        offset = _opt_int(params, "offset") or 0
        limit = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
        return limit, offset

    def state(self) -> dict[str, Any]:
        """A deep snapshot of the whole store, for before/after comparisons."""
        return {
            "jobs": {i: dict(j, tags=list(j["tags"])) for i, j in self.jobs.items()},
            "actions": {f"{k[0]}@{k[1]}": dict(a) for k, a in self.actions.items()},
        }


def _ref(name: str, context: str | None) -> str | ActionKey:
    return name if context is None else (name, context)


def _has_prefix(tags: list[str], prefix: str) -> bool:
    return any(t.startswith(prefix) for t in tags)


def _slice(found: Any, offset: int, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if limit <= 0:
        return out
    for item in found:
        if offset:
            offset -= 1
            continue
        out.append(item)
        if len(out) >= limit:
            break
    return out
