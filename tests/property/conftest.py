"""A simulator and the service running in a background thread, called synchronously.

Hypothesis drives plain (synchronous) tests through many examples; each example
talks to the same live service over its real Unix socket with a small blocking
HTTP client, and resets the simulator's store between examples (the service is
idle then: every call has been answered).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hero_codescalers.engine import Engine
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator

from ..conftest import start_service


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(self.path))


@dataclass
class Stack:
    """The background simulator and service, and a blocking JSON-RPC caller."""

    sim: Simulator
    engine: Engine
    socket: Path

    def post(self, payload: Any) -> tuple[int, Any]:
        return self.post_raw(json.dumps(payload).encode())

    def post_raw(self, body: bytes) -> tuple[int, Any]:
        conn = UnixHTTPConnection(self.socket)
        try:
            conn.request("POST", "/rpc", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
        finally:
            conn.close()

    def answer(self, method: str, params: Any) -> dict[str, Any]:
        status, answer = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        assert status == 200, (status, answer)
        assert isinstance(answer, dict)
        return answer


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Simulator and service on their own event loop in a thread, for the whole module."""
    scratch = Path(tempfile.mkdtemp(prefix="hc-prop-", dir="/tmp"))
    settings = Settings(
        socket=scratch / "svc.sock",
        hero_proc_socket=scratch / "hp.sock",
        hero_proc_timeout=5.0,
        admin_uids={os.getuid()},  # the same as root and as any other user
        state_dir=scratch / "state",  # set up before the per-test state directory
    )
    sim = Simulator()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["stop"] = stop
        holder["loop"] = asyncio.get_running_loop()
        async with sim.serve(settings.hero_proc_socket):
            svc, runner, sock, _ = await start_service(settings)
            holder["engine"] = svc.engine
            ready.set()
            await stop.wait()
            await runner.cleanup()
            sock.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the background service did not start"
    yield Stack(sim, holder["engine"], settings.socket)
    holder["loop"].call_soon_threadsafe(holder["stop"].set)
    thread.join(30)
    shutil.rmtree(scratch, ignore_errors=True)
