"""Cleanup invariants over random populations, predicates (hostile names included) and faults.

Every example goes through the real service socket to the real simulator socket.
"""

from __future__ import annotations

import random
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hero_codescalers.simulator import Faults, Store
from hero_codescalers.tags import (
    action_name,
    action_tags,
    check_actor,
    check_kind_or_target,
    is_codescaler_action,
    job_tags,
)

from ..integration.population import selected
from ..names import ACTOR_ONLY, HOSTILE_NAMES
from .conftest import Stack

NOW = 1_800_000_000_000
DAY = 86_400_000
KINDS = ["user", "service", "x_y"]
ACTORS = ["alice", "bob", "ci-bot"]
TARGETS = ["web", "db", None]
STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"]
HOSTILE = [*HOSTILE_NAMES.values(), *ACTOR_ONLY.values()]
# How a job relates to the scope: only "scoped" and "foreign-action" jobs carry the
# literal `codescaler` tag; the others carry tags a prefix match would confuse with it.
STYLES = ["scoped", "scoped", "scoped", "lookalike", "no-scope", "untagged", "foreign-action"]

job_strategy = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(KINDS),
        "actor": st.sampled_from(ACTORS),
        "target": st.sampled_from(TARGETS),
        "status": st.sampled_from(STATUSES),
        "age": st.one_of(st.none(), st.integers(0, 10 * DAY)),
        # Finished this long ago (null: no finish time; given whatever the status).
        "finished": st.one_of(st.none(), st.integers(0, 10 * DAY)),
        "kept": st.booleans(),
        "style": st.sampled_from(STYLES),
        "action": st.integers(0, 3),
    }
)
name_of = lambda valid: st.one_of(st.none(), st.sampled_from(valid), st.sampled_from(HOSTILE))  # noqa: E731
predicate_strategy = st.fixed_dictionaries(
    {
        "kind": name_of(KINDS),
        "target": name_of(["web", "db"]),
        "actor": name_of(ACTORS),
        "older_than_ms": st.one_of(st.none(), st.integers(0, 10 * DAY)),
        "statuses": st.one_of(
            st.none(), st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3)
        ),
        "finished_older_than_ms": st.one_of(st.none(), st.integers(0, 10 * DAY)),
        "keep_last": st.one_of(st.none(), st.integers(1, 3)),
        "include_kept": st.one_of(st.none(), st.booleans()),
    }
)
FAULTS = {
    "none": Faults(),
    "flaky": Faults(
        fail_rate={"job.delete": 0.3, "action.delete": 0.3, "job.list": 0.2},
        drop_rate={"job.delete": 0.15, "action.delete": 0.15},
    ),
}


def populate(store: Store, jobs: list[dict[str, Any]]) -> None:
    """Put `jobs` in the store, sharing actions the way repeated inputs do."""
    for job in jobs:
        kind, actor, target = job["kind"], job["actor"], job["target"]
        scoped_tags = job_tags(actor, target)
        style = job["style"]
        if style == "scoped":
            name, spec_tags, extra = (
                action_name(kind, f"in{job['action']}"),
                action_tags(kind),
                scoped_tags,
            )
        elif style == "lookalike":
            name, spec_tags, extra = (
                f"lookalike_{job['action']}",
                ["codescalerfoo", f"codescaler_kind_{kind}"],
                scoped_tags,
            )
        elif style == "no-scope":
            name, spec_tags, extra = (
                f"noscope_{job['action']}",
                [f"codescaler_kind_{kind}"],
                scoped_tags,
            )
        elif style == "untagged":
            name, spec_tags, extra = f"other_{job['action']}", [], []
        else:  # foreign-action: in scope, but run from another service's action
            name, spec_tags, extra = f"tool_{job['action']}", [], [*action_tags(kind), *scoped_tags]
        key = (name, None)
        if key not in store.actions:
            store.action_set({"name": name, "spec": {"script": "x", "tags": spec_tags}})
        elif store.actions[key]["spec"]["tags"] != spec_tags:
            continue  # an action name is one thing; skip the clash rather than retag it
        created = None if job["age"] is None else NOW - job["age"]
        finished = None if job["finished"] is None else NOW - job["finished"]
        store.job_create(
            {
                "action": name,
                "tags": [*extra, "codescaler_keep"] if job["kept"] else extra,
                "status": job["status"],
                "created_at_ms": created,
                "finished_at_ms": finished,
            }
        )


def names_valid(predicate: dict[str, Any]) -> bool:
    checks = {"kind": check_kind_or_target, "target": check_kind_or_target, "actor": check_actor}
    try:
        for field, check in checks.items():
            if predicate[field] is not None:
                check(predicate[field])
    except ValueError:
        return False
    return True


def failed_ids(summary: dict[str, Any]) -> set[int]:
    return {int(m.group(1)) for e in summary["errors"] if (m := re.match(r"job (\d+): ", e))}


def check_accounting(summary: dict[str, Any]) -> None:
    assert summary["jobs_matched"] == len(summary["job_ids"]) == len(set(summary["job_ids"]))
    assert summary["jobs_matched"] == (
        summary["jobs_deleted"]
        + summary["jobs_already_gone"]
        + summary["jobs_failed"]
        + summary["jobs_not_attempted"]
    )
    assert summary["jobs_settled_gone"] <= summary["jobs_deleted"]
    assert len(failed_ids(summary)) == summary["jobs_failed"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=st.lists(job_strategy, max_size=40),
    predicate=predicate_strategy,
    page_size=st.integers(2, 9),
    fault=st.sampled_from(sorted(FAULTS)),
    seed=st.integers(0, 2**16),
)
def test_cleanup_invariants(
    stack: Stack,
    jobs: list[dict[str, Any]],
    predicate: dict[str, Any],
    page_size: int,
    fault: str,
    seed: int,
) -> None:
    """Deletes exactly the selection (never outside), accounts for every match, changes nothing
    when dry, deletes nothing the second time, and only the matched jobs' codescaler actions.
    With keep_last, the run after a complete one finds nothing more to select."""
    store = stack.sim.store
    store.reset()
    stack.sim.rng = random.Random(seed)
    stack.engine.page_size = page_size
    stack.engine.clock = lambda: NOW
    populate(store, jobs)
    params = {k: v for k, v in predicate.items() if v is not None}
    before = store.state()

    if not names_valid(predicate):
        answer = stack.answer("jobs.cleanup", params)
        assert answer["error"]["code"] == -32602
        assert store.state() == before
        return

    expected = selected(store.jobs, now=NOW, **params)
    own_actions = {
        j["action_id"]
        for i, j in store.jobs.items()
        if i in expected and is_codescaler_action(j["action_id"])
    }

    dry = stack.answer("jobs.cleanup", {**params, "dry_run": True})["result"]
    assert store.state() == before, "a dry run changed hero_proc"
    assert set(dry["job_ids"]) == expected
    assert set(dry["action_ids"]) == own_actions

    store.faults = FAULTS[fault]
    answer = stack.answer("jobs.cleanup", params)
    store.faults = Faults()
    if "error" in answer:
        # Every try of the first listing failed: an upstream error, and nothing touched.
        assert fault != "none", answer
        assert answer["error"]["code"] in (-32020, -32021), answer
        assert store.state() == before, "a run that answered an error changed hero_proc"
        return
    summary = answer["result"]
    deleted = set(before["jobs"]) - set(store.jobs)
    matched = set(summary["job_ids"])
    check_accounting(summary)
    assert deleted <= matched <= expected, "a job outside the selection was deleted"
    if fault == "none":
        assert summary["complete"] is True, "a run without faults did not complete"
        assert summary["errors"] == [], "a run without faults has no errors (in use is none)"
    if summary["complete"]:
        assert matched == expected
    assert matched - deleted <= failed_ids(summary), "a matched job is still there, unreported"
    gone_actions = {k.split("@")[0] for k in before["actions"]} - {k[0] for k in store.actions}
    assert gone_actions <= own_actions, "an action not of the matched jobs was deleted"

    rest = stack.answer("jobs.cleanup", params)["result"]
    assert set(rest["job_ids"]) == expected - deleted
    assert rest["jobs_deleted"] == len(expected - deleted)
    again = stack.answer("jobs.cleanup", params)["result"]
    assert again["jobs_matched"] == 0, "a second identical run found something"
    assert set(store.jobs) == set(before["jobs"]) - expected
