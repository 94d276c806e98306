"""The generated SDK: it cannot drift from the document, and it works against the service."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

import pytest
from aiohttp import web
from hero_codescalers_sdk import (
    AsyncClient,
    CleanupRunning,
    CleanupSummary,
    Client,
    HeroProcUnavailable,
    InvalidParams,
    MethodNotFound,
    RpcError,
    TransportError,
)

from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator
from hero_codescalers.transport import create_app

from .conftest import Service, start_service
from .integration.population import add_job

SDK = Path(__file__).parents[1] / "openrpc" / "sdk"


def load_generator() -> object:
    spec = importlib.util.spec_from_file_location("sdk_generate", SDK / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_sdk_is_what_the_generator_writes(tmp_path: Path) -> None:
    """Regenerating from openrpc/openrpc.json changes no file (run `make sdk` after a change)."""
    generator = load_generator()
    assert generator.main(["--out", str(tmp_path)]) == 0  # type: ignore[attr-defined]
    fresh = {p.name: p.read_text() for p in (tmp_path / "hero_codescalers_sdk").iterdir()}
    committed = {
        p.name: p.read_text() for p in (SDK / "hero_codescalers_sdk").iterdir() if p.is_file()
    }
    assert fresh == committed, "run `make sdk`"


def test_one_method_per_rpc_method_and_one_exception_per_error_code() -> None:
    """Every documented method and error code has its SDK counterpart."""
    import json  # noqa: PLC0415

    document = json.loads((SDK.parent / "openrpc.json").read_text())
    for method in document["methods"]:
        name = method["name"].replace(".", "_")
        assert asyncio.iscoroutinefunction(getattr(AsyncClient, name))
        assert callable(getattr(Client, name))
    import hero_codescalers_sdk  # noqa: PLC0415

    for name, error in document["components"]["errors"].items():
        assert error["code"] == getattr(hero_codescalers_sdk, name).CODE


async def test_async_client_over_the_unix_socket(simulator: Simulator, service: Service) -> None:
    """Typed params in, pydantic results out."""
    async with AsyncClient(service.socket) as client:
        made = await client.jobs_submit(kind="user", actor="alice", script="s", input={"x": 1})
        listed = await client.jobs_list(actor="alice")
        summary = await client.jobs_cleanup(actor="alice")
        health = await client.system_health()
        document = await client.rpc_discover()
    assert [j.id for j in listed.jobs] == [made.job_id]
    assert isinstance(summary, CleanupSummary)
    assert summary.job_ids == [made.job_id]
    assert health.hero_proc.reachable is True
    assert document["info"]["title"] == "hero_codescalers"


async def test_errors_are_typed_and_carry_code_message_and_data(
    simulator: Simulator, service: Service
) -> None:
    """Each documented error code raises its own class, with the answer's code, message and data."""
    async with AsyncClient(service.socket) as client:
        with pytest.raises(InvalidParams) as invalid:
            await client.jobs_cleanup(actor="kind_user")
        assert invalid.value.code == -32602
        assert invalid.value.message == "Invalid params"
        assert invalid.value.data.startswith("actor: ")
        with pytest.raises(MethodNotFound):
            await client.call("jobs.delete", {})
        simulator.hooks.append(hold_first_list := Hold())
        first = asyncio.create_task(client.jobs_cleanup())
        await hold_first_list.entered.wait()
        with pytest.raises(CleanupRunning) as running:
            await client.jobs_cleanup(dry_run=True)
        assert isinstance(running.value, RpcError)
        hold_first_list.release.set()
        await first


class Hold:
    """A simulator hook that holds the first job.list until released."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, method: str, params: object) -> None:
        if method == "job.list" and not self.release.is_set():
            self.entered.set()
            await self.release.wait()


async def test_hero_proc_unavailable_is_its_own_exception(sock_dir: Path) -> None:
    """-32020 arrives as HeroProcUnavailable with the socket in its data."""
    settings = Settings(socket=sock_dir / "svc.sock", hero_proc_socket=sock_dir / "gone.sock")
    svc, runner, sock, _ = await start_service(settings)
    try:
        async with AsyncClient(svc.socket) as client:
            with pytest.raises(HeroProcUnavailable) as caught:
                await client.stats()
        assert caught.value.data["socket"] == str(sock_dir / "gone.sock")
    finally:
        await runner.cleanup()
        sock.close()


async def test_an_unreachable_service_is_a_transport_error(sock_dir: Path) -> None:
    """No service on the socket: TransportError naming it."""
    async with AsyncClient(sock_dir / "nobody.sock") as client:
        with pytest.raises(
            TransportError, match=r"cannot reach hero_codescalers at .*nobody\.sock"
        ):
            await client.stats()


async def test_a_tcp_url_works_too(simulator: Simulator, settings: Settings) -> None:
    """The app behind a TCP site (as behind a relay) answers the SDK given a URL."""
    runner = web.AppRunner(create_app(settings), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        async with AsyncClient(url=f"http://127.0.0.1:{port}/rpc") as client:
            assert (await client.stats()).hero_proc.job_count == 0
    finally:
        await runner.cleanup()


def test_default_socket_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """$HERO_CODESCALERS_SOCKET first, then $HERO_SOCKET_DIR, as the service does."""
    monkeypatch.setenv("HERO_SOCKET_DIR", "/run/hero")
    monkeypatch.delenv("HERO_CODESCALERS_SOCKET", raising=False)
    assert AsyncClient().socket == Path("/run/hero/hero_codescalers/rpc.sock")
    monkeypatch.setenv("HERO_CODESCALERS_SOCKET", "/tmp/x.sock")
    assert AsyncClient().socket == Path("/tmp/x.sock")
    assert AsyncClient(url="http://h/rpc").socket is None
    with pytest.raises(ValueError, match="not both"):
        AsyncClient("/a.sock", url="http://h/rpc")


async def test_the_sibling_tool_example_runs(sock_dir: Path) -> None:
    """openrpc/sdk/examples/sibling_tool.py, run as a sibling would, submits and cleans up."""
    sim = Simulator()
    add_job(sim.store, actor="someone-else")
    settings = Settings(socket_dir=sock_dir, admin_uids={os.getuid()})
    async with sim.serve(settings.hero_proc_socket):
        _, runner, sock, _ = await start_service(settings)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SDK / "examples" / "sibling_tool.py"),
                env={**os.environ, "HERO_SOCKET_DIR": str(sock_dir)},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
        finally:
            await runner.cleanup()
            sock.close()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[2].endswith("(action reused)")
    assert lines[3].startswith("dry run: would delete jobs [2, 3, 4]")
    assert lines[4] == "deleted 3 jobs and 2 actions"
    assert lines[-1] == "jobs of sibling-demo left: 0"
    assert [j["tags"] for j in sim.store.jobs.values()] == [
        ["codescaler", "codescaler_kind_user", "codescaler_someone-else"]
    ]


async def test_the_sync_client_for_scripts(simulator: Simulator, service: Service) -> None:
    """Client runs each call to its end (here from a worker thread, as a script's main would)."""

    def script() -> tuple[int, int]:
        with Client(service.socket) as client:
            made = client.jobs_submit(kind="user", actor="bob", script="s")
            return made.job_id, client.jobs_cleanup(actor="bob").jobs_deleted

    job_id, deleted = await asyncio.to_thread(script)
    assert job_id == 1
    assert deleted == 1
