"""Helpers that put jobs straight into a simulator's store, and read it back; the
multi-page walk that the cleanup tests pin."""

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
) -> int:
    """A job as jobs.submit makes it (or with the given action, context and tags); its id."""
    name = action or action_name(kind, f"{kind}0")
    if (name, context) not in store.actions:
        tags = action_tags(kind) if action_tags_ is None else action_tags_
        store.action_set({"name": name, "context": context, "spec": {"script": "x", "tags": tags}})
    tags = job_tags(actor, target) if extra_tags is None else extra_tags
    made = store.job_create(
        {
            "action": name,
            "context": context,
            "tags": tags,
            "status": status,
            "created_at_ms": created_at_ms,
        }
    )
    job_id: int = made["id"]
    return job_id


def codescaler_ids(store: Store) -> set[int]:
    return {i for i, j in store.jobs.items() if "codescaler" in j["tags"]}


def outside(store: Store, selected: set[int]) -> dict[int, Any]:
    """The jobs a cleanup of `selected` must leave exactly as they are."""
    return {i: dict(j) for i, j in store.jobs.items() if i not in selected}


def assert_accounted(summary: dict[str, Any]) -> None:
    """The summary's counts add up and every failure has its line in `errors`; a run that
    skipped malformed jobs or left jobs unattempted is not complete."""
    if summary["jobs_skipped_malformed"] or summary["jobs_not_attempted"]:
        assert summary["complete"] is False
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
    in_use = [e for e in summary["errors"] if e.startswith("action ") and "in use" in e]
    assert len(in_use) == summary["actions_in_use"]
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
