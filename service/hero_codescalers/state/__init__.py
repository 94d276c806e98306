"""What outlives the process: an embedded SQLite database under HERO_CODESCALERS_STATE_DIR.

database.py    Database: the connection, used off the event loop; opening, checks, migrations
schema.py      the migrations (`PRAGMA user_version`)
runs.py        the audit trail of cleanup runs: written before, checkpointed, completed
tombstones.py  the jobs real runs deleted, kept as long as those runs
lease.py       the single-cleanup lease shared by the processes of one state directory
plans.py       the plans of dry runs: what a preview selected, applied once, before it expires
store.py       State: what the engine asks of it, each a whole transaction

Nothing else in the tree writes SQL.
"""

from .database import FILE_NAME, StateUnusable
from .plans import Plan
from .runs import MANUAL, Cancel, RunStart
from .store import Kept, State

__all__ = [
    "FILE_NAME",
    "MANUAL",
    "Cancel",
    "Kept",
    "Plan",
    "RunStart",
    "State",
    "StateUnusable",
]
