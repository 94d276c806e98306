"""Every example of the OpenRPC document is true against the simulator, in the document's order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hero_codescalers.examples import VOLATILE
from hero_codescalers.methods import registry

from ..conftest import Caller

DOCUMENT = json.loads((Path(__file__).parents[2] / "openrpc" / "openrpc.json").read_text())


def same(expected: Any, actual: Any, *, partial: bool, where: str = "result") -> None:
    """`actual` is `expected`, but for volatile fields (same type) and, when partial, extra keys."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        if not partial:
            assert set(actual) == set(expected), where
        for key, value in expected.items():
            assert key in actual, f"{where}.{key}"
            if key in VOLATILE:
                assert type(actual[key]) is type(value) or None in (value, actual[key]), (
                    f"{where}.{key}"
                )
            else:
                same(value, actual[key], partial=partial, where=f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), where
        assert len(actual) == len(expected), where
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            same(e, a, partial=partial, where=f"{where}[{i}]")
    else:
        assert actual == expected, where


def test_every_method_has_an_example() -> None:
    """No method without at least one example pairing."""
    assert all(m.get("examples") for m in DOCUMENT["methods"])


async def test_examples_are_true_against_the_simulator(caller: Caller) -> None:
    """Sent as the document lists them (params by position), each example gets its result."""
    ran = 0
    for method in DOCUMENT["methods"]:
        partial = {ex.name: ex.partial for ex in registry.methods[method["name"]].examples}
        for example in method["examples"]:
            params = [p["value"] for p in example["params"]]
            result = await caller.call(method["name"], params)
            same(
                example["result"]["value"],
                result,
                partial=partial[example["name"]],
                where=f"{method['name']} {example['name']}",
            )
            ran += 1
    assert ran == sum(len(m.examples) for m in registry.methods.values())
