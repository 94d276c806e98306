"""The tag scheme of codescaler jobs and actions, and the rules for names.

Every job this service enqueues carries

    codescaler                      the scope of every cleanup
    codescaler_<actor>              who asked for it
    codescaler_kind_<kind>          what feature it runs
    codescaler_target_<target>      what it acts on (when there is a target)

and runs the action ``codescaler_<kind>_<hash>``, whose own tags are the ones
shared by every job that reuses it: ``codescaler`` and ``codescaler_kind_<kind>``.
An operator may add ``codescaler_keep`` to a job: a kept job is never selected by
a retention policy, and by a manual cleanup only when it asks (`include_kept`).

Names must never widen a selection. The three tag families differ after
``codescaler_``: actor tags have no further underscore, kind tags start with
``kind_``, target tags with ``target_``. So an actor name may not contain ``_``
(``kind_user`` would otherwise select every job of kind ``user``) and may not
be ``kind``, ``target`` or ``keep`` (whose tag is the exemption); kind and target
names may. All names are short, non-empty ASCII from a small alphabet, which also
rules out wildcards, ``%``, ``..``, whitespace and unicode look-alikes. Matching is
always exact: the server-side tag filter of hero_proc is a prefix match and only
narrows.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

SCOPE_TAG = "codescaler"
ACTION_PREFIX = "codescaler_"
KIND_PREFIX = "codescaler_kind_"
TARGET_PREFIX = "codescaler_target_"
KEEP_TAG = "codescaler_keep"
NAME_MAX_LENGTH = 64

# hero_proc's job statuses (hero_proc_contract.md); the terminal ones have finished.
JobStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[JobStatus, ...] = typing.get_args(JobStatus)
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset({"succeeded", "failed", "cancelled"})

_ALNUM = "A-Za-z0-9"
# Starts and ends with a letter or digit; dots and hyphens inside, never two dots.
ACTOR_PATTERN = rf"^(?!.*\.\.)[{_ALNUM}](?:[{_ALNUM}.-]*[{_ALNUM}])?$"
KIND_TARGET_PATTERN = rf"^(?!.*\.\.)[{_ALNUM}](?:[{_ALNUM}._-]*[{_ALNUM}])?$"
RESERVED_ACTORS = frozenset({"kind", "target", "keep"})

_ACTOR_RE = re.compile(ACTOR_PATTERN)
_KIND_TARGET_RE = re.compile(KIND_TARGET_PATTERN)


def check_actor(name: str) -> str:
    """Return `name` if it is a valid actor name, else raise ValueError saying why."""
    _check_common(name)
    if not _ACTOR_RE.fullmatch(name):
        raise ValueError(
            "must be ASCII letters, digits, '.' or '-' (no '_'), "
            "starting and ending with a letter or digit"
        )
    if name in RESERVED_ACTORS:
        raise ValueError(f"'{name}' is reserved by the tag scheme")
    return name


def check_kind_or_target(name: str) -> str:
    """Return `name` if it is a valid kind or target name, else raise ValueError."""
    _check_common(name)
    if not _KIND_TARGET_RE.fullmatch(name):
        raise ValueError(
            "must be ASCII letters, digits, '.', '-' or '_', "
            "starting and ending with a letter or digit"
        )
    return name


def _check_common(name: str) -> None:
    if not name:
        raise ValueError("must not be empty")
    if len(name) > NAME_MAX_LENGTH:
        raise ValueError(f"must be at most {NAME_MAX_LENGTH} characters")


def actor_tag(actor: str) -> str:
    return f"{SCOPE_TAG}_{actor}"


def kind_tag(kind: str) -> str:
    return f"{KIND_PREFIX}{kind}"


def target_tag(target: str) -> str:
    return f"{TARGET_PREFIX}{target}"


def action_name(kind: str, input_hash: str) -> str:
    return f"{ACTION_PREFIX}{kind}_{input_hash}"


def action_tags(kind: str) -> list[str]:
    """Tags of a shared action: the ones every job reusing it has in common."""
    return [SCOPE_TAG, kind_tag(kind)]


def job_tags(actor: str, target: str | None) -> list[str]:
    """Tags a job adds to those it inherits from its action."""
    tags = [actor_tag(actor)]
    if target is not None:
        tags.append(target_tag(target))
    return tags


def is_codescaler_action(name: str) -> bool:
    """Whether an action name is one this service creates."""
    return name.startswith(ACTION_PREFIX)


@dataclass(frozen=True, slots=True)
class Labels:
    """What a job's tags say about it (None where a tag is absent)."""

    kind: str | None
    actor: str | None
    target: str | None


def labels(tags: Iterable[str]) -> Labels:
    """Read kind, actor and target back from a job's tags."""
    kind = actor = target = None
    for tag in tags:
        if tag.startswith(KIND_PREFIX):
            kind = tag[len(KIND_PREFIX) :]
        elif tag.startswith(TARGET_PREFIX):
            target = tag[len(TARGET_PREFIX) :]
        elif (
            tag.startswith(ACTION_PREFIX)
            and "_" not in tag[len(ACTION_PREFIX) :]
            and tag != KEEP_TAG
        ):
            actor = tag[len(ACTION_PREFIX) :]
    return Labels(kind=kind, actor=actor, target=target)


class Job(Protocol):
    """A job as the selection reads it (`heroproc.JobSummary`)."""

    @property
    def id(self) -> int: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def status(self) -> str | None: ...
    @property
    def created_at_ms(self) -> int | None: ...
    @property
    def finished_at_ms(self) -> int | None: ...


Group = tuple[str | None, str | None, str | None]


def group(job: Job) -> Group:
    """The (kind, actor, target) group of a job, for `keep_last` (None where a tag is absent:
    jobs without a target form their own group)."""
    return _group(tuple(job.tags))


# keep_last reads the group of every listed job twice (its reading, then the walk), and
# jobs share few tag lists: 0.4 µs a job cached against 4.3 µs (100,000 seeded jobs).
@functools.lru_cache(maxsize=4096)
def _group(tags: tuple[str, ...]) -> Group:
    lab = labels(tags)
    return lab.kind, lab.actor, lab.target


Recency = tuple[bool, int, int]


def recency(job: Job) -> Recency:
    """How new a job is, for `keep_last`: a later `created_at_ms` is newer, and between equal
    times the larger id (ids only grow); a job without `created_at_ms` is older than any job
    with one (whatever that time, 0 or below included)."""
    created = job.created_at_ms
    if created is None:
        return False, 0, job.id
    return True, created, job.id


@dataclass(frozen=True, slots=True)
class Selector:
    """Which codescaler jobs an operation selects: the one predicate, `matches`.

    Built from validated names only; `required` always holds the scope tag. Each
    filter given must hold: every required tag present; the status one of
    `statuses` (None: any status); created at or before `created_before_ms`;
    finished (a terminal status) at or before `finished_before_ms`; not tagged
    `codescaler_keep` unless `include_kept`. `keep_last` needs the whole listing:
    `cleanup/keep.py` reads it once and gives `kept_from`, for each (kind, actor,
    target) group, the `recency` of the oldest of the newest `keep_last` jobs the
    other filters select in it; a job is then selected only if it is older than
    that. So a job of a group with fewer candidates, or of a group the reading did
    not see (created since), is kept; one the reading missed (the listing moved)
    is kept if it is among the newest: a moving listing keeps more, never fewer.
    `job_ids` (a plan being applied, `within`) narrows it to those jobs: every other
    filter must still hold for each of them.
    """

    required: frozenset[str]
    pushdown: str
    created_before_ms: int | None = None
    statuses: frozenset[str] | None = None
    finished_before_ms: int | None = None
    include_kept: bool = False
    keep_last: int | None = None
    kept_from: Mapping[Group, Recency] | None = None
    job_ids: frozenset[int] | None = None

    @classmethod
    def build(
        cls,
        *,
        kind: str | None = None,
        target: str | None = None,
        actor: str | None = None,
        created_before_ms: int | None = None,
        statuses: Iterable[str] | None = None,
        finished_before_ms: int | None = None,
        include_kept: bool = False,
        keep_last: int | None = None,
    ) -> Selector:
        """A selector; ValueError for a name, status or `keep_last` that is not valid."""
        required = {SCOPE_TAG}
        pushdown = SCOPE_TAG
        # Most specific tag last, so it wins the server-side pushdown.
        for name, make, check in (
            (target, target_tag, check_kind_or_target),
            (kind, kind_tag, check_kind_or_target),
            (actor, actor_tag, check_actor),
        ):
            if name is not None:
                pushdown = make(check(name))
                required.add(pushdown)
        wanted = None
        if statuses is not None:
            wanted = frozenset(statuses)
            if not wanted or not wanted.issubset(JOB_STATUSES):
                raise ValueError(f"statuses must be some of {', '.join(JOB_STATUSES)}")
        if keep_last is not None and keep_last < 1:
            raise ValueError("keep_last must be at least 1")
        return cls(
            frozenset(required),
            pushdown,
            created_before_ms,
            wanted,
            finished_before_ms,
            include_kept,
            keep_last,
        )

    @classmethod
    def for_policy(
        cls,
        *,
        kind: str | None = None,
        target: str | None = None,
        actor: str | None = None,
        statuses: Iterable[str] | None = None,
        created_before_ms: int | None = None,
        finished_before_ms: int | None = None,
        keep_last: int | None = None,
    ) -> Selector:
        """A retention policy's selector: terminal statuses unless it names others, and
        never a kept job."""
        return cls.build(
            kind=kind,
            target=target,
            actor=actor,
            created_before_ms=created_before_ms,
            statuses=TERMINAL_STATUSES if statuses is None else statuses,
            finished_before_ms=finished_before_ms,
            keep_last=keep_last,
        )

    @property
    def pushdown_status(self) -> str | None:
        """The status hero_proc's listing can filter by: the one status asked, if one."""
        if self.statuses is not None and len(self.statuses) == 1:
            return next(iter(self.statuses))
        return None

    @property
    def candidates(self) -> Selector:
        """The selection before `keep_last`: what its groups are ranked among."""
        return replace(self, keep_last=None, kept_from=None, job_ids=None)

    def keeping(self, kept_from: Mapping[Group, Recency]) -> Selector:
        """This selector once `keep_last` is resolved (see the class docstring)."""
        return replace(self, kept_from=kept_from)

    def within(self, job_ids: Iterable[int]) -> Selector:
        """This selection narrowed to `job_ids` (a plan's jobs)."""
        return replace(self, job_ids=frozenset(job_ids))

    def has_tags(self, tags: Iterable[str]) -> bool:
        """Whether `tags` hold every required tag (for an action: it has no other filter)."""
        return self.required.issubset(tags)

    def matches(self, job: Job) -> bool:
        """The exact re-check of a listed job: every filter holds (see the class docstring),
        and it is one of `job_ids` when they are given.

        A job without `created_at_ms` fails an age filter; one that has not finished
        (pending, running, or no status) or has no `finished_at_ms` fails
        `finished_before_ms`. RuntimeError if `keep_last` is not resolved yet.
        """
        tags = job.tags
        statuses = self.statuses
        if (
            (self.job_ids is not None and job.id not in self.job_ids)
            or not self.required.issubset(tags)
            or (not self.include_kept and KEEP_TAG in tags)
            or (statuses is not None and job.status not in statuses)
            or not self._old_enough(job)
        ):
            return False
        return self.keep_last is None or self._not_kept(job)

    def _old_enough(self, job: Job) -> bool:
        """Created at or before `created_before_ms`, finished at or before
        `finished_before_ms`, where given."""
        cutoff = self.created_before_ms
        if cutoff is not None and (job.created_at_ms is None or job.created_at_ms > cutoff):
            return False
        cutoff = self.finished_before_ms
        if cutoff is None:
            return True
        finished = job.finished_at_ms
        return finished is not None and finished <= cutoff and job.status in TERMINAL_STATUSES

    def _not_kept(self, job: Job) -> bool:
        """Older than the oldest job `keep_last` keeps in its group."""
        if self.kept_from is None:
            raise RuntimeError("keep_last is resolved from the whole listing first")
        oldest_kept = self.kept_from.get(group(job))
        return oldest_kept is not None and recency(job) < oldest_kept
