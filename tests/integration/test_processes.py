"""The `serve` and `simulator` commands as real processes: start, answer, stop, clean up."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hero_codescalers.simulator import Simulator, seed_population

from ..conftest import Caller, simulator_socket


class Proc:
    """A running `hero_codescalers` command and its JSON log lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def wait_for(self, event: str) -> dict[str, Any]:
        """Read log lines until `event` appears (or the process ends)."""
        assert self.process.stderr is not None
        while True:
            raw = await self.process.stderr.readline()
            if not raw:
                raise AssertionError(f"process ended before {event!r}: {self.lines}")
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"event": raw.decode(errors="replace").strip()}
            self.lines.append(line)
            if line.get("event") == event:
                return line

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return await self.stop_waited()

    async def stop_waited(self) -> int:
        """Wait for the stop line (a signal was sent) and the exit status."""
        await self.wait_for("service_stopped" if self._is_service else "simulator_stopped")
        return await self.process.wait()

    @property
    def _is_service(self) -> bool:
        return any(line.get("event") == "service_started" for line in self.lines)


def command_env(sock_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a command under test: sockets and the state database in
    `sock_dir`, JSON logs, and this test's own uid an admin (as root or as any other user)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERO_")}
    env.update(
        HERO_SOCKET_DIR=str(sock_dir),
        HERO_CODESCALERS_STATE_DIR=str(sock_dir / "state"),
        HERO_CODESCALERS_LOG_FORMAT="json",
        HERO_CODESCALERS_ADMIN_UIDS=str(os.getuid()),
    )
    env.update(extra)
    return env


def _login_fd_limit() -> None:
    """In the child: the soft descriptor limit a login session gives an ordinary user
    (1,024, below the hard limit), as the service meets it outside a unit file."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


@asynccontextmanager
async def command(*args: str, env: dict[str, str]) -> AsyncIterator[Proc]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hero_codescalers",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        preexec_fn=_login_fd_limit,
    )
    proc = Proc(process)
    try:
        yield proc
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_simulator_and_service_run_answer_and_leave_nothing_behind(sock_dir: Path) -> None:
    """Both commands start on the sockets under $HERO_SOCKET_DIR and remove them on SIGTERM."""
    env = command_env(sock_dir)
    hero_proc_sock = sock_dir / "hero_proc" / "rpc.sock"
    service_sock = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("simulator", "--seed", "1000", env=env) as sim:
        started = await sim.wait_for("simulator_started")
        assert started["jobs"] == 1000
        async with command("serve", env=env) as svc:
            await svc.wait_for("service_started")
            assert oct(service_sock.stat().st_mode & 0o777) == oct(0o660)
            stats = await Caller(service_sock).call("stats")
            assert stats["codescaler"]["jobs"] == 800
            summary = await Caller(service_sock).call("jobs.cleanup", {})
            assert summary["jobs_deleted"] == 800
            assert await svc.stop(signal.SIGTERM) == 0
            assert not service_sock.exists()
        assert await sim.stop(signal.SIGINT) == 0
        assert not hero_proc_sock.exists()


async def test_a_stale_socket_file_is_replaced(sock_dir: Path) -> None:
    """A socket file left by a crash (nobody listening) does not prevent a start."""
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    async with command("serve", env=command_env(sock_dir)) as svc:
        await svc.wait_for("service_started")
        assert (await Caller(path).call("rpc.discover"))["info"]["title"] == "hero_codescalers"
        assert await svc.stop() == 0


async def test_each_log_line_has_a_utc_timestamp_and_a_call_line_its_call(
    sock_dir: Path,
) -> None:
    """The service's JSON lines carry their level and an ISO 8601 UTC timestamp of now; the
    line of a call names its request id, method and peer."""
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("serve", env=command_env(sock_dir)) as svc:
        started = await svc.wait_for("service_started")
        await Caller(path).call("system.ping")
        call = await svc.wait_for("rpc_call")
        assert await svc.stop() == 0
    for line in (started, call):
        assert line["level"] == "info"
        assert line["timestamp"].endswith("Z")
        stamp = datetime.fromisoformat(line["timestamp"])
        assert stamp.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)
    assert call["method"] == "system.ping"
    assert call["outcome"] == "ok"
    assert (call["peer_uid"], call["peer_pid"]) == (os.getuid(), os.getpid())
    assert call["request_id"]
    assert "request_id" not in started


async def test_a_live_socket_refuses_a_second_instance(sock_dir: Path) -> None:
    """A second instance on the same socket exits 1, saying why; the first keeps serving."""
    env = command_env(sock_dir)
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("serve", env=env) as first:
        await first.wait_for("service_started")
        async with command("serve", env=env) as second:
            _, err = await second.process.communicate()
            assert second.process.returncode == 1
            assert (
                err.decode().strip()
                == f"hero_codescalers: another instance is already listening on {path}"
            )
        assert (await Caller(path).call("system.health"))["version"]
        assert await first.stop() == 0


async def test_a_non_socket_file_is_never_replaced(sock_dir: Path) -> None:
    """A regular file at the socket path is left alone and the start is refused."""
    path = sock_dir / "precious"
    path.write_text("keep me")
    async with command("serve", "--socket", str(path), env=command_env(sock_dir)) as svc:
        _, err = await svc.process.communicate()
    assert svc.process.returncode == 1
    assert "exists and is not a socket" in err.decode()
    assert path.read_text() == "keep me"


def service_env(sock_dir: Path, simulator: Simulator, **extra: str) -> dict[str, str]:
    """The environment of a service process in front of the in-process `simulator`."""
    return command_env(
        sock_dir, HERO_CODESCALERS_HERO_PROC_SOCKET=str(simulator_socket(simulator)), **extra
    )


class HoldDeletes:
    """A simulator hook that holds the first job.delete until released."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, method: str, params: dict[str, Any]) -> None:
        if method == "job.delete" and not self.release.is_set():
            self.entered.set()
            await self.release.wait()


async def test_sigterm_during_a_cleanup_finishes_it_cleanly(
    sock_dir: Path, simulator: Simulator
) -> None:
    """SIGTERM mid-run: the cleanup stops at its next step, answers and logs its summary; exit 0."""
    seed_population(simulator.store, 100)
    hold = HoldDeletes()
    simulator.hooks.append(hold)
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("serve", env=service_env(sock_dir, simulator)) as svc:
        await svc.wait_for("service_started")
        running = asyncio.create_task(Caller(path).call("jobs.cleanup", {}))
        await hold.entered.wait()
        svc.process.send_signal(signal.SIGTERM)
        await svc.wait_for("service_stopping")
        assert not path.exists(), "the socket should go first: no new callers"
        hold.release.set()
        summary = await running
        finished = await svc.wait_for("cleanup_finished")
        assert await svc.stop_waited() == 0
    assert summary["complete"] is False
    assert "stopped: the service is shutting down" in summary["errors"]
    assert summary["jobs_deleted"] == 100  # the page under way was finished
    assert finished["jobs_deleted"] == 100
    assert not path.exists()


async def test_the_grace_period_bounds_a_stuck_cleanup(
    sock_dir: Path, simulator: Simulator
) -> None:
    """A cleanup stuck on hero_proc past the grace is cancelled, logged, and the process exits 0."""
    seed_population(simulator.store, 20)
    hold = HoldDeletes()
    simulator.hooks.append(hold)
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    env = service_env(sock_dir, simulator, HERO_CODESCALERS_SHUTDOWN_GRACE="0.3")
    try:
        async with command("serve", env=env) as svc:
            await svc.wait_for("service_started")
            running = asyncio.create_task(Caller(path).answer("jobs.cleanup", {}))
            await hold.entered.wait()
            svc.process.send_signal(signal.SIGTERM)
            cancelled = await svc.wait_for("cleanup_cancelled")
            assert await svc.stop_waited() == 0
            with pytest.raises(aiohttp.ClientError):
                await running
    finally:
        hold.release.set()
    assert cancelled["jobs_matched"] == 20
    assert not path.exists()


async def test_a_killed_service_restarts(sock_dir: Path, simulator: Simulator) -> None:
    """SIGKILL leaves the socket file behind; the next start replaces it and serves."""
    env = service_env(sock_dir, simulator)
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("serve", env=env) as first:
        await first.wait_for("service_started")
        first.process.kill()
        await first.process.wait()
    assert path.exists()
    async with command("serve", env=env) as second:
        await second.wait_for("service_started")
        assert (await Caller(path).call("system.health"))["status"] == "ok"
        assert await second.stop() == 0


async def test_dev_runs_simulator_and_service_until_interrupted(sock_dir: Path) -> None:
    """`dev`: a seeded simulator and the service under $HERO_SOCKET_DIR, this uid an admin;
    SIGINT (Ctrl-C) stops both, exit 0, no socket left."""
    env = command_env(sock_dir)
    del env["HERO_CODESCALERS_ADMIN_UIDS"]  # dev itself makes this uid an admin
    service_sock = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("dev", "--seed", "100", env=env) as dev:
        await dev.wait_for("simulator_started")
        started = await dev.wait_for("service_started")
        assert started["admin_uids"] == [os.getuid()]
        assert (await Caller(service_sock).call("stats"))["codescaler"]["jobs"] == 80
        assert (await Caller(service_sock).call("jobs.cleanup", {}))["jobs_deleted"] == 80
        dev.process.send_signal(signal.SIGINT)
        await dev.wait_for("service_stopped")
        await dev.wait_for("simulator_stopped")  # the service first, then its hero_proc
        assert await dev.process.wait() == 0
    assert not service_sock.exists()
    assert not (sock_dir / "hero_proc" / "rpc.sock").exists()


async def test_dev_stops_the_simulator_when_the_service_cannot_start(
    sock_dir: Path, tmp_path: Path
) -> None:
    """`dev` whose service ends first (a configuration error, status 2): the simulator
    still running is stopped, and dev exits with the service's status."""
    env = command_env(sock_dir, HERO_CODESCALERS_TOKEN_FILE=os.fspath(tmp_path / "missing"))
    async with command("dev", "--seed", "0", env=env) as dev:
        await dev.wait_for("simulator_started")
        await dev.wait_for("simulator_stopped")
        assert await dev.process.wait() == 2
    errors = [line["event"] for line in dev.lines if "configuration error" in line["event"]]
    assert errors, dev.lines
    assert "HERO_CODESCALERS_TOKEN_FILE=" in errors[0]
    assert not (sock_dir / "hero_proc" / "rpc.sock").exists()
