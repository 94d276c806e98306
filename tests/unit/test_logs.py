"""The service's console log lines."""

from __future__ import annotations

import pytest
import structlog

from hero_codescalers import logs


@pytest.fixture(autouse=True)
def _reset_structlog() -> object:
    yield None
    structlog.reset_defaults()


def test_a_console_traceback_shows_no_local_variables(capsys: pytest.CaptureFixture[str]) -> None:
    """An exception logged in console format prints a plain traceback: no frame's local
    variables (structlog's rich tracebacks would show them, and they may hold a secret)."""
    logs.configure("info", "console")
    token = "s3cr3t-relay-token"  # noqa: S105 # the secret that must not be printed
    try:
        raise ValueError(len(token))
    except ValueError:
        structlog.get_logger().exception("it_failed")
    err = capsys.readouterr().err
    assert "it_failed" in err
    assert "Traceback (most recent call last)" in err
    assert "ValueError: 18" in err
    assert token not in err
