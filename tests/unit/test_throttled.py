"""Recurring problems are logged once per interval with a count, never once per event."""

from __future__ import annotations

from structlog.testing import capture_logs

from hero_codescalers.logs import Throttled


async def test_a_burst_is_one_line_then_its_count() -> None:
    """1,000 events: the first logged at once, the other 999 summed up in one more line."""
    problem = Throttled("accept_failed", interval=3600)
    with capture_logs() as logs:
        for _ in range(1000):
            problem.note(error="EMFILE")
        assert [e["count"] for e in logs] == [1]
        problem.close()  # what the pending flush would log at the end of the interval
    assert [(e["event"], e["count"], e["error"]) for e in logs] == [
        ("accept_failed", 1, "EMFILE"),
        ("accept_failed", 999, "EMFILE"),
    ]
    assert problem.total == 1000
    assert all(e["log_level"] == "warning" for e in logs)


async def test_nothing_more_is_logged_without_new_events() -> None:
    """Closing after a single event logs nothing more."""
    problem = Throttled("connections_refused", interval=3600)
    with capture_logs() as logs:
        problem.note(cap=3)
        problem.close()
    assert [e["count"] for e in logs] == [1]
