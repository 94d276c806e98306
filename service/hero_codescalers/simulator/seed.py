"""Deterministic populations for tests, the demo and benchmarks.

A population mixes codescaler jobs (several kinds, actors, targets, statuses and
ages, some without `created_at_ms`, sharing actions the way repeated inputs do;
a job in a terminal status finished some minutes to hours after it was created,
one without a creation time has no `finished_at_ms` either)
with jobs a cleanup must never touch: other services' jobs and jobs whose tags
only look like codescaler tags.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from ..tags import action_name, action_tags, job_tags
from .store import Store, now_ms

KINDS = ("user", "template", "service", "install")
ACTORS = ("alice", "bob", "carol", "ci-bot")
TARGETS = ("web", "db", "router", None)
STATUS_WEIGHTS = {"succeeded": 50, "failed": 15, "cancelled": 10, "running": 15, "pending": 10}
DAY_MS = 86_400_000
MAX_AGE_MS = 30 * DAY_MS
MAX_RUN_MS = 6 * 3_600_000  # how long a finished job ran, at most
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# Tags of jobs that are not codescaler jobs but that a prefix match on
# "codescaler" (or on a kind tag) would return.
LOOKALIKE_TAGS = (
    ["codescalerfoo"],
    ["codescaler_x"],
    ["codescalers", "codescaler_alice"],
    ["codescaler_kind_user", "codescaler_target_web"],
    ["codescaler-kind"],
)
UNRELATED_TAGS: tuple[list[str], ...] = (["books", "docs_render"], ["ci", "nightly"], [])
JOBS_PER_ACTION = 10
_STATUSES = list(STATUS_WEIGHTS)
_WEIGHTS = list(STATUS_WEIGHTS.values())


@dataclass(frozen=True)
class Population:
    """How many jobs of each sort a seeding created."""

    codescaler: int
    unrelated: int
    lookalike: int

    @property
    def total(self) -> int:
        return self.codescaler + self.unrelated + self.lookalike


def split_mix(total: int) -> Population:
    """A total split into the standard mix: 80% codescaler, 10% unrelated, 10% look-alike."""
    codescaler = total * 8 // 10
    unrelated = (total - codescaler) // 2
    return Population(codescaler, unrelated, total - codescaler - unrelated)


def seed_population(
    store: Store,
    codescaler: int,
    unrelated: int = 0,
    lookalike: int = 0,
    *,
    rng_seed: int = 0,
    now: int | None = None,
) -> Population:
    """Add jobs to `store`; the same arguments always make the same population."""
    rng = random.Random(rng_seed)
    # Run times come from a generator of their own, so that adding them changed no
    # other draw: the same seed still gives the same jobs, statuses and ages.
    runs = random.Random(rng_seed + 1)
    now = now_ms() if now is None else now
    inputs = max(1, codescaler // JOBS_PER_ACTION)
    for _ in range(codescaler):
        # About JOBS_PER_ACTION jobs share each input, hence each action.
        which = rng.randrange(inputs)
        kind = KINDS[which % len(KINDS)]
        digest = hashlib.sha256(f"{kind}:{which}".encode()).hexdigest()[:16]
        name = action_name(kind, digest)
        _action(store, name, f"run {kind}", action_tags(kind), now)
        _job(
            store,
            rng,
            runs,
            name,
            job_tags(rng.choice(ACTORS), rng.choice(TARGETS)),
            now=now,
        )
    for i in range(unrelated):
        name = f"other_service_{i % 7}"
        tags = UNRELATED_TAGS[i % len(UNRELATED_TAGS)]
        _action(store, name, "other", tags, now)
        _job(store, rng, runs, name, [], now=now)
    for i in range(lookalike):
        tags = LOOKALIKE_TAGS[i % len(LOOKALIKE_TAGS)]
        name = f"lookalike_{i % len(LOOKALIKE_TAGS)}"
        _action(store, name, "lookalike", tags, now)
        _job(store, rng, runs, name, [], now=now)
    return Population(codescaler, unrelated, lookalike)


def _action(store: Store, name: str, script: str, tags: list[str], now: int) -> None:
    if (name, None) not in store.actions:
        store.action_set({"name": name, "spec": {"script": script, "tags": tags}})
        store.actions[(name, None)]["created_at_ms"] = now


def _job(
    store: Store,
    rng: random.Random,
    runs: random.Random,
    action: str,
    tags: list[str],
    *,
    now: int,
) -> None:
    created = None if rng.random() < 0.05 else now - rng.randrange(MAX_AGE_MS)
    status = rng.choices(_STATUSES, _WEIGHTS)[0]
    finished = None
    if status in TERMINAL and created is not None:
        finished = min(now, created + runs.randrange(60_000, MAX_RUN_MS))
    store.job_create(
        {
            "action": action,
            "tags": tags,
            "status": status,
            "created_at_ms": created,
            "finished_at_ms": finished,
        }
    )
