"""Helpers that put jobs straight into a simulator's store, and read it back; the
multi-page walk that the cleanup tests pin; `selected`, the tests' own reading of
which jobs a selection means, written from the specification, not from the
service's `Selector`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from structlog.testing import capture_logs

from hero_codescalers.logs import merge_call
from hero_codescalers.simulator import Store
from hero_codescalers.tags import action_name, action_tags, job_tags

from ..conftest import Caller, Service

NOW = 1_800_000_000_000
DAY = 86_400_000


def add_job(
    store: Store,
    *,
    kind: str = "user",
    actor: str = "alice",
    target: str | None = None,
    status: str = "succeeded",
    created_at_ms: int | None = NOW,
    action: str | None = None,
    action_tags_: list[str] | None = None,
    extra_tags: list[str] | None = None,
    context: str | None = None,
    finished_at_ms: int | str | None = "default",
    kept: bool = False,
) -> int:
    """A job as jobs.submit makes it (or with the given action, context and tags; `kept`:
    tagged `codescaler_keep`); its id."""
    name = action or action_name(kind, f"{kind}0")
    if (name, context) not in store.actions:
        tags = action_tags(kind) if action_tags_ is None else action_tags_
        store.action_set({"name": name, "context": context, "spec": {"script": "x", "tags": tags}})
    tags = job_tags(actor, target) if extra_tags is None else extra_tags
    if kept:
        tags = [*tags, "codescaler_keep"]
    params: dict[str, Any] = {
        "action": name,
        "context": context,
        "tags": tags,
        "status": status,
        "created_at_ms": created_at_ms,
    }
    if finished_at_ms != "default":  # else the simulator's: the creation time, when terminal
        params["finished_at_ms"] = finished_at_ms
    made = store.job_create(params)
    job_id: int = made["id"]
    return job_id


TERMINAL = ("succeeded", "failed", "cancelled")


def _names(tags: list[str]) -> tuple[str | None, str | None, str | None]:
    """(kind, actor, target) as the README's tag scheme writes them: `codescaler_kind_K`,
    `codescaler_A` (A without `_`, and not the `codescaler_keep` exemption),
    `codescaler_target_T`."""
    kind = actor = target = None
    for tag in tags:
        rest = tag.partition("codescaler_")[2] if tag.startswith("codescaler_") else None
        if rest is None:
            continue
        if rest.startswith("kind_"):
            kind = rest[5:]
        elif rest.startswith("target_"):
            target = rest[7:]
        elif "_" not in rest and rest != "keep":
            actor = rest
    return kind, actor, target


def selected(
    jobs: dict[int, dict[str, Any]],
    *,
    now: int = NOW,
    kind: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    older_than_ms: int | None = None,
    statuses: list[str] | None = None,
    status: str | None = None,
    finished_older_than_ms: int | None = None,
    keep_last: int | None = None,
    include_kept: bool = False,
    **_: Any,
) -> set[int]:
    """The ids of the jobs (as the store holds them) that a `jobs.cleanup` or `jobs.list`
    with these params selects at time `now`. Other params (dry_run, reason, limit...)
    select nothing and are ignored."""
    chosen = []
    for job_id, job in jobs.items():
        tags = job["tags"] or []
        created, finished = job["created_at_ms"], job["finished_at_ms"]
        wanted = [
            "codescaler" in tags,
            kind is None or f"codescaler_kind_{kind}" in tags,
            target is None or f"codescaler_target_{target}" in tags,
            actor is None or f"codescaler_{actor}" in tags,
            older_than_ms is None or (created is not None and created <= now - older_than_ms),
            statuses is None or job["status"] in statuses,
            status is None or job["status"] == status,
            finished_older_than_ms is None
            or (
                job["status"] in TERMINAL
                and finished is not None
                and finished <= now - finished_older_than_ms
            ),
            include_kept or "codescaler_keep" not in tags,
        ]
        if all(wanted):
            chosen.append(job_id)
    if keep_last is None:
        return set(chosen)
    groups: dict[tuple[str | None, str | None, str | None], list[int]] = {}
    for job_id in chosen:
        groups.setdefault(_names(jobs[job_id]["tags"]), []).append(job_id)

    def newest_first(job_id: int) -> tuple[bool, int, int]:
        """The later creation time first, then the larger id; no creation time is oldest."""
        created = jobs[job_id]["created_at_ms"]
        return (created is not None, created or 0, job_id)

    out = set()
    for members in groups.values():
        members.sort(key=newest_first, reverse=True)
        out.update(members[keep_last:])
    return out


def codescaler_ids(store: Store) -> set[int]:
    return {i for i, j in store.jobs.items() if "codescaler" in j["tags"]}


def outside(store: Store, selected: set[int]) -> dict[int, Any]:
    """The jobs a cleanup of `selected` must leave exactly as they are."""
    return {i: dict(j) for i, j in store.jobs.items() if i not in selected}


def assert_accounted(summary: dict[str, Any]) -> None:
    """The summary's counts add up and every failure has its line in `errors`; actions kept
    in use are listed on their own, never in `errors`; a run that skipped malformed jobs
    or left jobs unattempted is not complete. With `ids_omitted`, every id list is empty."""
    if summary["jobs_skipped_malformed"] or summary["jobs_not_attempted"]:
        assert summary["complete"] is False
    if summary["ids_omitted"]:
        lists = ("job_ids", "action_ids", "foreign_action_ids", "actions_in_use_ids")
        assert all(summary[name] == [] for name in lists)
        summary = {
            **summary,
            "job_ids": list(range(summary["jobs_matched"])),
            "action_ids": ["?"] * summary["actions_matched"],
            "actions_in_use_ids": ["?"] * summary["actions_in_use"],
        }
    assert summary["jobs_matched"] == len(summary["job_ids"]) == len(set(summary["job_ids"]))
    done = summary["jobs_deleted"] + summary["jobs_already_gone"] + summary["jobs_failed"]
    done += summary["jobs_not_attempted"]
    assert done == (0 if summary["dry_run"] else summary["jobs_matched"])
    assert summary["jobs_settled_gone"] <= summary["jobs_deleted"]
    assert summary["actions_settled_gone"] <= summary["actions_deleted"]
    if not summary["dry_run"]:
        actions = sum(
            summary[f"actions_{k}"]
            for k in ("deleted", "already_gone", "in_use", "failed", "not_attempted")
        )
        assert actions == summary["actions_matched"]
    assert summary["actions_matched"] == len(summary["action_ids"])
    job_lines = [e for e in summary["errors"] if e.startswith("job ")]
    assert len(job_lines) == summary["jobs_failed"]
    assert not [e for e in summary["errors"] if "in use" in e]
    assert len(summary["actions_in_use_ids"]) == summary["actions_in_use"]
    assert set(summary["actions_in_use_ids"]) <= set(summary["action_ids"])
    if summary["dry_run"]:
        assert summary["actions_deleted"] == summary["actions_in_use"] == 0


def interleaved(store: Store, n: int = 24) -> tuple[list[int], list[int]]:
    """`n` jobs, every third one young (kept by an age filter of a day); (old, young)."""
    old, young = [], []
    for i in range(n):
        if i % 3 == 2:
            young.append(add_job(store, created_at_ms=NOW))
        else:
            old.append(add_job(store, created_at_ms=NOW - 2 * DAY))
    return old, young


def deleted_before_list(
    store: Store, ids: list[int], number: int
) -> Callable[[str, dict[str, Any]], None]:
    """A simulator hook: someone else deletes `ids` just before the `number`th job.list."""
    lists = 0

    def hook(method: str, params: dict[str, Any]) -> None:
        nonlocal lists
        if method == "job.list":
            lists += 1
            if lists == number:
                for job_id in ids:
                    store.job_delete({"id": job_id})

    return hook


async def walk(caller: Caller, service: Service) -> tuple[dict[str, Any], int]:
    """A cleanup of the jobs older than a day, pages of 4: its summary and its passes."""
    service.engine.clock = lambda: NOW
    service.engine.page_size = 4
    with capture_logs(processors=[merge_call]) as logs:
        summary = await caller.call("jobs.cleanup", {"older_than_ms": DAY})
    [end] = [e for e in logs if e["event"] == "cleanup_finished"]
    return summary, end["passes"]
