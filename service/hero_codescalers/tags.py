"""The tag scheme of codescaler jobs and actions, and the rules for names.

Every job this service enqueues carries

    codescaler                      the scope of every cleanup
    codescaler_<actor>              who asked for it
    codescaler_kind_<kind>          what feature it runs
    codescaler_target_<target>      what it acts on (when there is a target)

and runs the action ``codescaler_<kind>_<hash>``, whose own tags are the ones
shared by every job that reuses it: ``codescaler`` and ``codescaler_kind_<kind>``.

Names must never widen a selection. The three tag families differ after
``codescaler_``: actor tags have no further underscore, kind tags start with
``kind_``, target tags with ``target_``. So an actor name may not contain ``_``
(``kind_user`` would otherwise select every job of kind ``user``) and may not
be ``kind`` or ``target``; kind and target names may. All names are short,
non-empty ASCII from a small alphabet, which also rules out wildcards, ``%``,
``..``, whitespace and unicode look-alikes. Matching is always exact: the
server-side tag filter of hero_proc is a prefix match and only narrows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

SCOPE_TAG = "codescaler"
ACTION_PREFIX = "codescaler_"
KIND_PREFIX = "codescaler_kind_"
TARGET_PREFIX = "codescaler_target_"
NAME_MAX_LENGTH = 64

_ALNUM = "A-Za-z0-9"
# Starts and ends with a letter or digit; dots and hyphens inside, never two dots.
ACTOR_PATTERN = rf"^(?!.*\.\.)[{_ALNUM}](?:[{_ALNUM}.-]*[{_ALNUM}])?$"
KIND_TARGET_PATTERN = rf"^(?!.*\.\.)[{_ALNUM}](?:[{_ALNUM}._-]*[{_ALNUM}])?$"
RESERVED_ACTORS = frozenset({"kind", "target"})

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
        elif tag.startswith(ACTION_PREFIX) and "_" not in tag[len(ACTION_PREFIX) :]:
            actor = tag[len(ACTION_PREFIX) :]
    return Labels(kind=kind, actor=actor, target=target)


@dataclass(frozen=True, slots=True)
class Selector:
    """Which codescaler jobs an operation selects: exact tags and an age cutoff.

    Built from validated names only; `required` always holds the scope tag.
    """

    required: frozenset[str]
    pushdown: str
    created_before_ms: int | None = None

    @classmethod
    def build(
        cls,
        *,
        kind: str | None = None,
        target: str | None = None,
        actor: str | None = None,
        created_before_ms: int | None = None,
    ) -> Selector:
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
        return cls(frozenset(required), pushdown, created_before_ms)

    def matches(self, tags: Iterable[str] | None, created_at_ms: int | None) -> bool:
        """The exact re-check: every required tag present, and old enough."""
        if tags is None or not self.required.issubset(tags):
            return False
        if self.created_before_ms is None:
            return True
        return created_at_ms is not None and created_at_ms <= self.created_before_ms
