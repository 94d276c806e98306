"""Fixtures shared by every test: short socket paths, a simulator, the service, a caller."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hero_codescalers.listener import listen
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator
from hero_codescalers.transport import ENGINE, create_app, runner_for, start_site
from hero_codescalers.unixsock import remove_socket


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's services keep their state in a directory of the test's own, never in
    the default one under $HOME (which the test user may not be able to write): through
    the variable for the settings a test builds and the processes it starts."""
    path = tmp_path / "state"
    monkeypatch.setenv("HERO_CODESCALERS_STATE_DIR", str(path))
    return path


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for sockets (sun_path holds 108 bytes), traversable by any uid."""
    path = Path(tempfile.mkdtemp(prefix="hc-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def simulator(sock_dir: Path) -> AsyncIterator[Simulator]:
    """A hero_proc simulator served on a real Unix socket in the test's event loop."""
    sim = Simulator()
    async with sim.serve(sock_dir / "hero_proc.sock"):
        yield sim


@pytest.fixture
def settings(sock_dir: Path) -> Settings:
    """Settings of a service in `sock_dir`, its socket open to every uid (for peer tests).

    The test process's own uid is an admin, so that the suite runs the same as root
    and as any other user; refusals are tested with peers that are not admins.
    """
    return Settings(
        socket=sock_dir / "svc.sock",
        hero_proc_socket=sock_dir / "hero_proc.sock",
        socket_mode=0o666,
        hero_proc_timeout=5.0,
        admin_uids={os.getuid()},
        state_dir=sock_dir / "state",
    )


@dataclass
class Service:
    """A running service: its socket and its application."""

    socket: Path
    app: web.Application

    @property
    def engine(self) -> Any:
        return self.app[ENGINE]


async def start_service(settings: Settings) -> tuple[Service, web.AppRunner, Any, int]:
    sock, inode = listen(settings)
    app = create_app(settings)
    runner = runner_for(app)
    await runner.setup()
    await start_site(runner, sock)
    return Service(settings.socket, app), runner, sock, inode


@pytest.fixture
async def service(settings: Settings, simulator: Simulator) -> AsyncIterator[Service]:
    """The service, in the test's event loop, on a real Unix socket, in front of `simulator`."""
    svc, runner, sock, inode = await start_service(settings)
    yield svc
    await runner.cleanup()
    sock.close()
    remove_socket(settings.socket, inode)


class Caller:
    """A JSON-RPC caller of a Unix socket, as an admin's curl would be."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    async def post(
        self, body: bytes | str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """POST a raw body; the HTTP status and the parsed JSON answer (None when empty)."""
        data = body.encode() if isinstance(body, str) else body
        connector = aiohttp.UnixConnector(path=os.fspath(self.socket))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                "http://localhost/rpc",
                data=io.BytesIO(data),
                headers=headers or {"Content-Type": "application/json"},
            ) as resp,
        ):
            raw = await resp.read()
            return resp.status, (await resp.json(content_type=None) if raw else None)

    async def answer(self, method: str, params: Any = None) -> dict[str, Any]:
        """The whole JSON-RPC response object of one call."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        status, answer = await self.post(json.dumps(request))
        assert status == 200
        assert isinstance(answer, dict)
        return answer

    async def call(self, method: str, params: Any = None) -> Any:
        """The result of one call; fails the test on an error answer."""
        answer = await self.answer(method, params)
        assert "error" not in answer, answer
        return answer["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        """The error object of one call; fails the test on a result."""
        answer = await self.answer(method, params)
        assert "error" in answer, answer
        return answer["error"]


ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def make_service(settings: Settings, simulator: Simulator) -> AsyncIterator[ServiceFactory]:
    """Start services with settings of the test's choosing (each on its own socket)."""
    running: list[tuple[web.AppRunner, Any]] = []

    async def make(**overrides: Any) -> Service:
        name = f"svc{len(running) + 1}.sock"
        values = {**settings.model_dump(), "socket": settings.socket.with_name(name), **overrides}
        svc, runner, sock, _ = await start_service(Settings(**values))
        running.append((runner, sock))
        return svc

    yield make
    for runner, sock in running:
        await runner.cleanup()
        sock.close()


@pytest.fixture
def caller(service: Service) -> Caller:
    """Calls the service over its socket."""
    return Caller(service.socket)


@pytest.fixture
def hero_proc(simulator: Simulator) -> Caller:
    """Calls the simulator over its socket, as raw JSON-RPC."""
    return Caller(simulator_socket(simulator))


async def raw_exchange(socket: Path, data: bytes) -> bytes:
    """Send `data` on a fresh connection and read until the service closes it."""
    reader, writer = await asyncio.open_unix_connection(str(socket))
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


def simulator_socket(simulator: Simulator) -> Path:
    path = simulator.socket_path
    assert path is not None
    return path


@contextlib.asynccontextmanager
async def serve_tcp(app: web.Application) -> AsyncIterator[str]:
    """`app` served on 127.0.0.1 (an ephemeral port), as behind a relay; its /rpc URL."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}/rpc"
    finally:
        await runner.cleanup()


def run_ids(*first: str) -> Callable[[], str]:
    """A service engine's run ids: `first`, in order, then random ones."""
    given = iter(first)
    return lambda: next(given, None) or secrets.token_hex(8)
