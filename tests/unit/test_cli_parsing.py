"""The CLI's argument handling, without a service."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime

import pytest
from click.testing import CliRunner

from hero_codescalers.cli import main
from hero_codescalers.cli.options import parse_duration_ms, parse_when_ms
from hero_codescalers.cli.output import render_json


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", 0),
        ("250", 250),
        ("250ms", 250),
        ("90s", 90_000),
        ("15m", 900_000),
        ("12h", 43_200_000),
        ("7d", 604_800_000),
    ],
)
def test_durations(text: str, ms: int) -> None:
    """N and Nms are milliseconds; s, m, h, d scale them."""
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "-1d", "1w", "1.5h", "d", "7 days", "1e3"])
def test_bad_durations_are_refused(text: str) -> None:
    """Anything else is not a duration."""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_ms(text)


NOW_MS = 1_796_083_200_000  # 2026-12-01T00:00Z


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90s", NOW_MS - 90_000),
        ("15m", NOW_MS - 900_000),
        ("7d", NOW_MS - 7 * 86_400_000),
        ("250ms", NOW_MS - 250),
        ("0s", NOW_MS),
        ("99999d", 0),
        ("2026-12-01T00:00Z", NOW_MS),
        ("2026-12-01T02:00:00+02:00", NOW_MS),
        ("2026-11-30T23:59:59.5Z", NOW_MS - 500),
        ("2026-12-01", int(datetime(2026, 12, 1).astimezone().timestamp() * 1000)),
        ("2026-12-01T14:00", int(datetime(2026, 12, 1, 14).astimezone().timestamp() * 1000)),
    ],
)
def test_moments(text: str, ms: int) -> None:
    """A duration with its unit is that long before now; an ISO 8601 time is that moment,
    local unless it says its offset; nothing is before the epoch."""
    assert parse_when_ms(text, now_ms=NOW_MS) == ms


@pytest.mark.parametrize("text", ["", "7", "2026", "-1d", "1w", "yesterday", "2026-13-01"])
def test_bad_moments_are_refused(text: str) -> None:
    """A bare number (milliseconds? a year?), a negative or unknown unit, a word or an
    impossible date is neither."""
    with pytest.raises(ValueError, match="is neither a time like 2026-12-01"):
        parse_when_ms(text, now_ms=NOW_MS)


def test_bad_moment_is_a_usage_error() -> None:
    """`jobs-deleted --deleted-after yesterday` exits 2 naming the option, before any call."""
    result = CliRunner().invoke(
        main, ["jobs-deleted", "--deleted-after", "yesterday", "--socket", "/nonexistent"]
    )
    assert result.exit_code == 2
    assert "--deleted-after" in result.output
    assert "'yesterday' is neither a time" in result.output


def test_bad_duration_is_a_usage_error() -> None:
    """`--older-than 1w` exits 2 with a one-line reason, before any call is made."""
    result = CliRunner().invoke(
        main, ["jobs-cleanup", "--older-than", "1w", "--socket", "/nonexistent"]
    )
    assert result.exit_code == 2
    assert "'1w' is not a duration" in result.output


@pytest.mark.parametrize(
    "command",
    [
        "serve",
        "simulator",
        "jobs-cleanup",
        "jobs-list",
        "jobs-submit",
        "stats",
        "health",
        "cleanup-history",
    ],
)
def test_every_command_has_help(command: str) -> None:
    """`--help` on each command describes it and exits 0."""
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert result.output.startswith("Usage: ")
    assert "--help" in result.output


def test_unreachable_service_exits_3() -> None:
    """A socket nobody listens on is reported in one line, exit status 3."""
    result = CliRunner().invoke(main, ["stats", "--socket", "/tmp/hc-does-not-exist.sock"])
    assert result.exit_code == 3
    assert "cannot reach hero_codescalers at /tmp/hc-does-not-exist.sock" in result.output
    assert "Traceback" not in result.output


def test_output_is_json_with_id_lists_on_one_line() -> None:
    """The printed summary is valid JSON; lists of ids stay on one line."""
    value = {
        "jobs_deleted": 2,
        "job_ids": [1, 2],
        "errors": [],
        "nested": [{"a": [1]}],
        "empty": {},
    }
    text = render_json(value)
    assert json.loads(text) == value
    assert '  "job_ids": [1, 2],' in text.splitlines()


def test_help_documents_the_exit_statuses_and_output() -> None:
    """`hero_codescalers --help` lists every exit status, and the commands that print
    results take --output table|json."""
    result = CliRunner().invoke(main, ["--help"])
    statuses = re.findall(r"^\s+(\d+)\s{2,}", result.output, re.MULTILINE)
    assert statuses == ["0", "1", "2", "3", "4", "130"]
    for command in (
        ["jobs-list"],
        ["stats"],
        ["cleanup-history"],
        ["policies"],
        ["jobs-cleanup"],
        ["policies", "run"],
    ):
        text = CliRunner().invoke(main, [*command, "--help"]).output
        assert "--output [table|json]" in text, command


def test_help_does_not_load_the_tables() -> None:
    """--help never imports the tables (nor rich's progress): they load only to print for
    people. (structlog itself loads rich's console when rich is installed.)"""
    code = (
        "import sys; from click.testing import CliRunner; from hero_codescalers.cli import main; "
        "CliRunner().invoke(main, ['jobs-cleanup', '--help']); "
        "print(sorted({'hero_codescalers.cli.tables', 'rich.progress'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_table_times_and_durations_read_short() -> None:
    """Today's times to the second, this year's to the minute, older ones by day; '-' for
    none. Durations from milliseconds to days."""
    from datetime import datetime  # noqa: PLC0415

    from hero_codescalers.cli.tables import duration, short  # noqa: PLC0415

    now = datetime(2026, 6, 15, 12, 0, 0).astimezone()
    ms = int(now.timestamp() * 1000)
    assert short(ms - 3_600_000, now) == "11:00:00"
    assert short(ms - 30 * 86_400_000, now) == "05-16 12:00"
    assert short(ms - 400 * 86_400_000, now) == "2025-05-11"
    assert short(None, now) == "-"
    assert [duration(v) for v in (850, 1_200, 184_000, 7_500_000, 277_200_000, None)] == [
        "850ms",
        "1.2s",
        "3m04s",
        "2h05m",
        "3d05h",
        "-",
    ]
