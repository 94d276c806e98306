"""Run @open-rpc/test-coverage against the live service, started on a fresh simulator.

The tool speaks HTTP to the URL of the document's first server, over TCP, while
the service listens on a Unix socket: for the run, a small bridge listens on
127.0.0.1 (an ephemeral port) and pipes each connection to the service's
socket, and the tool gets a copy of the document whose `servers` point at it.
The calls the tool makes are the document's examples, in the document's order.

    python -m tests.conformance.coverage_harness     # console report (make openrpc-coverage)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator
from hero_codescalers.transport import create_app, runner_for
from hero_codescalers.unixsock import bind_unix, remove_socket

ROOT = Path(__file__).parents[2]
TOOL = ROOT / "openrpc" / "node_modules" / ".bin" / "open-rpc-test-coverage"
DOCUMENT = ROOT / "openrpc" / "openrpc.json"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def tcp_bridge(unix_socket: Path) -> AsyncIterator[int]:
    """A TCP listener on 127.0.0.1 whose connections are piped to `unix_socket`; its port."""

    async def connect(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        service_r, service_w = await asyncio.open_unix_connection(str(unix_socket))
        await asyncio.gather(_pipe(client_r, service_w), _pipe(service_r, client_w))

    server = await asyncio.start_server(connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def live_service() -> AsyncIterator[tuple[Path, Path]]:
    """A fresh simulator and the service in front of it; (service socket, scratch dir)."""
    scratch = Path(tempfile.mkdtemp(prefix="hc-cov-", dir="/tmp"))
    settings = Settings(socket_dir=scratch, admin_uids={os.getuid()})  # any user runs it
    try:
        async with Simulator().serve(settings.hero_proc_socket):
            sock, inode = bind_unix(settings.socket, 0o600)
            runner = runner_for(create_app(settings))
            await runner.setup()
            try:
                await web.SockSite(runner, sock).start()
                yield settings.socket, scratch
            finally:
                await runner.cleanup()
                sock.close()
                remove_socket(settings.socket, inode)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def run_tool(reporter: str) -> tuple[int, str, str]:
    """Run the tool with `reporter` against a live service; exit code, stdout, stderr."""
    if not TOOL.exists():
        raise RuntimeError(f"{TOOL} is missing: run `make install` (npm ci in openrpc/)")
    async with live_service() as (socket, scratch), tcp_bridge(socket) as port:
        document = json.loads(DOCUMENT.read_text())
        document["servers"] = [{"name": "bridge", "url": f"http://127.0.0.1:{port}/rpc"}]
        bridged = scratch / "openrpc.json"
        bridged.write_text(json.dumps(document))
        proc = await asyncio.create_subprocess_exec(
            str(TOOL),
            "-s",
            str(bridged),
            "-r",
            reporter,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def summary(calls: list[dict[str, Any]]) -> str:
    valid = sum(1 for c in calls if c.get("valid"))
    methods = len({c["methodName"] for c in calls})
    return f"{valid}/{len(calls)} calls valid over {methods} methods"


def main() -> int:
    code, out, err = asyncio.run(run_tool("console"))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
