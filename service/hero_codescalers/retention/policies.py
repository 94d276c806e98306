"""Retention policies: the TOML file that declares them, read and checked whole.

One table per policy under `[policies]`; the table's key is the policy's name:

    [policies.user-week]
    kind = "user"                                    # actor, target as well
    statuses = ["succeeded", "failed", "cancelled"]  # the default: terminal only
    finished_older_than = "7d"                       # or older_than (from creation)
    keep_last = 5
    every = "1h"
    enabled = true                                   # the default
    dry_run = false                                  # the default
    orphan_actions = false                           # the default

Durations are whole numbers with a unit, `s`, `m`, `h`, `d` or `w`, and may be
joined (`1h30m`); `every` is at least a second. A file that cannot be used is a
`PolicyFileError` whose one line names the file, the policy, the field and what
is wrong: the start stops with it, a reload keeps what was loaded.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..models import MAX_AGE_MS, POLICY_PATTERN, Actor, Kind, Target
from ..state import MANUAL
from ..tags import JOB_STATUSES, TERMINAL_STATUSES, JobStatus, Selector

TERMINAL: tuple[JobStatus, ...] = tuple(s for s in JOB_STATUSES if s in TERMINAL_STATUSES)
_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_DURATION = re.compile(r"(\d{1,9})([smhdw])")
MIN_EVERY_MS = 1_000


def parse_duration(value: Any) -> int:
    """Milliseconds from a duration such as `7d` or `1h30m`."""
    text = value.strip() if isinstance(value, str) else ""
    if not text or _DURATION.sub("", text):
        raise ValueError(f"{value!r} is not a duration; expected e.g. '90s', '10m', '1h30m', '7d'")
    return sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))


def at_least_a_second(value: int) -> int:
    if value < MIN_EVERY_MS:
        raise ValueError("must be at least 1s")
    return value


Age = Annotated[int, BeforeValidator(parse_duration), Field(ge=0, le=MAX_AGE_MS)]


class Policy(BaseModel):
    """One retention policy: which jobs (the filters of `jobs.cleanup`) and how often."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=POLICY_PATTERN)
    kind: Kind | None = None
    actor: Actor | None = None
    target: Target | None = None
    statuses: list[JobStatus] = Field(default_factory=lambda: list(TERMINAL), min_length=1)
    finished_older_than: Age | None = None
    older_than: Age | None = None
    keep_last: int | None = Field(default=None, ge=1, le=1_000_000)
    every: Annotated[int, BeforeValidator(parse_duration), AfterValidator(at_least_a_second)]
    enabled: bool = True
    dry_run: bool = False
    orphan_actions: bool = False

    def selector(self, now_ms: int) -> Selector:
        """What a run of the policy at `now_ms` selects (never a job tagged to be kept)."""

        def cutoff(age_ms: int | None) -> int | None:
            return None if age_ms is None else now_ms - age_ms

        return Selector.for_policy(
            kind=self.kind,
            target=self.target,
            actor=self.actor,
            statuses=self.statuses,
            created_before_ms=cutoff(self.older_than),
            finished_before_ms=cutoff(self.finished_older_than),
            keep_last=self.keep_last,
        )

    def params(self) -> dict[str, Any]:
        """What the policy selects, as `jobs.cleanup`'s params name it (for its record)."""
        given = {
            "kind": self.kind,
            "actor": self.actor,
            "target": self.target,
            "statuses": list(self.statuses),
            "finished_older_than_ms": self.finished_older_than,
            "older_than_ms": self.older_than,
            "keep_last": self.keep_last,
            "orphan_actions": self.orphan_actions or None,
        }
        return {key: value for key, value in given.items() if value is not None}


class PolicyFileError(Exception):
    """A policies file that cannot be used: one line, file, policy, field, problem."""


def load(path: Path) -> dict[str, Policy]:
    """The policies of the file at `path`, by name; PolicyFileError when it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(f"{path}: cannot be read ({_reason(exc)})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(document) - {"policies"})
    if unknown:
        raise PolicyFileError(
            f"{path}: unknown table {unknown[0]!r}; expected only [policies.NAME]"
        )
    tables = document.get("policies", {})
    if not isinstance(tables, dict):
        raise PolicyFileError(f"{path}: 'policies' must be tables, as [policies.NAME]")
    policies: dict[str, Policy] = {}
    for name, table in tables.items():
        where = f"{path}: policy {name!r}"
        if name == MANUAL:
            raise PolicyFileError(f"{where}: the name is reserved for the runs callers ask for")
        if not isinstance(table, dict):
            raise PolicyFileError(f"{where}: must be a table, as [policies.{name}]")
        if "name" in table:
            raise PolicyFileError(f"{where}, field 'name': the table's key is the name")
        try:
            policies[name] = Policy(name=name, **table)
        except ValidationError as exc:
            raise PolicyFileError(f"{where}{_first_problem(exc)}") from None
    return policies


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return f", field {field!r}: {message}" if field else f": {message}"


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
