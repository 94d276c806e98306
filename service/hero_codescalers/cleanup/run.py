"""One cleanup run: passes through the listing, the deletions, then the actions.

A run pages through hero_proc with the most specific tag as the server-side
filter (`Selector.pushdown`, and the status when one is asked), re-checks every
job exactly (`Walk.select`: `Selector.matches`), deletes each page's matches with
`force: true` before listing the next page, then deletes the codescaler actions
of the matches, best effort (an action another job still uses stays). A pass
that may have skipped jobs (the listing moved) is followed by another, up to
`MAX_PASSES`. Before the run ends, every deletion whose outcome is unknown is
checked with `job.get` / `action.get`. A run with `keep_last` first reads the
whole listing once (`keep.py`), deleting nothing, to know which jobs are the
newest of their groups; without it, the page walk is the whole run.

`halt` is asked between steps and before each call is sent: once it gives a
reason (the deadline passed, the service is shutting down, a caller cancelled
the run), nothing more is
sent, what is in flight ends within one hero_proc call timeout, and what was
not sent is reported as not attempted. `progress`, when given, is awaited after
each page's deletions with the tally so far (the engine checkpoints the run's
record there). The tally also says which step the run is at (`phase`) and how
far the reading under way has got (`listed`, `present`), for
`jobs.cleanup_status`.

`max_jobs` bounds the jobs a run matches: once it has that many, the walk goes on
listing (deleting nothing more) until it finds one more match (`has_more`, and the
run stops there) or the end of the listing. A run applying a plan (a selector
`within` the plan's jobs) ends its pass once it has listed past the plan's highest
job id: ids only grow, so nothing later can be one of the plan's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from ..errors import HeroProcError, HeroProcProtocolError, HeroProcUnavailable
from ..heroproc import HeroProcClient, StopCheck, action_params
from ..tags import Selector
from ..tuning import MAX_PASSES
from . import keep, orphans
from .tally import CUT, Stopped, Tally, describe
from .walk import Walk

log = structlog.get_logger(__name__)


class CleanupRun:
    """The work of one `jobs.cleanup`; what it did is in `tally`."""

    def __init__(
        self,
        client: HeroProcClient,
        selector: Selector,
        *,
        dry_run: bool,
        page_size: int,
        halt: StopCheck,
        progress: Callable[[Tally], Awaitable[None]] | None = None,
        sweep_orphans: bool = False,
        max_jobs: int | None = None,
    ) -> None:
        self.client = client
        self.selector = selector
        self.sweep_orphans = sweep_orphans
        self.page_size = page_size
        self.halt = halt
        self.progress = progress
        self.tally = Tally(dry_run, max_jobs=max_jobs)
        # A plan's highest job id: its pass ends once the listing is past it.
        ids = selector.job_ids
        self.last_planned = None if ids is None else max(ids, default=0)

    async def run(self) -> None:
        try:
            self.selector = await keep.resolve(
                self.client,
                self.selector,
                page_size=self.page_size,
                halt=self.halt,
                tally=self.tally,
            )
        except Stopped as stop:
            self.tally.stop(f"stopped: {stop.reason}", stop.reason)
            return
        await self._passes()
        if not self.tally.dry_run:
            if self.tally.stopped is None and (reason := self.halt()) is not None:
                self.tally.stop(f"stopped: {reason}", reason)
            await self._delete_actions()
            await self._settle()
            if self.sweep_orphans:
                await self._sweep()

    async def _passes(self) -> None:
        """Walk the listing until a pass did not move (one pass for a dry run)."""
        passes = 1 if self.tally.dry_run else MAX_PASSES
        for number in range(1, passes + 1):
            self.tally.passes = number
            self.tally.pass_started = time.monotonic()
            if not await self._pass_unless_stopped():
                return
        # The listing kept moving under this run: say so rather than loop.
        self.tally.stop(f"stopped after {passes} passes: jobs kept disappearing during the run")

    async def _pass_unless_stopped(self) -> bool:
        """One pass; whether another must follow. A halt, or hero_proc failing once some
        jobs were matched, stops the run with the reason (a failure before any match is
        the caller's error)."""
        tally = self.tally
        try:
            return await self._pass()
        except Stopped as stop:
            tally.stop(f"stopped: {stop.reason}", stop.reason)
        except HeroProcError as exc:
            if not tally.job_ids:
                raise
            unavailable = isinstance(exc, HeroProcUnavailable)
            tally.stop(
                f"listing stopped: {describe(exc)}",
                "hero_proc became unavailable" if unavailable else None,
            )
        return False

    async def _pass(self) -> bool:
        """One walk through the listing (see `walk.py`); whether it may have skipped jobs."""
        walk = Walk()
        try:
            while True:
                if (reason := self.halt()) is not None:
                    raise Stopped(reason)
                selector = self.selector
                self.tally.phase = "listing"
                page = await self.client.job_page(
                    selector.pushdown,
                    limit=self.page_size,
                    offset=walk.offset,
                    status=selector.pushdown_status,
                )
                walk.check_start(page)
                await self._page(walk, page)
                if self.tally.has_more:
                    return False  # max_jobs reached, and more match: the run stops here
                if self.last_planned is not None and walk.highest_id >= self.last_planned:
                    return walk.moved  # past the plan's last job
                if page and not walk.page_ids:
                    raise HeroProcProtocolError("job.list answered a page without a valid job id")
                if not walk.page_new:
                    if walk.page_ids > 1:  # more than the anchor, and nothing new
                        raise HeroProcProtocolError(
                            "job.list answered only jobs already listed: it does not advance"
                        )
                    return walk.moved
        finally:
            self.tally.malformed_idless = max(self.tally.malformed_idless, walk.idless)

    async def _page(self, walk: Walk, page: list[Any]) -> None:
        """Select the page's matches and delete them."""
        walk.start_page()
        tally = self.tally
        matches = walk.select(page, self.selector, tally)
        tally.listed, tally.present = walk.listed, walk.listed - walk.removed
        if matches and not tally.dry_run:
            tally.phase = "deleting_jobs"
            await self._delete_jobs(walk, matches)
            tally.present = walk.listed - walk.removed
            tally.phase = "listing"  # what comes next (its checkpoint aside): the next page
        if walk.page_sample is not None:
            # The entries without a valid id of this pass join the run's count at its end.
            skipped = len(tally.malformed_ids) + max(tally.malformed_idless, walk.idless)
            log.warning("cleanup_jobs_malformed", skipped=skipped, sample=walk.page_sample)
        walk.end_page()
        if self.progress is not None and walk.page_new:
            await self.progress(tally)

    async def _delete_jobs(self, walk: Walk, jobs: list[int]) -> None:
        """Delete `jobs`, count the outcomes, and tell the walk how many left the listing."""
        calls = [("job.delete", {"id": job_id, "force": True}) for job_id in jobs]
        try:
            outcomes = await self.client.call_many(calls, stop=self.halt)
        except BaseException:
            self.tally.job_outcomes(jobs, [CUT] * len(jobs))  # cut short: outcomes unknown
            raise
        walk.deleted(*self.tally.job_outcomes(jobs, outcomes))

    async def _delete_actions(self) -> None:
        tally = self.tally
        if not tally.actions:
            return
        tally.phase = "deleting_actions"
        if tally.stopped is not None:
            tally.actions_not_attempted = len(tally.actions)
            tally.errors.append(f"{len(tally.actions)} actions not attempted: {tally.stopped}")
            return
        keys = list(tally.actions)
        calls = [("action.delete", action_params(name, context)) for name, context in keys]
        tally.action_outcomes(keys, await self.client.call_many(calls, stop=self.halt))
        if tally.actions_in_use:
            # Shared actions that other jobs still use: the design working, said once.
            log.info("cleanup_actions_in_use", actions=len(tally.actions_in_use))

    async def _sweep(self) -> None:
        """The orphan-action sweep, unless the run stopped; hero_proc failing during it
        makes the run partial, no more (its jobs and actions are done)."""
        tally = self.tally
        if tally.stopped is not None or self.halt() is not None:
            return
        tally.phase = "settling"
        try:
            swept = await orphans.sweep(self.client, tried=tally.actions, stop=self.halt)
        except HeroProcError as exc:
            tally.complete = False
            tally.errors.append(f"orphan action sweep stopped: {describe(exc)}")
            log.warning("orphan_sweep_failed", error=describe(exc))
            return
        tally.orphans_deleted = swept.deleted
        if swept.errors:
            tally.complete = False
            tally.errors.extend(swept.errors)

    async def _settle(self) -> None:
        """Ask hero_proc about every deletion whose outcome is unknown (batched, within one
        call timeout): gone counts as deleted, present as a failure; what cannot be
        checked stays "outcome unknown" (see `Tally.close`)."""
        tally = self.tally
        if not tally.jobs_unknown and not tally.actions_unknown:
            return
        tally.phase = "settling"
        budget = time.monotonic() + self.client.timeout

        def stop() -> str | None:
            return "no time left to check" if time.monotonic() > budget else None

        jobs = list(tally.jobs_unknown)
        actions = list(tally.actions_unknown)
        calls = [("job.get", {"id": job_id}) for job_id in jobs]
        calls += [("action.get", action_params(name, context)) for name, context in actions]
        outcomes = await self.client.call_many(calls, stop=stop)
        tally.settle_jobs(jobs, outcomes[: len(jobs)])
        tally.settle_actions(actions, outcomes[len(jobs) :])
        settled = tally.jobs_settled + tally.actions_settled
        log.info("cleanup_outcomes_checked", checked=len(calls), found_gone=settled)
