"""A small JSON-RPC client of this service over its Unix socket, for the CLI."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import aiohttp

URL = "http://localhost/rpc"


class RpcError(Exception):
    """An error object answered by the service."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data


class Unreachable(Exception):
    """The service's socket could not be reached."""


class ServiceClient:
    def __init__(self, socket: Path, timeout: float = 600.0) -> None:
        self.socket = socket
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._ids = itertools.count(1)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        payload = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": params or {},
        }
        connector = aiohttp.UnixConnector(path=str(self.socket))
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=self.timeout) as session,
                session.post(URL, json=payload) as resp,
            ):
                answer = await resp.json(content_type=None)
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(
                f"cannot reach the service at {self.socket}: {exc.os_error.strerror}"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(
                f"no answer from the service at {self.socket}: {type(exc).__name__}"
            ) from None
        if "error" in answer:
            err = answer["error"]
            raise RpcError(err["code"], err["message"], err.get("data"))
        return answer["result"]
