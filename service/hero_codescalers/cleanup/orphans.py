"""The orphan-action sweep: codescaler actions that no codescaler job references any more.

A cleanup finds actions through the jobs it deletes; a run cut short (the process
killed, a SIGTERM) leaves actions whose jobs are gone, and no later cleanup would
find them. The sweep lists every codescaler job (to learn which actions are still
referenced) and every codescaler action (name prefix and scope tag), and deletes
those referenced by none, best effort: a job made since (or a foreign job using
the action) makes hero_proc refuse with "in use", the safety net, and that action
stays, which is not a failure. A `jobs.submit` racing the sweep re-creates an
action removed between its two calls (see `Engine.submit`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import structlog

from ..errors import InUse, NotAttempted, NotFound, quote
from ..heroproc import (
    ActionKey,
    HeroProcClient,
    StopCheck,
    action_params,
    parse_action,
    parse_job,
)
from ..reads import _ActionsOnce as ActionsOnce
from ..reads import _JobsOnce as JobsOnce
from ..reads import _Listing as Listing
from ..tags import ACTION_PREFIX, Selector
from .tally import deleted, describe

log = structlog.get_logger(__name__)


@dataclass
class Sweep:
    """What a sweep found and did."""

    found: int = 0  # codescaler actions referenced by no codescaler job
    deleted: int = 0
    in_use: int = 0  # refused by hero_proc: a job references it (made since, or foreign)
    gone: int = 0
    not_attempted: int = 0  # never sent: the run was stopping
    stopped: str | None = None  # why, when some were not sent
    errors: list[str] = field(default_factory=list)

    def count(self, name: str, outcome: object) -> None:
        """Count one action's delete outcome."""
        if deleted(outcome):
            self.deleted += 1
        elif isinstance(outcome, InUse):
            self.in_use += 1
        elif isinstance(outcome, NotFound):
            self.gone += 1
        elif isinstance(outcome, NotAttempted):
            self.not_attempted += 1
            self.stopped = outcome.reason
        else:
            self.errors.append(f"orphan action {quote(name)}: {describe(outcome)}")


async def orphans(client: HeroProcClient, tried: Collection[ActionKey] = ()) -> list[ActionKey]:
    """The codescaler actions no codescaler job references, in listing order, but those
    in `tried` (the run's own, whose outcomes it has already counted)."""
    scope = Selector.build()
    referenced: set[ActionKey] = set()
    async for job in Listing(client.job_page, "job.list", parse_job).items(JobsOnce().new):
        referenced.add((job.action_id, job.context))
    found: list[ActionKey] = []
    actions = Listing(client.action_page, "action.list", parse_action)
    async for action in actions.items(ActionsOnce().new):
        if (
            action.key[0].startswith(ACTION_PREFIX)
            and scope.has_tags(action.tags)
            and action.key not in referenced
            and action.key not in tried
        ):
            found.append(action.key)
    return found


async def sweep(
    client: HeroProcClient,
    *,
    tried: Collection[ActionKey] = (),
    stop: StopCheck | None = None,
) -> Sweep:
    """Delete the orphan actions (not those in `tried`); hero_proc's errors while listing
    propagate."""
    keys = await orphans(client, tried)
    result = Sweep(found=len(keys))
    if not keys:
        return result
    calls = [("action.delete", action_params(name, context)) for name, context in keys]
    outcomes = await client.call_many(calls, stop=stop)
    for (name, _), outcome in zip(keys, outcomes, strict=True):
        result.count(name, outcome)
    if result.stopped is not None:
        result.errors.append(
            f"{result.not_attempted} orphan actions not attempted: {result.stopped}"
        )
    log.info(
        "orphan_actions_swept",
        found=result.found,
        deleted=result.deleted,
        in_use=result.in_use,
        already_gone=result.gone,
        failed=len(result.errors),
    )
    return result
