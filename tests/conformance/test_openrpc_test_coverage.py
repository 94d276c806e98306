"""A real peer's suite: @open-rpc/test-coverage passes for every method of the live service."""

from __future__ import annotations

import json

from .coverage_harness import DOCUMENT, run_tool, summary


async def test_open_rpc_test_coverage_passes_for_every_method() -> None:
    """Every call the tool makes (the document's examples) is valid; every method is called."""
    code, out, err = await run_tool("json")
    assert code == 0, err
    calls = json.loads(out)
    methods = {m["name"] for m in json.loads(DOCUMENT.read_text())["methods"]}
    assert {c["methodName"] for c in calls} == methods
    failures = [(c["methodName"], c["title"], c.get("reason")) for c in calls if not c.get("valid")]
    assert failures == []
    print(summary(calls))
