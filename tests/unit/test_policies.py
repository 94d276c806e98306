"""The policies file: what it means, and the one line that says what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hero_codescalers.retention import TERMINAL, PolicyFileError, load
from hero_codescalers.retention.policies import parse_duration

EXAMPLE = Path(__file__).parents[2] / "deploy" / "policies.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policies.toml"
    path.write_text(text)
    return path


def test_the_shipped_example_loads() -> None:
    policies = load(EXAMPLE)
    week = policies["user-week"]
    assert (week.kind, week.keep_last, week.every) == ("user", 5, 3_600_000)
    assert week.finished_older_than == 7 * 86_400_000
    assert week.statuses == list(TERMINAL) == ["succeeded", "failed", "cancelled"]
    assert (week.enabled, week.dry_run, week.orphan_actions) == (True, False, False)
    failed = policies["failed-day"]
    assert (failed.statuses, failed.dry_run, failed.orphan_actions) == (["failed"], True, True)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("1s", 1_000), ("90s", 90_000), ("10m", 600_000), ("1h30m", 5_400_000), ("2w", 1_209_600_000)],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


def test_params_name_what_the_policy_selects(tmp_path: Path) -> None:
    text = '[policies.p]\nkind = "user"\nolder_than = "1d"\nevery = "1h"\norphan_actions = true\n'
    [p] = load(write(tmp_path, text)).values()
    assert p.params() == {
        "kind": "user",
        "statuses": ["succeeded", "failed", "cancelled"],
        "older_than_ms": 86_400_000,
        "orphan_actions": True,
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[policies.x]\nevery = "0s"', "policy 'x', field 'every': must be at least 1s"),
        ("[policies.x]\nevery = 3", "policy 'x', field 'every': 3 is not a duration"),
        ('[policies.x]\nevery = "1 hour"', "field 'every': '1 hour' is not a duration"),
        ("[policies.x]", "policy 'x', field 'every': Field required"),
        ('[policies.x]\nevery = "1h"\nfoo = 1', "policy 'x', field 'foo': unknown field"),
        ('[policies.x]\nevery = "1h"\nstatuses = ["done"]', "field 'statuses.0': Input should"),
        ('[policies.x]\nevery = "1h"\nstatuses = []', "field 'statuses': List should have"),
        ('[policies.x]\nevery = "1h"\nenabled = "yes"', "field 'enabled': Input should be"),
        ('[policies.x]\nevery = "1h"\nkeep_last = 0', "field 'keep_last': Input should be"),
        ('[policies.x]\nevery = "1h"\nactor = "kind"', "field 'actor': 'kind' is reserved"),
        ('[policies.x]\nevery = "1h"\nkind = "a b"', "policy 'x', field 'kind': must be"),
        ('[policies.x]\nevery = "1h"\nname = "y"', "field 'name': the table's key is the name"),
        ('[policies.manual]\nevery = "1h"', "policy 'manual': the name is reserved"),
        ('[policies."bad name"]\nevery = "1h"', "policy 'bad name', field 'name': String should"),
        ("[policies]\nx = 1", "policy 'x': must be a table, as [policies.x]"),
        ("policies = 1", "'policies' must be tables"),
        ("[other]", "unknown table 'other'"),
        ("every =", "not valid TOML"),
    ],
)
def test_a_file_that_cannot_be_used_is_one_line(tmp_path: Path, text: str, line: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyFileError) as raised:
        load(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert line in message
    assert "\n" not in message


def test_an_unreadable_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match=r"missing\.toml: cannot be read \(No such file"):
        load(tmp_path / "missing.toml")


def test_an_empty_file_declares_no_policy(tmp_path: Path) -> None:
    assert load(write(tmp_path, "# nothing yet\n")) == {}
