"""The options several commands share, and the duration they parse.

`--socket` of the client commands, their job filters (`--kind`, `--target`,
`--actor`, `--older-than`, `--status`, `--finished-older-than`, `--include-kept`),
the simulators' `--seed`, the DURATION type (`90s`, `15m`, `12h`, `7d`) that
`--older-than` and `--finished-older-than` take, and the WHEN type (a date and
time, or a duration ago) of `jobs-deleted --deleted-after` and `--deleted-before`.
"""

from __future__ import annotations

import re
import time
import typing
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ..tags import JobStatus

_DURATION = re.compile(r"^(\d{1,15})(ms|s|m|h|d)?$")
_UNIT_MS = {None: 1, "ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """`N` or `Nms` milliseconds, `Ns` seconds, `Nm` minutes, `Nh` hours, `Nd` days."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 12h or 7d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


class Duration(click.ParamType[int]):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration_ms(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


_AGO = re.compile(r"^(\d{1,15})(ms|s|m|h|d)$")


def parse_when_ms(text: str, now_ms: int | None = None) -> int:
    """A moment, in milliseconds since the epoch: a date and time in ISO 8601 (`2026-12-01`,
    `2026-12-01T14:00`, local unless it gives its offset: `Z`, `+02:00`), or a duration
    ago with its unit (`90s`, `15m`, `12h`, `7d`: that long before `now_ms`)."""
    text = text.strip()
    if match := _AGO.match(text):
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        return max(0, now - int(match.group(1)) * _UNIT_MS[match.group(2)])
    try:
        return max(0, int(datetime.fromisoformat(text).astimezone().timestamp() * 1000))
    except (ValueError, OverflowError):  # not ISO 8601; a year out of the clock's range
        raise ValueError(
            f"{text!r} is neither a time like 2026-12-01 or 2026-12-01T14:00 "
            "nor a duration ago like 90s, 15m, 12h or 7d"
        ) from None


class When(click.ParamType[int]):
    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_when_ms(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


socket_option = click.option(
    "--socket",
    type=click.Path(path_type=Path),
    help="The service's socket [default: $HERO_CODESCALERS_SOCKET or "
    "$HERO_SOCKET_DIR/hero_codescalers/rpc.sock]",
)


def filter_options(fn: Any) -> Any:
    """The job filters of `jobs-cleanup` and `jobs-list`, in this order in their --help."""
    for option in reversed(
        (
            click.option("--kind", help="Only jobs of this kind (exact)."),
            click.option("--target", help="Only jobs with this target (exact)."),
            click.option("--actor", help="Only jobs of this actor (exact)."),
            click.option(
                "--older-than",
                type=Duration(),
                help="Only jobs created at least this long ago: N or Nms, Ns, Nm, Nh, Nd.",
            ),
            click.option(
                "--status",
                "statuses",
                multiple=True,
                type=click.Choice(typing.get_args(JobStatus)),
                help="Only jobs in this status; repeat for several [default: any status].",
            ),
            click.option(
                "--finished-older-than",
                type=Duration(),
                help="Only jobs that finished (succeeded, failed, cancelled) at least this "
                "long ago; a job without a finish time never matches.",
            ),
            click.option(
                "--include-kept",
                is_flag=True,
                help="Also select jobs tagged codescaler_keep (left out by default).",
            ),
        )
    ):
        fn = option(fn)
    return fn


def seed_option(default: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--seed N`: the jobs a simulator starts with (the same for the same seed)."""
    return click.option(
        "--seed",
        "seed_jobs",
        type=click.IntRange(min=0),
        default=default,
        show_default=True,
        help="Jobs the simulator starts with: 80% codescaler, 10% unrelated, 10% look-alike.",
    )
