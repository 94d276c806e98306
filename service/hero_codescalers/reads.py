"""The reads: `jobs.list` (a page of jobs after a cursor) and `stats` (counts by kind).

Both list hero_proc page by page, read every job through `heroproc.parse_job`
and select by a `Selector` (the cleanup's parser and predicate), skip and count
what is malformed, end on an empty page, and refuse a listing that does not
advance (-32021). Each reads a bounded number of pages per call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import structlog

from .errors import HeroProcProtocolError
from .heroproc import (
    MAX_LIMIT,
    OUTSIDE,
    ActionKey,
    HeroProcClient,
    JobSummary,
    ListedAction,
    parse_action,
    parse_job,
    sample,
)
from .models import CodescalerCounts, HeroProcCounts, JobView, ListResult, StatsResult
from .tags import KEEP_TAG, SCOPE_TAG, Selector, labels
from .tuning import LIST_PAGE, LIST_PAGES, STATS_PAGE, STATS_PAGES

log = structlog.get_logger(__name__)


async def list_jobs(
    client: HeroProcClient,
    selector: Selector,
    *,
    limit: int,
    cursor: str | None,
) -> ListResult:
    """Up to `limit` matching jobs after the cursor's job, oldest first.

    The cursor names the last job returned and where it was listed (see `_JobPages`).
    At most `LIST_PAGES` pages are read per call: then the answer may hold fewer
    than `limit` jobs, with a cursor to go on.
    """
    pages = _JobPages(client, selector.pushdown, selector.pushdown_status, limit, cursor)
    jobs: list[JobView] = []
    for _ in range(LIST_PAGES):
        page = await pages.next()
        if page is None:
            return _listing(jobs, None, pages.skipped)
        for position, job in pages.new_jobs(page):
            if selector.matches(job):
                jobs.append(_view(job))
                if len(jobs) == limit:
                    return _listing(jobs, f"{position + 1}:{job.id}", pages.skipped)
        pages.offset += len(page)
    return _listing(jobs, f"{pages.offset}:{pages.last_id}", pages.skipped)


class _JobPages:
    """The pages of `job.list` after a cursor, `offset:last_id`.

    hero_proc pages by offset only, so the next page is listed one early, at the
    cursor's offset, and checked by id: jobs up to the cursor's are skipped; if the
    listing moved back (jobs before it were deleted: its first job is past the
    cursor's), earlier offsets are listed until the cursor's job is behind.
    Malformed jobs are skipped and counted.
    """

    def __init__(
        self,
        client: HeroProcClient,
        tag: str,
        status: str | None,
        limit: int,
        cursor: str | None,
    ) -> None:
        self.client = client
        self.tag = tag
        self.status = status
        self.size = min(MAX_LIMIT, max(limit, LIST_PAGE))
        hint, self.last_id = (int(part) for part in cursor.split(":")) if cursor else (0, 0)
        self.offset = max(0, hint - 1)
        self.back = self.size  # how far to step back when the listing moved back
        self.anchored = self.last_id == 0  # the cursor's job is known to be behind
        self.top: int | None = None  # the highest id of the last page read
        self.skipped = 0

    async def next(self) -> list[JobSummary | None] | None:
        """The next page, parsed (None for a malformed job); None once the listing ends."""
        page = await self.client.job_page(
            self.tag, limit=self.size, offset=self.offset, status=self.status
        )
        parsed = [parse_job(item) for item in page]
        ids = [job.id for job in parsed if job is not None]
        if self._moved_back(page, ids):
            return []
        if not page:
            return None
        self._check_advances(ids)
        bad = [item for item, job in zip(page, parsed, strict=True) if job is None]
        if bad:
            self.skipped += len(bad)
            log.warning("list_jobs_malformed", skipped=len(bad), sample=sample(bad[0]))
        return parsed

    def _moved_back(self, page: list[Any], ids: list[int]) -> bool:
        """Until the cursor's job is behind: whether the listing moved back under the
        cursor (then the next page is listed from earlier)."""
        if self.anchored:
            return False
        if self.offset > 0 and (not page or (ids and ids[0] > self.last_id)):
            self.offset, self.back = max(0, self.offset - self.back), self.back * 2
            return True
        self.anchored = True
        return False

    def _check_advances(self, ids: list[int]) -> None:
        """A page must hold a valid job id, and one past the last page's."""
        if not ids:
            raise HeroProcProtocolError("job.list answered a page without a valid job id")
        if self.top is not None and ids[-1] <= self.top:
            raise HeroProcProtocolError(f"{OUTSIDE}: job.list does not advance")
        self.top = ids[-1]

    def new_jobs(self, page: list[JobSummary | None]) -> Iterator[tuple[int, JobSummary]]:
        """The page's jobs past the cursor's, with their position in the listing."""
        for position, job in enumerate(page, start=self.offset):
            if job is not None and job.id > self.last_id:
                self.last_id = job.id
                yield position, job


async def stats(client: HeroProcClient) -> StatsResult:
    """hero_proc's own counts, and the codescaler jobs and actions by kind and status."""
    hero = await client.stats()
    scope = Selector.build(include_kept=True)
    jobs_by_kind: Counter[str] = Counter()
    jobs_by_status: Counter[str] = Counter()
    jobs = _Listing(client.job_page, "job.list", parse_job)
    async for job in jobs.items(_JobsOnce().new):
        if scope.matches(job):
            jobs_by_kind[labels(job.tags).kind or "unknown"] += 1
            jobs_by_status[job.status or "unknown"] += 1
    actions_by_kind: Counter[str] = Counter()
    actions = _Listing(client.action_page, "action.list", parse_action)
    async for action in actions.items(_ActionsOnce().new):
        if scope.has_tags(action.tags):
            actions_by_kind[labels(action.tags).kind or "unknown"] += 1
    return StatsResult(
        codescaler=CodescalerCounts(
            jobs=jobs_by_kind.total(),
            actions=actions_by_kind.total(),
            jobs_by_kind=dict(sorted(jobs_by_kind.items())),
            actions_by_kind=dict(sorted(actions_by_kind.items())),
            jobs_by_status=dict(sorted(jobs_by_status.items())),
            jobs_skipped_malformed=jobs.skipped,
            actions_skipped_malformed=actions.skipped,
        ),
        hero_proc=HeroProcCounts(
            job_count=hero.job_count,
            action_count=hero.action_count,
            running_count=hero.running_count,
        ),
    )


class _Listing:
    """A whole hero_proc listing by the scope tag, read a page of `STATS_PAGE` at a time:
    `list_page` lists one page, `parse` reads an item (None when malformed)."""

    def __init__(
        self,
        list_page: Callable[..., Awaitable[list[Any]]],
        method: str,
        parse: Callable[[Any], Any],
    ) -> None:
        self.list_page = list_page
        self.method = method
        self.noun = "jobs" if method == "job.list" else "actions"
        self.parse = parse
        self.skipped = 0  # malformed items

    async def items(self, new: Callable[[Any], bool]) -> AsyncIterator[Any]:
        """Every item `parse` accepts and `new` has not seen. Pages end on an empty one; a page
        must bring an item not seen before (else the listing does not advance:
        -32021), and at most `STATS_PAGES` are read. Items `parse` refuses are
        counted in `skipped`, with one warning line per page carrying a sample."""
        offset = 0
        for _ in range(STATS_PAGES):
            page = await self.list_page(SCOPE_TAG, limit=STATS_PAGE, offset=offset)
            if not page:
                return
            fresh = bad = 0
            example = None
            for item in page:
                parsed = self.parse(item)
                if parsed is None:
                    bad += 1
                    example = item
                elif new(parsed):
                    fresh += 1
                    yield parsed
            if bad:
                self.skipped += bad
                log.warning(f"stats_{self.noun}_malformed", skipped=bad, sample=sample(example))
            if not fresh:
                raise HeroProcProtocolError(f"{OUTSIDE}: {self.method} does not advance")
            offset += len(page)
        raise HeroProcProtocolError(f"{self.method} did not end within {STATS_PAGES} pages")


class _JobsOnce:
    """Whether a listed job is new: ids only grow, so a new job's id is above the last."""

    def __init__(self) -> None:
        self.last_id = 0

    def new(self, job: JobSummary) -> bool:
        if job.id <= self.last_id:
            return False
        self.last_id = job.id
        return True


class _ActionsOnce:
    """Whether a listed action is new (by its name and context)."""

    def __init__(self) -> None:
        self.seen: set[ActionKey] = set()

    def new(self, action: ListedAction) -> bool:
        if action.key in self.seen:
            return False
        self.seen.add(action.key)
        return True


def _listing(jobs: list[JobView], cursor: str | None, skipped: int) -> ListResult:
    return ListResult(jobs=jobs, next_cursor=cursor, jobs_skipped_malformed=skipped)


def _view(job: JobSummary) -> JobView:
    lab = labels(job.tags)
    return JobView(
        id=job.id,
        action_id=job.action_id,
        status=job.status,
        created_at_ms=job.created_at_ms,
        finished_at_ms=job.finished_at_ms,
        tags=job.tags,
        kind=lab.kind,
        actor=lab.actor,
        target=lab.target,
        kept=KEEP_TAG in job.tags,
    )
