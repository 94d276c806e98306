"""One pass of a cleanup through hero_proc's listing: where the next page starts, and
which jobs of a page are matches.

hero_proc pages by offset only, and a cleanup deletes what it lists: each page's
matches are deleted before the next page is listed, so the next page starts
after the jobs of this pass still listed (`offset`: those listed, less those
deleted or found gone). If someone else deletes listed jobs meanwhile, every
later position moves and the next page would start too far. So each page starts
one job early, on the `anchor`, the last job listed and known to be still there:
when that is not what hero_proc lists first, the listing `moved`, this pass may
have skipped jobs, and the run makes another pass. A job listed twice is
recognised by its id, which only grows. The pass ends on a page without a job
not listed before: an empty one, or one of jobs already listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..heroproc import parse_job, sample, valid_id
from ..tags import Selector
from .tally import Tally


@dataclass
class Walk:
    """Where one pass through the listing is."""

    listed: int = 0  # distinct entries listed so far (jobs, and entries without a valid id)
    removed: int = 0  # of those, deleted or found gone
    highest_id: int = 0  # the highest job id listed (ids only grow)
    anchor: int | None = None  # the last job listed and known to be still there
    moved: bool = False  # the listing moved under the pass: jobs may have been skipped
    idless: int = 0  # entries without a valid id in this pass
    # The page being read:
    page_ids: int = 0  # entries with a valid id, new or not
    page_new: bool = False  # the page listed a job not listed before in this pass
    page_present: int | None = None  # the highest new id of the page that stays listed
    page_sample: str | None = None  # one malformed entry, for the log

    @property
    def offset(self) -> int:
        """Where the next page starts: one early, on the anchor, when there is one."""
        position = self.listed - self.removed
        return position - 1 if self.anchor is not None else position

    def check_start(self, page: list[Any]) -> None:
        """A page listed at `offset` must start on the anchor, or the listing moved."""
        if self.anchor is not None and (not page or _listed_id(page[0]) != self.anchor):
            self.moved = True

    def start_page(self) -> None:
        self.page_ids = 0
        self.page_new = False
        self.page_present = self.page_sample = None

    def select(self, page: list[Any], selector: Selector, tally: Tally) -> list[int]:
        """The ids of the page's matches, each recorded in `tally` once.

        A job listed before in this pass, or whose deletion failed in an earlier
        pass, is not matched again. A malformed entry (see `heroproc.parse_job`) is
        skipped: counted in `tally` when it has a valid id, else as an entry without
        one. The rest is `Selector.matches`. Once the run has matched `max_jobs`, the
        next match sets `tally.has_more` and ends the page (the run stops there). In a
        real run, the fields of each match are added to `tally.page_fields` (its
        tombstone's: `tombstones.FIELDS`).
        """
        matches: list[int] = []
        keep = None if tally.dry_run else tally.page_fields.extend
        for item in page:
            job_id = _listed_id(item)
            if job_id is None:
                self.idless += 1  # a position of the listing, but not a job
                self.listed += 1
                self.page_sample = sample(item)
                continue
            self.page_ids += 1
            if job_id <= self.highest_id:
                continue  # listed in this pass already (the page started early)
            self.highest_id = job_id
            self.page_new = True
            self.listed += 1
            job = parse_job(item)
            if job is None:
                tally.malformed_ids.add(job_id)
                self.page_sample = sample(item)
                self.page_present = job_id
            elif job_id in tally.failed_jobs or not selector.matches(job):
                self.page_present = job_id
            elif tally.full:
                tally.has_more = True
                self.page_present = job_id
                break
            else:
                matches.append(job_id)
                action, context = job.action_id, job.context
                tally.match(job_id, action, context)
                if keep is not None:
                    keep(
                        (
                            action,
                            context,
                            job.tags,
                            job.status,
                            job.created_at_ms,
                            job.finished_at_ms,
                        )
                    )
        return matches

    def deleted(self, removed: int, still_there: int | None) -> None:
        """Some of the page's matches were deleted (or found gone): `removed` of them;
        `still_there` is the highest id of those that could not be."""
        self.removed += removed
        if still_there is not None:
            self.page_present = max(still_there, self.page_present or 0)

    def end_page(self) -> None:
        """The page's deletions are done: its last job still listed is the new anchor
        (a page whose new jobs are all gone leaves the anchor where it was)."""
        if self.page_present is not None:
            self.anchor = self.page_present


def _listed_id(item: Any) -> int | None:
    """The valid job id of a listed entry, malformed or not, or None."""
    job_id = item.get("id") if isinstance(item, dict) else None
    return job_id if valid_id(job_id) else None
