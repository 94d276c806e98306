"""`keep_last`: the reading of the whole listing that a cleanup keeping the newest jobs
makes before it deletes anything.

Among the jobs the other filters select (`Selector.candidates`), the newest
`keep_last` of each (kind, actor, target) group are kept: "newest" is
`tags.recency` (the later `created_at_ms`, then the larger id; no creation time
is oldest). One pass through the listing, by the selector's pushdown tag (and
status), keeps a bounded heap per group, so its memory grows with the groups,
not with the jobs; what it gives is, per group, the recency of the oldest job
kept (`Selector.keeping`). The cleanup's page walk then runs as without
`keep_last`, with the one predicate `Selector.matches` selecting only jobs older
than that. Malformed entries are left to the walk, which counts them.
"""

from __future__ import annotations

import heapq

import structlog

from ..errors import HeroProcProtocolError
from ..heroproc import OUTSIDE, HeroProcClient, StopCheck, parse_job
from ..tags import Group, Recency, Selector, group, recency
from .tally import Stopped, Tally

log = structlog.get_logger(__name__)


async def resolve(
    client: HeroProcClient,
    selector: Selector,
    *,
    page_size: int,
    halt: StopCheck,
    tally: Tally | None = None,
) -> Selector:
    """`selector` with its `keep_last` resolved from one reading of the whole listing
    (unchanged without `keep_last`). Stopped when `halt` gives a reason between pages;
    hero_proc's errors are raised (nothing is deleted yet). The jobs read so far are
    `tally.listed` (when a tally is given)."""
    keep = selector.keep_last
    if keep is None:
        return selector
    candidates = selector.candidates
    newest: dict[Group, list[Recency]] = {}
    offset = last_id = listed = 0
    while True:
        if (reason := halt()) is not None:
            raise Stopped(reason)
        page = await client.job_page(
            selector.pushdown, limit=page_size, offset=offset, status=selector.pushdown_status
        )
        if not page:
            break
        fresh = False
        for item in page:
            job = parse_job(item)
            if job is None or job.id <= last_id:
                continue  # malformed (the walk counts it), or listed already
            last_id = job.id
            fresh = True
            listed += 1
            if candidates.matches(job):
                heap = newest.setdefault(group(job), [])
                rank = recency(job)
                if len(heap) < keep:
                    heapq.heappush(heap, rank)
                elif rank > heap[0]:
                    heapq.heapreplace(heap, rank)
        if not fresh:
            raise HeroProcProtocolError(f"{OUTSIDE}: job.list does not advance")
        offset += len(page)
        if tally is not None:
            tally.listed = tally.present = listed
    # Where a group has fewer candidates than `keep`, all are kept: no floor.
    kept_from = {key: heap[0] for key, heap in newest.items() if len(heap) == keep}
    log.info(
        "cleanup_keep_last_read",
        keep_last=keep,
        jobs_listed=listed,
        groups=len(newest),
        jobs_kept=sum(len(heap) for heap in newest.values()),
    )
    return selector.keeping(kept_from)
