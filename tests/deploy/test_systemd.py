"""The systemd units: socket activation and readiness end to end (a real process, the
protocols' sockets and variables set up as systemd does), the units' settings, and
`systemd-analyze verify` / `security` where the tool exists."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hero_codescalers import systemd
from hero_codescalers.config_errors import ConfigError
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator

from ..conftest import Caller
from ..integration.peers import IS_ROOT
from ..integration.population import add_job
from ..integration.test_processes import Proc, command_env, service_env
from .units import ENV_FILE, SERVICE_UNIT, SOCKET_UNIT, environment, unit

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)
SECURITY_THRESHOLD = 2.0


def bound_socket(path: Path, mode: int) -> socket.socket:
    """A listening socket at `path`, as a .socket unit leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(os.fspath(path))
    os.chmod(path, mode)
    sock.listen(16)
    return sock


@pytest.fixture
def notify_socket(sock_dir: Path) -> Iterator[socket.socket]:
    """A datagram socket standing for systemd's $NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.fspath(sock_dir / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


async def next_message(sock: socket.socket) -> str:
    return (await asyncio.get_running_loop().sock_recv(sock, 4096)).decode()


@asynccontextmanager
async def activated(listening: socket.socket, env: dict[str, str]) -> AsyncIterator[Proc]:
    """`hero_codescalers serve` started as systemd starts it: the listening socket as fd 3,
    LISTEN_FDS=1 and LISTEN_PID set to the service's own pid (bash execs into it)."""
    fd = listening.fileno()
    script = f'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@" 3<&{fd} {fd}<&-'
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        "bash",
        sys.executable,
        "-m",
        "hero_codescalers",
        "serve",
        pass_fds=(fd,),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        yield Proc(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_socket_activation_and_notify_end_to_end(
    sock_dir: Path, simulator: Simulator, notify_socket: socket.socket
) -> None:
    """Activated, the service serves on the inherited socket, leaves its file (mode, inode)
    as it found it, says READY=1 then STOPPING=1, and exits 0 on SIGTERM."""
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    listening = bound_socket(path, 0o600)  # not the service's own 0660: it must not chmod
    inode = path.stat().st_ino
    env = service_env(sock_dir, simulator, NOTIFY_SOCKET=os.fspath(sock_dir / "notify"))
    add_job(simulator.store)
    try:
        async with activated(listening, env) as svc:
            assert await next_message(notify_socket) == "READY=1"
            await svc.wait_for("service_started")
            assert (await Caller(path).call("jobs.cleanup", {}))["jobs_deleted"] == 1
            svc.process.send_signal(signal.SIGTERM)
            assert await next_message(notify_socket) == "STOPPING=1"
            assert await svc.stop_waited() == 0
    finally:
        listening.close()
    assert path.stat().st_ino == inode, "the socket file is systemd's: never replaced"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any(line["event"] == "socket_activated" for line in svc.lines)


async def test_without_activation_the_service_binds_its_own(
    sock_dir: Path, notify_socket: socket.socket
) -> None:
    """Variables naming another process are ignored: the service binds its own socket."""
    env = command_env(
        sock_dir, LISTEN_PID="1", LISTEN_FDS="1", NOTIFY_SOCKET=os.fspath(sock_dir / "notify")
    )
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hero_codescalers",
        "serve",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    svc = Proc(process)
    try:
        assert await next_message(notify_socket) == "READY=1"
        await svc.wait_for("service_started")
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert await svc.stop() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert not path.exists()
    assert not any(line["event"] == "socket_activated" for line in svc.lines)


async def test_an_inherited_socket_that_does_not_listen_is_a_configuration_error(
    sock_dir: Path,
) -> None:
    """fd 3 a Unix stream socket that was never listen()ed on: exit 2, one line naming
    LISTEN_FDS and what the .socket unit should say."""
    unlistened = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        async with activated(unlistened, command_env(sock_dir)) as svc:
            _, err = await svc.process.communicate()
    finally:
        unlistened.close()
    assert svc.process.returncode == 2
    assert err.decode().splitlines()[-1] == (
        "hero_codescalers: configuration error: LISTEN_FDS=1: file descriptor 3 is not "
        "a listening Unix stream socket; expected ListenStream=/path/of/the.sock and "
        "Accept=no in the .socket unit"
    )


def test_inherited_socket_reads_and_removes_the_variables() -> None:
    """Not for this pid: None; the variables are gone either way; several sockets: an error."""
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x", "OTHER": "y"}
    assert systemd.inherited_socket(env) is None
    assert env == {"OTHER": "y"}
    assert systemd.inherited_socket({}) is None
    with pytest.raises(ConfigError, match=r"^LISTEN_FDS=2: the service takes exactly one"):
        systemd.inherited_socket({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"})


def test_notify_without_a_manager_sends_nothing(tmp_path: Path) -> None:
    """No $NOTIFY_SOCKET, or nobody listening on it: False, and no exception."""
    assert systemd.notify("READY=1", {}) is False
    assert systemd.notify("READY=1", {"NOTIFY_SOCKET": os.fspath(tmp_path / "none")}) is False


def test_notify_reaches_an_abstract_socket() -> None:
    """An address starting with @ is in the abstract namespace."""
    name = f"hc-notify-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        assert systemd.notify("READY=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert manager.recv(64) == b"READY=1"


def test_the_units_have_what_an_install_needs() -> None:
    """Activation, notify, own user and groups, directories, limits, no restart loop on a
    configuration error, no PrivateUsers (it would break the admin check); the socket is
    where the environment file's HERO_SOCKET_DIR puts it, with mode 0660 and a group."""
    service = unit(SERVICE_UNIT)["Service"]
    sock = unit(SOCKET_UNIT)["Socket"]
    assert service["Type"] == ["notify"]
    for key in ("User", "Group", "SupplementaryGroups", "RuntimeDirectory", "StateDirectory"):
        assert service[key] != [""], key
    assert service["User"] != ["root"]
    assert int(service["LimitNOFILE"][0]) >= 4096
    assert service["RestartPreventExitStatus"] == ["2"]
    assert "PrivateUsers" not in service
    assert service["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert sock["SocketMode"] == ["0660"]
    assert sock["SocketGroup"] == service["SupplementaryGroups"]
    settings = Settings(socket_dir=environment()["HERO_SOCKET_DIR"])
    assert sock["ListenStream"] == [os.fspath(settings.socket)]
    # The state database lives in the unit's StateDirectory=, which systemd creates for
    # the service's user: the variable points there.
    [state_dir] = service["StateDirectory"]
    assert f"HERO_CODESCALERS_STATE_DIR=/var/lib/{state_dir}" in service["Environment"]


def unit_environment(sock_dir: Path, simulator: Simulator, **extra: str) -> dict[str, str]:
    """The service's environment as the unit gives it (its env file and Environment=), with
    the socket directory moved to the test's."""
    env = environment()
    for assignment in unit(SERVICE_UNIT)["Service"].get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value
    env.pop("HERO_SOCKET_DIR")
    env.pop("HERO_CODESCALERS_STATE_DIR")  # the test's own (see service_env)
    base = service_env(sock_dir, simulator)
    base.pop("HERO_CODESCALERS_ADMIN_UIDS")  # the unit's admins only
    return {**base, **env, **extra}


@pytest.mark.parametrize("admin_gid", [False, True], ids=["as-shipped", "caller-gid-allowed"])
async def test_the_admin_check_with_the_units_settings(
    sock_dir: Path, simulator: Simulator, admin_gid: bool
) -> None:
    """With the unit's environment and socket (no user namespace), the kernel's peer uid
    decides: root is an admin, another uid only once its gid is allowed."""
    mode = int(unit(SOCKET_UNIT)["Socket"]["SocketMode"][0], 8)
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    listening = bound_socket(path, mode)
    extra = {"HERO_CODESCALERS_ADMIN_GIDS": str(os.getgid())} if admin_gid else {}
    add_job(simulator.store)
    try:
        async with activated(listening, unit_environment(sock_dir, simulator, **extra)) as svc:
            await svc.wait_for("service_started")
            answer = await Caller(path).answer("jobs.cleanup", {})
            assert await svc.stop() == 0
    finally:
        listening.close()
    if IS_ROOT or admin_gid:
        assert answer["result"]["jobs_deleted"] == 1
    else:
        assert answer["error"]["code"] == -32010
        assert answer["error"]["data"]["uid"] == os.getuid()


def units_for_this_machine(tmp_path: Path) -> list[Path]:
    """Copies of the units whose ExecStart= runs this test's own installed command."""
    command = Path(sys.executable).parent / "hero_codescalers"
    assert command.exists(), command
    paths = []
    for source in (SOCKET_UNIT, SERVICE_UNIT):
        text = re.sub(
            r"^ExecStart=\S+", f"ExecStart={command}", source.read_text(), flags=re.MULTILINE
        )
        paths.append(tmp_path / source.name)
        paths[-1].write_text(text)
    return paths


@needs_analyze
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts both units (ExecStart pointed at this install)."""
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, units_for_this_machine(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "hero_codescalers" not in result.stdout + result.stderr


@needs_analyze
def test_systemd_analyze_security_rates_the_service_ok(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=true` rates the service at most 2.0 (OK)."""
    assert SYSTEMD_ANALYZE is not None
    service = units_for_this_machine(tmp_path)[1]
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(service)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    print(match.group(0))  # the figure, in the test's output with -s
    assert float(match.group(1)) <= SECURITY_THRESHOLD, result.stdout
    assert ENV_FILE.exists()
