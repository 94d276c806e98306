"""The generated SDK: it cannot drift from the document, and it works against the service."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hero_codescalers_sdk import (
    AdminRequired,
    AsyncClient,
    CleanupRunning,
    CleanupStarted,
    CleanupStatus,
    CleanupSummary,
    Client,
    HeroCodescalersError,
    HeroProcUnavailable,
    InvalidParams,
    MethodNotFound,
    RpcError,
    TransportError,
)

from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator
from hero_codescalers.transport import create_app

from .conftest import Service, serve_tcp, start_service
from .integration.population import add_job

SDK = Path(__file__).parents[1] / "openrpc" / "sdk"
DOCUMENT = json.loads((SDK.parent / "openrpc.json").read_text())


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
    document = DOCUMENT
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
    async with serve_tcp(create_app(settings)) as url, AsyncClient(url=url) as client:
        assert (await client.stats()).hero_proc.job_count == 0


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


def test_every_error_is_a_hero_codescalers_error() -> None:
    """One base to catch: RpcError (and each documented code's class) and TransportError."""
    assert issubclass(RpcError, HeroCodescalersError)
    assert issubclass(TransportError, HeroCodescalersError)
    assert issubclass(AdminRequired, RpcError)
    assert not issubclass(TransportError, RpcError)
    assert not issubclass(RpcError, TransportError)


async def test_one_except_catches_an_answered_error_and_an_unreachable_service(
    simulator: Simulator, service: Service, sock_dir: Path
) -> None:
    """`except HeroCodescalersError` catches both kinds of failure, as their own classes."""
    caught: list[HeroCodescalersError] = []
    for socket, params in ((service.socket, {"actor": "kind_x"}), (sock_dir / "none", {})):
        async with AsyncClient(socket) as client:
            try:
                await client.jobs_list(**params)
            except HeroCodescalersError as exc:
                caught.append(exc)
    assert [type(e) for e in caught] == [InvalidParams, TransportError]


def documented_default(param: dict[str, Any]) -> Any:
    """The default a keyword parameter of the SDK should have: none for a required param,
    else the schema's default (None when it has none)."""
    if param["required"]:
        return inspect.Parameter.empty
    return param["schema"].get("default")


@pytest.mark.parametrize("cls", [AsyncClient, Client])
def test_signatures_show_the_documented_defaults(cls: type) -> None:
    """`dry_run: bool = False`, `limit: int = 100`: the schema's defaults, not None."""
    for method in DOCUMENT["methods"]:
        signature = inspect.signature(getattr(cls, method["name"].replace(".", "_")))
        for param in method["params"]:
            parameter = signature.parameters[param["name"]]
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
            assert parameter.default == documented_default(param), (method["name"], param)
    cleanup = inspect.signature(cls.jobs_cleanup).parameters
    assert (cleanup["dry_run"].annotation, cleanup["dry_run"].default) == ("bool", False)
    listing = inspect.signature(cls.jobs_list).parameters
    assert (listing["limit"].annotation, listing["limit"].default) == ("int", 100)
    assert inspect.signature(cls.jobs_cleanup_history).parameters["limit"].default == 20


@pytest.mark.parametrize("cls", [AsyncClient, Client])
def test_each_method_has_a_timeout_that_fits_it(cls: type) -> None:
    """Seconds for health and reads, none for a cleanup (the service's deadline bounds it)."""
    timeouts = {
        m["name"]: inspect.signature(getattr(cls, m["name"].replace(".", "_")))
        .parameters["timeout"]
        .default
        for m in DOCUMENT["methods"]
    }
    assert timeouts["jobs.cleanup"] is None
    assert timeouts["system.health"] == timeouts["system.ping"] == 10.0
    for read in ("jobs.list", "stats", "jobs.cleanup_history", "rpc.discover"):
        assert 0 < timeouts[read] <= 60, read


class Recorder:
    """A JSON-RPC peer over TCP that records each request and answers an error, or holds
    the calls of the methods in `hold` until `release` is set."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.hold: set[str] = set()
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        call = await request.json()
        self.requests.append(call)
        if call["method"] in self.hold:
            self.held.set()
            await self.release.wait()
        error = {"code": -32602, "message": "Invalid params", "data": "recorded"}
        return web.json_response({"jsonrpc": "2.0", "id": call["id"], "error": error})


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    """The recorder, listening; its URL."""
    peer = Recorder()
    app = web.Application()
    app.router.add_post("/rpc", peer.handle)
    async with serve_tcp(app) as url:
        yield peer, url
        peer.release.set()


@pytest.mark.parametrize(
    ("method", "kwargs", "sent"),
    [
        pytest.param("jobs_cleanup", {}, {}, id="cleanup-nothing-given"),
        pytest.param("jobs_cleanup", {"actor": "a"}, {"actor": "a"}, id="cleanup-one-filter"),
        pytest.param("jobs_cleanup", {"dry_run": True}, {"dry_run": True}, id="dry-run-given"),
        pytest.param("jobs_cleanup", {"dry_run": False}, {}, id="dry-run-its-default"),
        pytest.param("jobs_list", {}, {}, id="list-nothing-given"),
        pytest.param("jobs_list", {"limit": 5}, {"limit": 5}, id="limit-given"),
        pytest.param("jobs_list", {"limit": 100}, {}, id="limit-its-default"),
        pytest.param("jobs_cleanup_history", {"limit": 1}, {"limit": 1}, id="history-limit"),
        pytest.param(
            "jobs_submit",
            {"kind": "k", "actor": "a", "script": "s"},
            {"kind": "k", "actor": "a", "script": "s"},
            id="submit-required-only",
        ),
        pytest.param(
            "jobs_submit",
            {"kind": "k", "actor": "a", "script": "s", "target": "t", "input": 0},
            {"kind": "k", "actor": "a", "script": "s", "target": "t", "input": 0},
            id="submit-input-zero-is-not-its-default",
        ),
    ],
)
async def test_only_what_the_caller_chose_is_sent(
    recorder: tuple[Recorder, str], method: str, kwargs: dict[str, Any], sent: dict[str, Any]
) -> None:
    """A default the caller did not give is not sent: the service applies its own. A value
    equal to the documented default means the same, so it is left out too."""
    peer, url = recorder
    async with AsyncClient(url=url) as client:
        with pytest.raises(InvalidParams):
            await getattr(client, method)(**kwargs)
    assert peer.requests[0]["params"] == sent


async def test_a_call_that_outlives_its_timeout_is_a_transport_error(
    recorder: tuple[Recorder, str],
) -> None:
    """`timeout=` per call: past it, TransportError names the method and the wait; a cleanup
    (no timeout by default) held meanwhile still gets its answer."""
    peer, url = recorder
    peer.hold = {"stats", "jobs.cleanup"}
    async with AsyncClient(url=url) as client:
        cleanup = asyncio.create_task(client.jobs_cleanup())
        await peer.held.wait()
        with pytest.raises(TransportError, match=r"to stats within 0\.05s"):
            await client.stats(timeout=0.05)
        peer.release.set()
        with pytest.raises(InvalidParams):
            await cleanup


async def test_the_sync_client_in_a_running_event_loop_says_so(service: Service) -> None:
    """Called from a coroutine, Client refuses with a message that names AsyncClient
    (not asyncio's "cannot be called from a running event loop"), and closes cleanly."""
    with Client(service.socket) as client:
        with pytest.raises(
            RuntimeError, match=r"Client cannot be called inside a running event loop.*AsyncClient"
        ):
            client.stats()
        with pytest.raises(RuntimeError, match="AsyncClient"):
            client.call("system.ping")


async def test_a_background_run_through_the_sdk(simulator: Simulator, service: Service) -> None:
    """jobs_cleanup_start answers a CleanupStarted; jobs_cleanup_status a CleanupStatus whose
    summary, once done, is a CleanupSummary; jobs_cleanup_cancel of an ended run the same."""
    for _ in range(3):
        add_job(simulator.store)
    async with AsyncClient(service.socket) as client:
        started = await client.jobs_cleanup_start(reason="from a sibling tool")
        assert isinstance(started, CleanupStarted)
        await service.engine.idle()
        done = await client.jobs_cleanup_status(run_id=started.run_id)
        assert isinstance(done, CleanupStatus)
        assert (done.phase, done.outcome, done.background) == ("done", "ok", True)
        assert isinstance(done.summary, CleanupSummary)
        assert done.summary.jobs_deleted == 3
        left = await client.jobs_cleanup_cancel(run_id=started.run_id)
        assert (left.outcome, left.cancelled_by) == ("ok", None)
        with pytest.raises(InvalidParams, match="no cleanup run 0123456789abcdef"):
            await client.jobs_cleanup_status(run_id="0123456789abcdef")
