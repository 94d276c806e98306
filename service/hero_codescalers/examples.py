"""The OpenRPC document's examples, each true in the state it declares.

An example names in `given` the examples whose calls make the state it needs
("method/example"); those run first, each after its own `given`, on an empty
hero_proc and a fresh service. So the ids an example shows depend only on the
examples it names: adding a method, or an example anywhere, shifts nothing.
`steps` gives that order; `tests/integration/test_examples.py` replays every
example so (checking the result of each step, and waiting for the run a step
started to end before the next step), and the @open-rpc/test-coverage run gives
each call of the tool the state of its example. Fields named in
`VOLATILE` (clocks, durations, the caller, the socket's path, ids made at random)
differ from run to run and are compared by type only; a `partial` example shows
part of its result. A param an example `takes` from an example it follows (a
plan's id, new on every run) is sent with the value that call answered.

Above 350 lines because it is data: one entry per example of the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import __version__
from .engine import input_hash
from .registry import Example as BaseExample
from .registry import Registry
from .tags import action_name


@dataclass(frozen=True)
class Example(BaseExample):
    """An example pairing and the examples ("method/example") run before it, in order;
    `takes`: (param, "method/example") pairs, the param sent with the same-named field of
    the result that example (one of `given`) answered."""

    given: tuple[str, ...] = ()
    takes: tuple[tuple[str, str], ...] = ()


def given(example: BaseExample) -> tuple[str, ...]:
    """The examples `example` follows: none for one that declares nothing."""
    return example.given if isinstance(example, Example) else ()


def taken(example: BaseExample, results: dict[str, Any]) -> dict[str, Any]:
    """The params `example` takes from what the examples it follows answered (`results`,
    by "method/example")."""
    if not isinstance(example, Example):
        return {}
    return {param: results[ref][param] for param, ref in example.takes}


def steps(registry: Registry, ref: str) -> list[tuple[str, BaseExample]]:
    """The calls that replay example `ref` ("method/example") from an empty hero_proc:
    what it follows, each after what that follows (once each), then the example itself.
    A reference to no example, or a cycle, is a ValueError."""
    order: list[tuple[str, BaseExample]] = []
    _visit(registry, ref, order, done=set(), path=())
    return order


def _visit(
    registry: Registry,
    ref: str,
    order: list[tuple[str, BaseExample]],
    done: set[str],
    path: tuple[str, ...],
) -> None:
    if ref in path:
        raise ValueError(f"examples follow each other in a cycle: {' -> '.join((*path, ref))}")
    if ref in done:
        return
    method, example = lookup(registry, ref)
    for param, source in example.takes if isinstance(example, Example) else ():
        if source not in given(example):
            raise ValueError(f"{ref} takes {param} from {source}, which it does not follow")
    for before in given(example):
        _visit(registry, before, order, done, (*path, ref))
    done.add(ref)
    order.append((method, example))


def lookup(registry: Registry, ref: str) -> tuple[str, BaseExample]:
    """The method and the example that `ref` ("method/example") names."""
    method, _, name = ref.rpartition("/")
    spec = registry.methods.get(method)
    found = [ex for ex in spec.examples if ex.name == name] if spec else []
    if not found:
        raise ValueError(f"no example {ref!r} (written as 'method/example')")
    return method, found[0]


VOLATILE = frozenset(
    {
        "uptime_s",
        "latency_ms",
        "duration_ms",
        "created_at_ms",
        "finished_at_ms",
        "started_at_ms",
        "peer_uid",
        "peer_pid",
        "socket",
        "run_id",
        "file",
        "elapsed_ms",
        "jobs_per_s",
        "at_ms",
        "plan_id",
        "plan_expires_at_ms",
        "deleted_at_ms",
    }
)

# The policies file the examples are true with (their test and the coverage run serve
# with it): one policy, disabled, so that it runs only when asked.
POLICIES = """\
[policies.user-week]
kind = "user"
finished_older_than = "7d"
keep_last = 5
every = "1h"
enabled = false
"""
_USER_WEEK = {
    "kind": "user",
    "statuses": ["succeeded", "failed", "cancelled"],
    "finished_older_than_ms": 604_800_000,
    "keep_last": 5,
}

HOME_PAGE = action_name("user", input_hash("render --page home", {"page": "home"}))
RESTART = action_name("service", input_hash("restart router", None))
ABOUT_PAGE = action_name("user", input_hash("render --page about", {"page": "about"}))
T = 1_790_000_000_000  # a time in the examples' results (volatile)
# The last of three submissions: jobs 1 and 2 of action HOME_PAGE, job 3 of RESTART.
THREE_SUBMISSIONS = "jobs.submit/another-kind"


def _job(job_id: int, action: str, kind: str, actor: str, target: str | None) -> dict[str, Any]:
    tags = ["codescaler", f"codescaler_kind_{kind}", f"codescaler_{actor}"]
    if target:
        tags.append(f"codescaler_target_{target}")
    return {
        "id": job_id,
        "action_id": action,
        "status": "pending",
        "created_at_ms": T,
        "finished_at_ms": None,
        "tags": tags,
        "kind": kind,
        "actor": actor,
        "target": target,
        "kept": False,
    }


def _summary(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobs_deleted": 0,
        "actions_deleted": 0,
        "job_ids": [],
        "action_ids": [],
        "errors": [],
        "dry_run": False,
        "jobs_matched": 0,
        "jobs_already_gone": 0,
        "jobs_failed": 0,
        "jobs_not_attempted": 0,
        "jobs_settled_gone": 0,
        "jobs_skipped_malformed": 0,
        "actions_matched": 0,
        "actions_already_gone": 0,
        "actions_in_use": 0,
        "actions_failed": 0,
        "actions_not_attempted": 0,
        "actions_settled_gone": 0,
        "foreign_action_ids": [],
        "orphan_actions_deleted": 0,
        "complete": True,
        "duration_ms": 3,
        "run_id": "5f0c6a1e9b2d4c83",
        "plan_id": None,
        "plan_expires_at_ms": None,
        "has_more": False,
        "actions_in_use_ids": [],
        "ids_omitted": False,
    }
    out.update(fields)
    return out


PLAN = "3e9f0a7c51b2d846"  # a plan's id in the examples (volatile)


def _preview(**fields: Any) -> dict[str, Any]:
    """The summary of a dry run, with its plan."""
    return _summary(dry_run=True, plan_id=PLAN, plan_expires_at_ms=T + 3_600_000, **fields)


def _run(run_id: str, params: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A history entry of a real run by uid 0 that ended ok."""
    out: dict[str, Any] = {
        "started_at_ms": T,
        "finished_at_ms": T,
        "peer_uid": 0,
        "peer_pid": 4242,
        "params": params,
        "outcome": "ok",
        "error": None,
        "jobs_matched": 0,
        "jobs_deleted": 0,
        "jobs_failed": 0,
        "actions_deleted": 0,
        "duration_ms": 3,
        "run_id": run_id,
        "policy": None,
        "reason": None,
        "dry_run": False,
        "jobs_already_gone": 0,
        "jobs_not_attempted": 0,
        "jobs_skipped_malformed": 0,
        "errors_count": 0,
        "background": False,
        "cancelled_by": None,
    }
    out.update(fields)
    return out


DISCOVER = (
    Example(
        "the-document",
        {},
        {"openrpc": "1.3.2", "info": {"title": "hero_codescalers", "version": __version__}},
        summary="This document (abbreviated here to its first members)",
        partial=True,
    ),
)

HEALTH = (
    Example(
        "healthy",
        {},
        {
            "status": "ok",
            "version": __version__,
            "uptime_s": 12.5,
            "hero_proc": {
                "socket": "/run/hero/hero_proc/rpc.sock",
                "reachable": True,
                "latency_ms": 0.4,
            },
        },
    ),
)

PING = (Example("pong", {}, {"pong": True}),)

SUBMIT = (
    Example(
        "first-submission",
        {
            "kind": "user",
            "actor": "alice",
            "target": "web",
            "script": "render --page home",
            "input": {"page": "home"},
        },
        {
            "job_id": 1,
            "action_id": HOME_PAGE,
            "tags": [
                "codescaler",
                "codescaler_kind_user",
                "codescaler_alice",
                "codescaler_target_web",
            ],
            "deduplicated": False,
        },
        summary="A new input: a new action and its first job",
    ),
    Example(
        "same-input-again",
        {"kind": "user", "actor": "bob", "script": "render --page home", "input": {"page": "home"}},
        {
            "job_id": 2,
            "action_id": HOME_PAGE,
            "tags": ["codescaler", "codescaler_kind_user", "codescaler_bob"],
            "deduplicated": True,
        },
        summary="The same script and input: the action is reused",
        given=("jobs.submit/first-submission",),
    ),
    Example(
        "another-kind",
        {"kind": "service", "actor": "alice", "script": "restart router"},
        {
            "job_id": 3,
            "action_id": RESTART,
            "tags": ["codescaler", "codescaler_kind_service", "codescaler_alice"],
            "deduplicated": False,
        },
        given=("jobs.submit/same-input-again",),
    ),
    Example(
        "same-group-again",
        {
            "kind": "user",
            "actor": "alice",
            "target": "web",
            "script": "render --page about",
            "input": {"page": "about"},
        },
        {
            "job_id": 4,
            "action_id": ABOUT_PAGE,
            "tags": [
                "codescaler",
                "codescaler_kind_user",
                "codescaler_alice",
                "codescaler_target_web",
            ],
            "deduplicated": False,
        },
        summary="A second job of alice's user jobs on web (job 1's group), from a new input",
        given=(THREE_SUBMISSIONS,),
    ),
)

LIST = (
    Example(
        "one-actor",
        {"actor": "alice"},
        {
            "jobs": [
                _job(1, HOME_PAGE, "user", "alice", "web"),
                _job(3, RESTART, "service", "alice", None),
            ],
            "next_cursor": None,
            "jobs_skipped_malformed": 0,
        },
        summary="alice's jobs, oldest first",
        given=(THREE_SUBMISSIONS,),
    ),
    Example(
        "not-finished",
        {"kind": "service", "limit": 100, "statuses": ["pending", "running"]},
        {
            "jobs": [_job(3, RESTART, "service", "alice", None)],
            "next_cursor": None,
            "jobs_skipped_malformed": 0,
        },
        summary="Jobs of kind service still waiting or running",
        given=(THREE_SUBMISSIONS,),
    ),
)

STATS = (
    Example(
        "after-three-submissions",
        {},
        {
            "codescaler": {
                "jobs": 3,
                "actions": 2,
                "jobs_by_kind": {"service": 1, "user": 2},
                "actions_by_kind": {"service": 1, "user": 1},
                "jobs_by_status": {"pending": 3},
                "jobs_skipped_malformed": 0,
                "actions_skipped_malformed": 0,
            },
            "hero_proc": {"job_count": 3, "action_count": 2, "running_count": 0},
        },
        given=(THREE_SUBMISSIONS,),
    ),
)

CLEANUP = (
    Example(
        "dry-run",
        {"actor": "alice", "dry_run": True},
        _preview(
            job_ids=[1, 3],
            action_ids=[HOME_PAGE, RESTART],
            jobs_matched=2,
            actions_matched=2,
        ),
        summary="What removing alice's jobs would do, and its plan; nothing changes",
        given=(THREE_SUBMISSIONS,),
    ),
    Example(
        "dry-run-with-reason",
        {"actor": "alice", "dry_run": True, "reason": "what would alice's cleanup remove?"},
        _preview(
            job_ids=[1, 3],
            action_ids=[HOME_PAGE, RESTART],
            jobs_matched=2,
            actions_matched=2,
        ),
        summary="The same, with the reason the history keeps",
        given=(THREE_SUBMISSIONS,),
    ),
    Example(
        "one-kind",
        {"kind": "user"},
        _summary(
            jobs_deleted=2,
            actions_deleted=1,
            job_ids=[1, 2],
            action_ids=[HOME_PAGE],
            jobs_matched=2,
            actions_matched=1,
        ),
        summary="Every job of kind user and their action",
        given=(THREE_SUBMISSIONS,),
    ),
    Example(
        "keep-newest",
        {"dry_run": True, "keep_last": 1},
        _preview(
            job_ids=[1],
            action_ids=[HOME_PAGE],
            jobs_matched=1,
            actions_matched=1,
        ),
        summary="Keep the newest job of each (kind, actor, target): only job 1 has a newer one",
        given=("jobs.submit/same-group-again",),
    ),
    Example(
        "finished-a-week-ago",
        {
            "dry_run": True,
            "statuses": ["succeeded", "failed", "cancelled"],
            "finished_older_than_ms": 604_800_000,
        },
        _preview(),
        summary="What a retention policy would take: jobs still pending are never selected",
        given=(THREE_SUBMISSIONS,),
    ),
    Example(
        "everything-left",
        {},
        _summary(
            jobs_deleted=1,
            actions_deleted=1,
            job_ids=[3],
            action_ids=[RESTART],
            jobs_matched=1,
            actions_matched=1,
        ),
        summary="Every codescaler job still there",
        given=("jobs.cleanup/one-kind",),
    ),
    Example(
        "apply-a-plan",
        {"plan_id": PLAN, "reason": "alice's preview, approved"},
        _summary(
            jobs_deleted=2,
            actions_deleted=1,
            job_ids=[1, 3],
            action_ids=[HOME_PAGE, RESTART],
            jobs_matched=2,
            actions_matched=2,
            actions_in_use=1,
            actions_in_use_ids=[HOME_PAGE],
            plan_id=PLAN,
        ),
        summary="The dry run's plan, applied after alice submitted job 4: jobs 1 and 3 "
        "go, job 4 (not in the plan) stays, and so does job 1's action, which bob's job 2 "
        "still uses",
        given=("jobs.cleanup/dry-run", "jobs.submit/same-group-again"),
        takes=(("plan_id", "jobs.cleanup/dry-run"),),
    ),
    Example(
        "first-of-many",
        {"kind": "user", "max_jobs": 1},
        _summary(
            jobs_deleted=1,
            job_ids=[1],
            action_ids=[HOME_PAGE],
            jobs_matched=1,
            actions_matched=1,
            actions_in_use=1,
            actions_in_use_ids=[HOME_PAGE],
            has_more=True,
        ),
        summary="A bounded run: one job of kind user, and more are left (has_more)",
        given=(THREE_SUBMISSIONS,),
    ),
    Example(
        "counts-only",
        {"dry_run": True, "ids": False},
        _preview(jobs_matched=3, actions_matched=2, ids_omitted=True),
        summary="A dry run of everything, without the id lists (its plan has every id)",
        given=(THREE_SUBMISSIONS,),
    ),
)

HISTORY = (
    Example(
        "last-two-runs",
        {"limit": 2},
        {
            "runs": [
                _run("9a41d2c07e5b3f18", {}, jobs_matched=1, jobs_deleted=1, actions_deleted=1),
                _run(
                    "5f0c6a1e9b2d4c83",
                    {"kind": "user"},
                    jobs_matched=2,
                    jobs_deleted=2,
                    actions_deleted=1,
                ),
            ],
            "next_cursor": None,
        },
        summary="Newest first (a next_cursor, when not null, gives older runs)",
        given=("jobs.cleanup/everything-left",),
    ),
    Example(
        "dry-runs-only",
        {"limit": 20, "dry_run": True},
        {
            "runs": [
                _run(
                    "c3e8b7a05d1f2964",
                    {"actor": "alice"},
                    dry_run=True,
                    jobs_matched=2,
                    reason="what would alice's cleanup remove?",
                ),
            ],
            "next_cursor": None,
        },
        summary="Filtered: the dry runs, with the reason each was given",
        given=("jobs.cleanup/dry-run-with-reason",),
    ),
)


def _policy(last_run: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "user-week",
        "enabled": False,
        "dry_run": False,
        "every_ms": 3_600_000,
        "orphan_actions": False,
        "params": _USER_WEEK,
        "next_due_ms": None,
        "last_fired_ms": None,
        "running": False,
        "last_run": last_run,
    }


_POLICIES_FILE = "/etc/hero/hero_codescalers.policies.toml"

RETENTION_LIST = (
    Example(
        "configured",
        {},
        {"policies": [_policy()], "file": _POLICIES_FILE, "dry_run_switch": False},
        summary="One policy, disabled: it runs only when asked (retention.run)",
    ),
    Example(
        "after-a-run",
        {},
        {
            "policies": [
                _policy(
                    _run(
                        "7b2e91c4d05a6f38",
                        _USER_WEEK,
                        policy="user-week",
                        dry_run=True,
                        reason="before enabling it",
                    )
                )
            ],
            "file": _POLICIES_FILE,
            "dry_run_switch": False,
        },
        summary="Its last run: who ran it, why, and what it did",
        given=("retention.run/dry-run",),
    ),
)

RETENTION_RUN = (
    Example(
        "dry-run",
        {"name": "user-week", "dry_run": True, "reason": "before enabling it"},
        _summary(dry_run=True),
        summary="Pending jobs are never a policy's: it takes finished ones only",
        given=(THREE_SUBMISSIONS,),
    ),
)


BACKGROUND = "jobs.cleanup_start/in-the-background"


def _status(**fields: Any) -> dict[str, Any]:
    """The status of a run of kind user's two jobs, ended ok, read from its record."""
    out: dict[str, Any] = {
        "run_id": "5f0c6a1e9b2d4c83",
        "phase": "done",
        "source": "record",
        "outcome": "ok",
        "error": None,
        "dry_run": False,
        "background": False,
        "policy": None,
        "peer_uid": 0,
        "peer_pid": 4242,
        "started_at_ms": T,
        "finished_at_ms": T,
        "elapsed_ms": 3,
        "jobs_listed": None,
        "jobs_left_at_most": None,
        "jobs_matched": 2,
        "jobs_deleted": 2,
        "jobs_failed": 0,
        "actions_deleted": 1,
        "jobs_per_s": 666.7,
        "eta_ms": None,
        "cancelled_by": None,
        "summary": None,
    }
    out.update(fields)
    return out


_USER_JOBS_DELETED = _summary(
    jobs_deleted=2,
    actions_deleted=1,
    job_ids=[1, 2],
    action_ids=[HOME_PAGE],
    jobs_matched=2,
    actions_matched=1,
)

CLEANUP_START = (
    Example(
        "in-the-background",
        {"kind": "user"},
        {"run_id": "5f0c6a1e9b2d4c83", "started_at_ms": T},
        summary="Every job of kind user, in the background: its run id at once",
        given=(THREE_SUBMISSIONS,),
    ),
)

CLEANUP_STATUS = (
    Example(
        "once-done",
        {"run_id": "5f0c6a1e9b2d4c83"},
        _status(source="memory", background=True, summary=_USER_JOBS_DELETED),
        summary="A background run once done: its counts, rate and summary",
        given=(BACKGROUND,),
        takes=(("run_id", BACKGROUND),),
    ),
    Example(
        "a-foreground-run",
        {"run_id": "5f0c6a1e9b2d4c83"},
        _status(),
        summary="A run whose summary went to its caller: its record",
        given=("jobs.cleanup/one-kind",),
        takes=(("run_id", "jobs.cleanup/one-kind"),),
    ),
)

CLEANUP_CANCEL = (
    Example(
        "after-its-end",
        {"run_id": "5f0c6a1e9b2d4c83"},
        _status(source="memory", background=True, summary=_USER_JOBS_DELETED),
        summary="A run that has already ended is left as it was: its status",
        given=(BACKGROUND,),
        takes=(("run_id", BACKGROUND),),
    ),
)


def _tombstone(job: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The tombstone of a job of `_job` that the run `run_id` deleted."""
    job = dict(job)
    del job["kept"]
    return {**job, "context": None, "run_id": run_id, "deleted_at_ms": T}


DELETED = (
    Example(
        "one-job",
        {"id": 1},
        {
            "jobs": [_tombstone(_job(1, HOME_PAGE, "user", "alice", "web"), "5f0c6a1e9b2d4c83")],
            "next_cursor": None,
        },
        summary="What happened to job 1: the run that deleted it, when, and the job as it was",
        given=("jobs.cleanup/one-kind",),
    ),
    Example(
        "one-actor",
        {"actor": "alice", "limit": 10},
        {
            "jobs": [
                _tombstone(_job(3, RESTART, "service", "alice", None), "9a41d2c07e5b3f18"),
                _tombstone(_job(1, HOME_PAGE, "user", "alice", "web"), "5f0c6a1e9b2d4c83"),
            ],
            "next_cursor": None,
        },
        summary="alice's deleted jobs, newest first, over two runs",
        given=("jobs.cleanup/everything-left",),
    ),
)
