"""Every error this project raises, in one tree, with its JSON-RPC code.

    Error                          base class; never raised itself
    ├── InvalidParams              -32602  params failed validation (names the field)
    ├── AdminRequired              -32010  an admin method called by a non-admin peer
    ├── CleanupRunning             -32011  a cleanup is already running (in this process,
    │                                      or another one holds the lease in the state database)
    │                              -32012  server busy (too many calls in flight)
    ├── StateUnavailable           -32013  the state database cannot be written: a real
    │                                      cleanup is refused rather than run without a record
    ├── PlanUnusable               -32014  a dry run's plan that cannot be applied: unknown,
    │                                      expired or applied already (`data.reason`)
    ├── RunFailed                  -32603  a cleanup ended by a fault of the service; its
    │                                      `data` carries the counts of what it did so far
    ├── NotAttempted               (never answered) a call not sent: the run was stopping
    └── HeroProcError              anything wrong with hero_proc
        ├── HeroProcUnavailable    -32020  socket missing, refused, timed out, dropped
        ├── HeroProcProtocolError  -32021  an answer that is not the contract's JSON-RPC
        └── HeroProcRpcError       -32021  an error object from hero_proc
            ├── NotFound                   hero_proc -32001 (for a cleanup: already gone)
            ├── InUse                      hero_proc -32002 (an action still referenced)
            └── JobActive                  hero_proc -32003 (active job, delete without force)

The RPC layer turns an `Error` into its code, its fixed message and its
public `data`; anything that is not an `Error` becomes -32603 "Internal error"
and its text stays in the log.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

# JSON-RPC 2.0 codes and this service's own codes, in one table.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
ADMIN_REQUIRED = -32010
CLEANUP_RUNNING = -32011
SERVER_BUSY = -32012
STATE_UNAVAILABLE = -32013
PLAN_UNUSABLE = -32014
HERO_PROC_UNAVAILABLE = -32020
HERO_PROC_ERROR = -32021

# hero_proc's own codes (hero_proc_contract.md).
UPSTREAM_NOT_FOUND = -32001
UPSTREAM_IN_USE = -32002
UPSTREAM_JOB_ACTIVE = -32003


class Error(Exception):
    """Base class of every error of this project."""

    code: ClassVar[int] = INTERNAL_ERROR
    message: ClassVar[str] = "Internal error"

    def __init__(self, detail: str = "", data: Any = None) -> None:
        super().__init__(detail or self.message)
        self.detail = detail or self.message
        self.data = data

    def public_data(self) -> Any:
        """What a caller may see in the error's `data` member."""
        return self.data


# Text that comes from hero_proc (error messages, names) reaches an answer or a log line
# only through `quote`: at most QUOTE_LENGTH characters, without control characters.
QUOTE_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def quote(text: Any, limit: int = QUOTE_LENGTH) -> str:
    """`text` made safe to show: control characters replaced by a space, cut to `limit`
    characters (the last one then "…")."""
    raw = text if isinstance(text, str) else ("" if text is None else str(text))
    # Control runs shrink to one space: four times the limit is enough left to cut.
    cut: str = _CONTROL.sub(" ", raw[: limit * 4])
    return cut if len(cut) <= limit else cut[: limit - 1] + "…"


class InvalidParams(Error):
    """Params that do not fit the method's schema; `detail` names the field."""

    code = INVALID_PARAMS
    message = "Invalid params"

    def public_data(self) -> Any:
        return self.detail


class AdminRequired(Error):
    """The peer is not an admin (uid 0, an allowed uid or gid)."""

    code = ADMIN_REQUIRED
    message = "Admin required"


class CleanupRunning(Error):
    """Another cleanup holds the single-cleanup lock: in this process, or in another
    process sharing the state directory (the lease); `data.reason` says which, and the
    rest of `data` names the run holding it (`run_id`, `started_at_ms`, `peer_uid`,
    `peer_pid`, `policy`, `background`; with another process, its `holder_pid`,
    `holder_host` and `lease_expires_at_ms`)."""

    code = CLEANUP_RUNNING
    message = "A cleanup is already running"

    def __init__(self, reason: str = "this service is running one", **data: Any) -> None:
        super().__init__(f"a cleanup is already running: {reason}", {"reason": reason, **data})


class StateUnavailable(Error):
    """The state database cannot be written (read-only, disk full, locked too long), or
    read (an I/O error, a damaged file): `data.path` is its file, `data.reason` what
    SQLite said."""

    code = STATE_UNAVAILABLE
    message = "State database unavailable"

    def __init__(self, path: str, reason: str, doing: str = "written") -> None:
        super().__init__(f"the state database {path} cannot be {doing}: {reason}")
        self.path = path
        self.reason = reason

    def public_data(self) -> Any:
        return {"path": self.path, "reason": self.reason}


class PlanUnusable(Error):
    """A plan (`plan_id`, from a dry run) that cannot be applied: `data.reason` is
    `unknown` (no such plan, or dropped with the history), `expired` (past
    `data.expired_at_ms`) or `applied` (by the run `data.run_id`)."""

    code = PLAN_UNUSABLE
    message = "Plan unusable"

    def __init__(self, plan_id: str, reason: str, **data: Any) -> None:
        super().__init__(
            f"plan {plan_id}: {reason}", {"reason": reason, "plan_id": plan_id, **data}
        )


class RunFailed(Error):
    """A cleanup cut short by a fault of the service itself (a bug): it was still
    logged and recorded; the caller gets -32603 with what it had done by then."""

    code = INTERNAL_ERROR
    message = "Internal error"

    def __init__(self, counts: dict[str, Any]) -> None:
        super().__init__("the cleanup failed", counts)
        self.counts = counts

    def public_data(self) -> Any:
        return {"counts": self.counts}


class NotAttempted(Error):
    """A call that was never sent: the run was stopping (deadline, shutdown)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not attempted: {reason}")
        self.reason = reason


class HeroProcError(Error):
    """Something went wrong talking to hero_proc."""

    code = HERO_PROC_ERROR
    message = "hero_proc error"


class HeroProcUnavailable(HeroProcError):
    """hero_proc could not be reached or did not answer in time."""

    code = HERO_PROC_UNAVAILABLE
    message = "hero_proc unavailable"

    def __init__(self, socket: str, reason: str) -> None:
        super().__init__(f"hero_proc unavailable at {socket}: {reason}", {"socket": socket})
        self.socket = socket
        self.reason = reason

    def public_data(self) -> Any:
        return {"socket": self.socket, "reason": self.reason}


class HeroProcProtocolError(HeroProcError):
    """hero_proc answered something that is not a JSON-RPC answer of the contract."""

    def public_data(self) -> Any:
        return {"reason": self.detail}


class HeroProcRpcError(HeroProcError):
    """hero_proc answered a JSON-RPC error object."""

    upstream_code: ClassVar[int | None] = None

    def __init__(self, code: int, message: Any, data: Any = None) -> None:
        message = quote(message)  # hero_proc's text: bounded before it goes anywhere
        super().__init__(f"hero_proc error {code}: {message}")
        self.rpc_code = code
        self.rpc_message = message

    def public_data(self) -> Any:
        return {"code": self.rpc_code, "message": self.rpc_message}


class NotFound(HeroProcRpcError):
    """The job or action does not exist (for a cleanup: already gone)."""

    upstream_code = UPSTREAM_NOT_FOUND


class InUse(HeroProcRpcError):
    """An action still referenced by a job."""

    upstream_code = UPSTREAM_IN_USE


class JobActive(HeroProcRpcError):
    """An active job deleted without force."""

    upstream_code = UPSTREAM_JOB_ACTIVE


UPSTREAM_ERRORS: dict[int, type[HeroProcRpcError]] = {
    cls.upstream_code: cls for cls in (NotFound, InUse, JobActive) if cls.upstream_code
}


def upstream_error(code: int, message: Any, data: Any = None) -> HeroProcRpcError:
    """The typed exception for an error object answered by hero_proc."""
    return UPSTREAM_ERRORS.get(code, HeroProcRpcError)(code, message, data)


# The errors a caller can meet: code -> (name, message, when), as the OpenRPC
# document (components/errors), the generated SDK's exceptions and the README list them.
DOCUMENTED: dict[int, tuple[str, str, str]] = {
    PARSE_ERROR: ("ParseError", "Parse error", "The body is not JSON (or not UTF-8)."),
    INVALID_REQUEST: (
        "InvalidRequest",
        "Invalid Request",
        "Not a JSON-RPC 2.0 request object, an empty or oversized batch, or a body refused "
        "at the HTTP level (size, Content-Type, method).",
    ),
    METHOD_NOT_FOUND: ("MethodNotFound", "Method not found", "Not in the OpenRPC document."),
    INVALID_PARAMS: ("InvalidParams", "Invalid params", "`data` names the field and the reason."),
    INTERNAL_ERROR: (
        "InternalError",
        "Internal error",
        "A fault of the service; `data.request_id` finds it in the service's log.",
    ),
    ADMIN_REQUIRED: (
        "AdminRequired",
        "Admin required",
        "The caller is not uid 0 nor an allowed uid or gid.",
    ),
    CLEANUP_RUNNING: (
        "CleanupRunning",
        "A cleanup is already running",
        "One cleanup at a time, also across service processes sharing a state directory; "
        "`data.reason` says which holds it, and `data` names its run: `run_id` (follow it "
        "with jobs.cleanup_status), `started_at_ms`, who started it (`peer_uid`, `peer_pid`; "
        "`policy` for a retention policy's run) and `background`; for another process also "
        "`holder_pid`, `holder_host`, `lease_expires_at_ms`. Try again when it has finished.",
    ),
    STATE_UNAVAILABLE: (
        "StateUnavailable",
        "State database unavailable",
        "The state database cannot be written (read-only, disk full): a real cleanup is "
        "refused rather than run without a record; dry runs and reads go on. Or it cannot be "
        "read (an I/O error, a damaged file): the history, a run's status and the tombstones "
        "cannot be answered. `data.path` is the file, `data.reason` why.",
    ),
    PLAN_UNUSABLE: (
        "PlanUnusable",
        "Plan unusable",
        "The plan of `plan_id` cannot be applied; `data.reason` says why: `unknown` (no such "
        "plan, or dropped with the history), `expired` (a plan lasts an hour; "
        "`data.expired_at_ms`) or `applied` (already, by the run `data.run_id`). Make a new "
        "one with a dry run.",
    ),
    SERVER_BUSY: (
        "ServerBusy",
        "Server busy",
        "Too many calls in flight (in place in a batch; HTTP 503 when none of the "
        "request's calls could start); try again shortly.",
    ),
    HERO_PROC_UNAVAILABLE: (
        "HeroProcUnavailable",
        "hero_proc unavailable",
        "hero_proc could not be reached; `data.socket` is its socket, `data.reason` why.",
    ),
    HERO_PROC_ERROR: (
        "HeroProcError",
        "hero_proc error",
        "hero_proc answered an error (`data.code`, `data.message`) or broke its contract.",
    ),
}
