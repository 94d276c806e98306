"""An answer against the result its OpenRPC example shows."""

from __future__ import annotations

from typing import Any

from hero_codescalers.examples import VOLATILE


def same(expected: Any, actual: Any, *, partial: bool, where: str = "result") -> None:
    """`actual` is `expected`, but for volatile fields (same type) and, when partial, extra keys."""
    if isinstance(expected, dict):
        same_object(expected, actual, partial=partial, where=where)
    elif isinstance(expected, list):
        assert isinstance(actual, list), where
        assert len(actual) == len(expected), where
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            same(e, a, partial=partial, where=f"{where}[{i}]")
    else:
        assert actual == expected, where


def same_object(expected: dict[str, Any], actual: Any, *, partial: bool, where: str) -> None:
    assert isinstance(actual, dict), where
    if not partial:
        assert set(actual) == set(expected), where
    for key, value in expected.items():
        assert key in actual, f"{where}.{key}"
        if key not in VOLATILE:
            same(value, actual[key], partial=partial, where=f"{where}.{key}")
        elif None not in (value, actual[key]):
            assert type(actual[key]) is type(value), f"{where}.{key}"
