"""hero_proc, as this service reaches it.

client.py    HeroProcClient: the session, timeouts, retries, the contract's methods
batches.py   many calls at once: JSON-RPC batches paced by hero_proc's speed
answers.py   reading answers: the JSON-RPC envelope, typed errors, job and action records
"""

from .answers import (
    MAX_ID,
    OUTSIDE,
    Action,
    ActionKey,
    HeroProcStats,
    JobSummary,
    ListedAction,
    parse_action,
    parse_job,
    sample,
    transient,
    valid_id,
)
from .batches import Call, Pacing, StopCheck
from .client import MAX_LIMIT, URL, HeroProcClient, action_params

__all__ = [
    "MAX_ID",
    "MAX_LIMIT",
    "OUTSIDE",
    "URL",
    "Action",
    "ActionKey",
    "Call",
    "HeroProcClient",
    "HeroProcStats",
    "JobSummary",
    "ListedAction",
    "Pacing",
    "StopCheck",
    "action_params",
    "parse_action",
    "parse_job",
    "sample",
    "transient",
    "valid_id",
]
