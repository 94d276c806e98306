"""The cleanup: what `jobs.cleanup` does with hero_proc.

run.py     CleanupRun: passes, each page's deletions, then the actions, then settling
walk.py    Walk: one pass through the listing, its anchor, the selection of a page
tally.py   Tally: the counts, failures and summary of one run
"""

from .run import CleanupRun
from .tally import Tally

__all__ = ["CleanupRun", "Tally"]
