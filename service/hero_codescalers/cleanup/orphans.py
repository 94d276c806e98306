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

from dataclasses import dataclass, field
from typing import Any

import structlog

from ..errors import InUse, NotFound, quote
from ..heroproc import ActionKey, HeroProcClient, action_params, parse_action, parse_job
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
    errors: list[str] = field(default_factory=list)


async def orphans(client: HeroProcClient) -> list[ActionKey]:
    """The codescaler actions no codescaler job references, in listing order."""
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
        ):
            found.append(action.key)
    return found


async def sweep(client: HeroProcClient, *, stop: Any = None) -> Sweep:
    """Delete the orphan actions; hero_proc's errors while listing propagate."""
    keys = await orphans(client)
    result = Sweep(found=len(keys))
    if not keys:
        return result
    calls = [("action.delete", action_params(name, context)) for name, context in keys]
    for (name, _), outcome in zip(keys, await client.call_many(calls, stop=stop), strict=True):
        if deleted(outcome):
            result.deleted += 1
        elif isinstance(outcome, InUse):
            result.in_use += 1
        elif isinstance(outcome, NotFound):
            result.gone += 1
        else:
            result.errors.append(f"orphan action {quote(name)}: {describe(outcome)}")
    log.info(
        "orphan_actions_swept",
        found=result.found,
        deleted=result.deleted,
        in_use=result.in_use,
        already_gone=result.gone,
        failed=len(result.errors),
    )
    return result
