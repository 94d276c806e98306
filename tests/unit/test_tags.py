"""The tag scheme and the name rules: no name can widen a selection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hero_codescalers.heroproc import JobSummary, parse_job
from hero_codescalers.tags import (
    TERMINAL_STATUSES,
    Selector,
    action_name,
    action_tags,
    check_actor,
    check_kind_or_target,
    is_codescaler_action,
    job_tags,
    labels,
    recency,
)

from ..names import ACTOR_ONLY, HOSTILE_NAMES


def job(
    tags: list[str] | None,
    created: int | None = 0,
    *,
    status: str = "succeeded",
    finished: int | None = None,
    job_id: int = 1,
) -> JobSummary:
    """A listed job read as the service reads it (`parse_job`)."""
    parsed = parse_job(
        {
            "id": job_id,
            "action_id": "codescaler_user_0",
            "tags": tags,
            "status": status,
            "created_at_ms": created,
            "finished_at_ms": finished,
        }
    )
    assert parsed is not None
    return parsed


HOSTILE = [pytest.param(name, id=key) for key, name in HOSTILE_NAMES.items()]
ACTOR_HOSTILE = [*HOSTILE, *(pytest.param(name, id=key) for key, name in ACTOR_ONLY.items())]


@pytest.mark.parametrize("name", ACTOR_HOSTILE)
def test_hostile_actor_names_are_refused(name: str) -> None:
    """An actor name outside the safe alphabet, or colliding with another tag family, is refused."""
    with pytest.raises(ValueError):  # noqa: PT011 -- the reason is checked elsewhere
        check_actor(name)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_kind_and_target_names_are_refused(name: str) -> None:
    """Kind and target names follow the same safe alphabet."""
    with pytest.raises(ValueError):  # noqa: PT011
        check_kind_or_target(name)


@pytest.mark.parametrize("name", ["alice", "ci-bot", "a", "Bob.2", "x" * 64])
def test_ordinary_actor_names_are_accepted(name: str) -> None:
    """Everyday actor names pass unchanged."""
    assert check_actor(name) == name


@pytest.mark.parametrize("name", ["user", "service_router", "db-1", "v1.2"])
def test_ordinary_kind_and_target_names_are_accepted(name: str) -> None:
    """Kinds and targets may contain underscores: their tags have their own prefix."""
    assert check_kind_or_target(name) == name


def test_pushdown_prefers_actor_then_kind_then_target() -> None:
    """The most specific tag goes to hero_proc's filter; every filter is required exactly."""
    everything = Selector.build(kind="user", target="web", actor="alice")
    assert everything.pushdown == "codescaler_alice"
    assert everything.required == {
        "codescaler",
        "codescaler_alice",
        "codescaler_kind_user",
        "codescaler_target_web",
    }
    assert Selector.build(kind="user", target="web").pushdown == "codescaler_kind_user"
    assert Selector.build(target="web").pushdown == "codescaler_target_web"
    assert Selector.build().pushdown == "codescaler"


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param(["codescalerfoo"], id="prefix-look-alike"),
        pytest.param(["codescaler_x"], id="actor-tag-without-scope"),
        pytest.param(["codescaler_kind_user", "codescaler_alice"], id="all-but-scope"),
        pytest.param(["codescalers", "codescaler_alice"], id="plural-look-alike"),
        pytest.param([], id="untagged"),
        pytest.param(None, id="null-tags"),
    ],
)
def test_jobs_without_the_literal_scope_tag_never_match(tags: list[str] | None) -> None:
    """Only the literal `codescaler` tag puts a job in scope, whatever else it carries."""
    assert not Selector.build().matches(job(tags, 0))
    assert not Selector.build(actor="alice").matches(job(tags, 0))


def test_matching_is_exact_not_prefix() -> None:
    """`codescaler_alice2` is not actor `alice`; `codescaler_kind_users` is not kind `user`."""
    tags = ["codescaler", "codescaler_alice2", "codescaler_kind_users"]
    assert not Selector.build(actor="alice").matches(job(tags, 0))
    assert not Selector.build(kind="user").matches(job(tags, 0))
    assert Selector.build(actor="alice2", kind="users").matches(job(tags, 0))


def test_an_actor_cannot_select_a_kind() -> None:
    """`kind_user` as an actor would tag every `user` job: refused; no other actor matches it."""
    with pytest.raises(ValueError, match="no '_'"):
        Selector.build(actor="kind_user")
    user_job = ["codescaler", "codescaler_kind_user", "codescaler_bob"]
    assert Selector.build(actor="bob").matches(job(user_job, 0))
    assert not Selector.build(actor="user").matches(job(user_job, 0))
    assert not Selector.build(actor="kind-user").matches(job(user_job, 0))


def test_age_cutoff_is_inclusive_and_skips_unknown_ages() -> None:
    """Created at or before the cutoff matches; no `created_at_ms` never matches an age filter."""
    sel = Selector.build(created_before_ms=1_000)
    tags = ["codescaler"]
    assert sel.matches(job(tags, 1_000))
    assert sel.matches(job(tags, 0))
    assert not sel.matches(job(tags, 1_001))
    assert not sel.matches(job(tags, None))
    assert Selector.build().matches(job(tags, None))


SCOPED = ["codescaler", "codescaler_kind_user", "codescaler_alice"]


def test_statuses_select_only_the_statuses_named() -> None:
    """`statuses` is exact; without it any status matches, a missing one included."""
    sel = Selector.build(statuses=["failed", "cancelled"])
    assert sel.matches(job(SCOPED, status="failed"))
    assert sel.matches(job(SCOPED, status="cancelled"))
    assert not sel.matches(job(SCOPED, status="succeeded"))
    assert not sel.matches(job(SCOPED, status="running"))
    assert Selector.build().matches(job(SCOPED, status="running"))
    with pytest.raises(ValueError) as refused:  # noqa: PT011 -- the message is compared whole
        Selector.build(statuses=["done"])
    assert str(refused.value) == (
        "statuses must be some of pending, running, succeeded, failed, cancelled"
    )
    with pytest.raises(ValueError, match="statuses must be some of"):
        Selector.build(statuses=[])


def test_the_status_pushed_down_is_the_only_one_asked() -> None:
    """hero_proc's listing filters by status only when exactly one is asked."""
    assert Selector.build(statuses=["failed"]).pushdown_status == "failed"
    assert Selector.build(statuses=["failed", "failed"]).pushdown_status == "failed"
    assert Selector.build(statuses=["failed", "succeeded"]).pushdown_status is None
    assert Selector.build().pushdown_status is None


@pytest.mark.parametrize(
    ("status", "finished", "matches"),
    [
        pytest.param("succeeded", 1_000, True, id="at-the-cutoff"),
        pytest.param("failed", 0, True, id="before"),
        pytest.param("cancelled", 1_001, False, id="after"),
        pytest.param("succeeded", None, False, id="no-finish-time"),
        pytest.param("running", 0, False, id="running-with-a-finish-time"),
        pytest.param("pending", 0, False, id="pending-with-a-finish-time"),
    ],
)
def test_finished_cutoff_needs_a_finished_job_and_its_time(
    status: str, finished: int | None, matches: bool
) -> None:
    """Finished at or before the cutoff, in a terminal status; no time or not finished: never."""
    sel = Selector.build(finished_before_ms=1_000)
    assert sel.matches(job(SCOPED, status=status, finished=finished)) is matches


def test_kept_jobs_are_selected_only_when_asked() -> None:
    """`codescaler_keep` leaves a job out unless `include_kept`; a policy never selects it."""
    kept = job([*SCOPED, "codescaler_keep"])
    assert not Selector.build().matches(kept)
    assert not Selector.build(actor="alice").matches(kept)
    assert Selector.build(include_kept=True).matches(kept)
    assert not Selector.for_policy(statuses=["succeeded"]).matches(kept)
    assert Selector.build().matches(job([*SCOPED, "codescaler_keeper"]))


def test_a_policy_selects_terminal_jobs_unless_it_names_statuses() -> None:
    """`for_policy` defaults to succeeded, failed and cancelled; named statuses replace them."""
    policy = Selector.for_policy(kind="user")
    assert policy.statuses == TERMINAL_STATUSES == {"succeeded", "failed", "cancelled"}
    assert not policy.include_kept
    for status in ("pending", "running"):
        assert not policy.matches(job(SCOPED, status=status))
    assert Selector.for_policy(statuses=["running"]).matches(job(SCOPED, status="running"))
    given: dict[str, Any] = {
        "kind": "user",
        "target": "web",
        "actor": "alice",
        "created_before_ms": 5,
        "finished_before_ms": 7,
        "keep_last": 3,
    }
    assert Selector.for_policy(**given) == Selector.build(**given, statuses=TERMINAL_STATUSES)


def test_keep_last_selects_only_what_is_older_than_the_oldest_kept() -> None:
    """Unresolved, keep_last refuses to answer; resolved, a job is selected only if older
    than the oldest kept one of its group (the later time, then the larger id, is newer)."""
    sel = Selector.build(keep_last=1)
    with pytest.raises(RuntimeError) as refused:
        sel.matches(job(SCOPED))
    assert str(refused.value) == "keep_last is resolved from the whole listing first"
    alice = ("user", "alice", None)
    resolved = sel.keeping({alice: (True, 500, 7)})
    assert resolved.matches(job(SCOPED, 499, job_id=9))
    assert resolved.matches(job(SCOPED, 500, job_id=6))
    assert resolved.matches(job(SCOPED, None, job_id=8))
    assert not resolved.matches(job(SCOPED, 500, job_id=7))
    assert not resolved.matches(job(SCOPED, 500, job_id=8))
    assert not resolved.matches(job(SCOPED, 501, job_id=1))
    bob = ["codescaler", "codescaler_kind_user", "codescaler_bob"]
    assert not resolved.matches(job(bob, 0))  # a group without a floor: every job kept
    assert resolved.candidates.matches(job(SCOPED, 501))
    with pytest.raises(ValueError, match=r"^keep_last must be at least 1$"):
        Selector.build(keep_last=0)


@pytest.mark.parametrize("created", [0, -5, 1])
def test_a_job_without_a_creation_time_is_older_than_any_with_one(created: int) -> None:
    """Whatever the other's time (0 or below included), no time ranks older; then ids."""
    assert recency(job(SCOPED, None, job_id=9)) < recency(job(SCOPED, created, job_id=1))
    assert recency(job(SCOPED, None, job_id=1)) < recency(job(SCOPED, None, job_id=2))
    assert recency(job(SCOPED, created, job_id=1)) < recency(job(SCOPED, created, job_id=2))


def test_a_selection_within_a_plan_needs_both_the_plan_and_every_filter() -> None:
    """`within` narrows to the plan's jobs, each still held to every filter; the plan's
    candidates for keep_last are all the jobs the filters select, not only its own."""
    plan = Selector.build(actor="alice").within([1, 3])
    assert plan.job_ids == frozenset({1, 3})
    assert plan.matches(job(SCOPED, job_id=1))
    assert not plan.matches(job(SCOPED, job_id=2))  # not in the plan
    assert not plan.matches(job(["codescaler", "codescaler_bob"], job_id=3))  # out of scope
    assert not Selector.build().within([]).matches(job(SCOPED, job_id=1))
    assert Selector.build().matches(job(SCOPED, job_id=2))  # no plan: any id
    keeping = Selector.build(keep_last=1).within([1])
    assert keeping.candidates.job_ids is None
    assert keeping.candidates.matches(job(SCOPED, job_id=2))


def test_labels_read_back_what_the_tags_say() -> None:
    """A submitted job's tags give back its kind, actor and target."""
    tags = [*action_tags("user"), *job_tags("alice", "web")]
    assert labels(tags).kind == "user"
    assert labels(tags).actor == "alice"
    assert labels(tags).target == "web"
    assert labels(action_tags("user")).actor is None
    assert labels([*tags, "codescaler_keep"]).actor == "alice"
    assert labels(["codescaler", "codescaler_keep"]).actor is None


ACTOR_RULE = (
    "must be ASCII letters, digits, '.' or '-' (no '_'), starting and ending with a letter or digit"
)
KIND_TARGET_RULE = (
    "must be ASCII letters, digits, '.', '-' or '_', starting and ending with a letter or digit"
)


@pytest.mark.parametrize(
    ("check", "name", "reason"),
    [
        pytest.param(check_actor, "", "must not be empty", id="actor-empty"),
        pytest.param(check_kind_or_target, "", "must not be empty", id="kind-empty"),
        pytest.param(check_actor, "x" * 65, "must be at most 64 characters", id="actor-long"),
        pytest.param(
            check_kind_or_target, "x" * 65, "must be at most 64 characters", id="kind-long"
        ),
        pytest.param(check_actor, "kind_user", ACTOR_RULE, id="actor-underscore"),
        pytest.param(check_actor, "a b", ACTOR_RULE, id="actor-space"),
        pytest.param(check_kind_or_target, "a b", KIND_TARGET_RULE, id="kind-space"),
        pytest.param(check_kind_or_target, "-a", KIND_TARGET_RULE, id="kind-leading-hyphen"),
        pytest.param(check_actor, "kind", "'kind' is reserved by the tag scheme", id="kind"),
        pytest.param(check_actor, "target", "'target' is reserved by the tag scheme", id="target"),
        pytest.param(check_actor, "keep", "'keep' is reserved by the tag scheme", id="keep"),
    ],
)
def test_a_refused_name_says_which_rule_it_breaks(
    check: Callable[[str], str], name: str, reason: str
) -> None:
    """The reason is the caller's `data` in -32602: it names the broken rule, word for word."""
    with pytest.raises(ValueError) as refused:  # noqa: PT011 -- the message is compared whole
        check(name)
    assert str(refused.value) == reason


def test_a_name_of_exactly_the_maximum_length_is_accepted() -> None:
    """64 characters is the limit itself, for every kind of name."""
    assert check_kind_or_target("k" * 64) == "k" * 64
    assert check_actor("a" * 64) == "a" * 64


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("codescaler_some_other", id="unknown-family"),
        pytest.param("codescaler_user_0123abcd", id="action-name-shape"),
    ],
)
def test_a_tag_with_a_further_underscore_is_not_an_actor(tag: str) -> None:
    """Actor tags have no underscore after `codescaler_`; any other such tag names no actor."""
    read = labels(["codescaler", tag, "codescaler_kind_user"])
    assert read.actor is None
    assert read.kind == "user"
    assert labels(["codescaler", tag, "codescaler_alice"]).actor == "alice"


def test_only_the_action_name_prefix_marks_a_codescaler_action() -> None:
    """Action names this service makes start with `codescaler_`; look-alikes are foreign."""
    assert is_codescaler_action(action_name("user", "0123abcd"))
    assert is_codescaler_action("codescaler_x")
    assert not is_codescaler_action("codescaler")
    assert not is_codescaler_action("codescalerx_user_1")
    assert not is_codescaler_action("docs_build_0123abcd")
    assert not is_codescaler_action("my_codescaler_user_1")
