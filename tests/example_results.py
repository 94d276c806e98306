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
            assert _kind(actual[key]) is _kind(value), f"{where}.{key}"


def _kind(value: Any) -> type:
    """The JSON type of `value`: a number, whole or not, is one (JSON does not tell 1000.0
    from 1000, and JavaScript's reading of it does not)."""
    return float if type(value) is int else type(value)
