"""Unit-test fixtures: aioresponses, made to work with aiohttp >= 3.14.

aiohttp 3.14 added a required keyword-only `stream_writer` to
`ClientResponse.__init__` (the request's writer, read for `output_size`);
aioresponses 0.7.9 does not pass it (pnuckowski/aioresponses#289, fix pending
in #288). aioresponses lets each mocked response name its response class, so
the mock below defaults that class to a `ClientResponse` that supplies a
writer of an already-sent request when none is given. No global patching, no
aiohttp pin below its security release; once aioresponses passes the argument
itself, `setdefault` leaves its value alone and this shim does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses


class _SentRequest:
    """The writer of a request whose body is fully sent: all ClientResponse reads of it."""

    output_size = 0


class CompatResponse(ClientResponse):
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentRequest())
        super().__init__(method, url, **kwargs)


class CompatAioresponses(aioresponses):
    def add(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("response_class") is None:
            kwargs["response_class"] = CompatResponse
        super().add(*args, **kwargs)


@pytest.fixture
def mock_http() -> Iterator[CompatAioresponses]:
    """aioresponses, working with this project's aiohttp."""
    with CompatAioresponses() as mocked:
        yield mocked
