"""A real peer's suite: @open-rpc/test-coverage passes for every method of the live service."""

from __future__ import annotations

import json
from typing import Any

from hero_codescalers.methods import registry

from ..example_results import same
from .coverage_harness import DOCUMENT, run_tool, summary


def assert_results_are_the_examples(calls: list[dict[str, Any]]) -> None:
    """Each answer is its example's result, volatile fields aside (the tool itself passes
    an answer that only fits the result's schema): each call met its example's state."""
    for call in calls:
        name = call["title"].rsplit(" ", 1)[1]
        example = next(e for e in registry.methods[call["methodName"]].examples if e.name == name)
        where = f"{call['methodName']} {name}"
        same(call["expectedResult"], call["result"], partial=example.partial, where=where)


async def test_open_rpc_test_coverage_passes_for_every_method() -> None:
    """Every call the tool makes (the document's examples, each once) is valid and answers
    its example's result; every method is called."""
    code, out, err = await run_tool("json")
    assert code == 0, err
    calls = json.loads(out)
    methods = {m["name"] for m in json.loads(DOCUMENT.read_text())["methods"]}
    assert {c["methodName"] for c in calls} == methods
    failures = [(c["methodName"], c["title"], c.get("reason")) for c in calls if not c.get("valid")]
    assert failures == []
    assert len(calls) == sum(len(m.examples) for m in registry.methods.values())
    assert_results_are_the_examples(calls)
    print(summary(calls))
