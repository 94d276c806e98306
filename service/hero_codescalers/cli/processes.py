"""The commands that run processes: `serve`, `simulator`, and `dev` (both together).

`serve` reads the settings once (environment and flags), checks them, and runs
the service until SIGINT or SIGTERM; `simulator` runs a seeded hero_proc
simulator; `dev` starts both as child processes and stops them, the service
first. The service's own modules are imported only when a command runs, so the
client commands start without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import click
import structlog
from pydantic import ValidationError

from .. import logs
from ..config_errors import ConfigError, check, describe, setting_name, unknown_variables
from ..settings import Settings
from .options import seed_option
from .output import EXIT_USAGE, config_exit

log = structlog.get_logger(__name__)


def _settings(**overrides: Any) -> tuple[Settings, set[str]]:
    """The settings from the environment and the flags given; and which came from flags."""
    given = {k: v for k, v in overrides.items() if v not in (None, ())}
    try:
        return Settings(**given), set(given)
    except ValidationError as exc:
        config_exit(describe(exc, given))


@click.command()
@click.option(
    "--socket",
    type=click.Path(path_type=Path),
    help="Socket to listen on [env HERO_CODESCALERS_SOCKET].",
)
@click.option(
    "--hero-proc-socket",
    type=click.Path(path_type=Path),
    help="hero_proc's socket [env HERO_CODESCALERS_HERO_PROC_SOCKET].",
)
@click.option(
    "--admin-uid",
    "admin_uids",
    type=int,
    multiple=True,
    help="A uid allowed admin methods (repeatable).",
)
@click.option(
    "--admin-gid",
    "admin_gids",
    type=int,
    multiple=True,
    help="A gid allowed admin methods (repeatable).",
)
@click.option("--socket-mode", help="Mode of the socket file, octal [default 0660].")
@click.option("--socket-group", help="Group (name or gid) of the socket file.")
@click.option(
    "--token-file",
    # checked at start (see config_errors), in one line naming the problem
    type=click.Path(path_type=Path, readable=False),
    help="File holding the bearer token that makes relayed callers admins.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]))
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Directory of the state database [env HERO_CODESCALERS_STATE_DIR; "
    "default ~/hero/var/hero_codescalers].",
)
@click.option(
    "--policies",
    type=click.Path(path_type=Path),
    help="Retention policies file (TOML) [env HERO_CODESCALERS_POLICIES; default none: "
    "no policy runs]. SIGHUP reads it again.",
)
def serve(**options: Any) -> None:
    """Run the service on its Unix socket until SIGINT or SIGTERM.

    Under systemd it takes the socket of its .socket unit (socket activation)
    and reports READY=1 and STOPPING=1 (Type=notify). A state database that
    cannot be opened, is damaged or has a newer schema stops the start with
    one line (exit 2); so does a policies file with a mistake. SIGHUP
    (`systemctl reload`) reads the policies file and the token file again.
    """
    from ..retention import PolicyFileError  # noqa: PLC0415 -- keeps client commands light
    from ..state import StateUnusable  # noqa: PLC0415
    from ..unixsock import SocketInUse  # noqa: PLC0415

    settings, from_flags = _settings(**options)
    try:
        check(settings, from_flags)
    except ConfigError as exc:
        config_exit([exc])
    logs.configure(settings.log_level, settings.log_format)
    for name, close in unknown_variables(os.environ, Settings.model_fields):
        log.warning(
            "unknown_variable",
            variable=name,
            closest=close,
            hint=f"did you mean {close}?" if close else "no setting has a similar name",
        )
    try:
        asyncio.run(_serve(settings, from_flags))
    except ConfigError as exc:
        config_exit([exc])
    except (StateUnusable, PolicyFileError) as exc:
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except SocketInUse as exc:
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(1)


async def _serve(settings: Settings, from_flags: Collection[str]) -> None:
    """The service, and once it listens, one warning line if hero_proc does not answer."""
    from ..transport import serve as run  # noqa: PLC0415
    from ..unixsock import UnsafeSocketDir  # noqa: PLC0415

    ready = asyncio.Event()
    service = asyncio.create_task(run(settings, ready=ready))
    started = asyncio.create_task(ready.wait())
    await asyncio.wait({service, started}, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        started.cancel()
        try:
            await service
        except UnsafeSocketDir as exc:  # a directory where someone else could swap the socket
            raise ConfigError(
                setting_name("socket", from_flags),
                settings.socket,
                str(exc),
                "a directory owned by this user or root and writable by its owner only",
            ) from None
        except OSError as exc:  # binding the socket: its directory, mode or group
            where = f" ({exc.filename})" if exc.filename else ""
            raise ConfigError(
                setting_name("socket", from_flags),
                settings.socket,
                f"{exc.strerror or exc}{where}",
                "a socket path this user may create, in a directory it may write "
                "(or set HERO_SOCKET_DIR), and a --socket-group it belongs to",
            ) from None
        return
    probe = asyncio.create_task(_probe_hero_proc(settings))
    await asyncio.wait({service, probe}, return_when=asyncio.FIRST_COMPLETED)
    probe.cancel()
    await service


async def _probe_hero_proc(settings: Settings) -> None:
    from ..engine import HEALTH_TIMEOUT  # noqa: PLC0415
    from ..errors import HeroProcError  # noqa: PLC0415
    from ..heroproc import HeroProcClient  # noqa: PLC0415

    timeout = min(HEALTH_TIMEOUT, settings.hero_proc_timeout)
    try:
        async with HeroProcClient(settings.hero_proc_socket, timeout=timeout, attempts=1) as hp:
            await hp.stats()
    except HeroProcError as exc:
        log.warning(
            "hero_proc_unreachable",
            socket=str(settings.hero_proc_socket),
            reason=str(exc),
            effect="serving degraded: health says so and calls answer -32020 until it answers",
        )


@click.command()
@click.option(
    "--socket",
    type=click.Path(path_type=Path),
    help="Socket to listen on [default: $HERO_SOCKET_DIR/hero_proc/rpc.sock].",
)
@seed_option(0)
@click.option(
    "--rng-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the population's randomness.",
)
def simulator(socket: Path | None, seed_jobs: int, rng_seed: int) -> None:
    """Run a hero_proc simulator (the contract's methods, seeding and fault injection)."""
    from ..simulator.main import run  # noqa: PLC0415
    from ..unixsock import SocketInUse  # noqa: PLC0415

    logs.configure("info", "auto")
    path = socket or _settings()[0].hero_proc_socket
    try:
        asyncio.run(run(path, seed_jobs, rng_seed))
    except SocketInUse as exc:
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(1)


@click.command()
@seed_option(300)
def dev(seed_jobs: int) -> None:
    """Run a seeded hero_proc simulator and the service in front of it until Ctrl-C.

    Both use the sockets under $HERO_SOCKET_DIR (default ~/hero/var/sockets), so
    the CLI, curl and the SDK find them with the same variable. You (this uid)
    are an admin of this service. The two logs go to this terminal. Unless
    HERO_CODESCALERS_POLICIES names a file, the service has one retention policy,
    `user-week`, disabled: `policies run user-week --dry-run` tries it.
    """
    from ..examples import POLICIES  # noqa: PLC0415 -- keeps other commands light

    settings, _ = _settings()
    me = [sys.executable, "-m", "hero_codescalers"]
    scratch = Path(tempfile.mkdtemp(prefix="hero_codescalers-dev-"))
    if settings.policies is None:
        (scratch / "policies.toml").write_text(POLICIES)
        policies_flag = ["--policies", os.fspath(scratch / "policies.toml")]
    else:
        policies_flag = []
    env = {**os.environ, "HERO_SOCKET_DIR": os.fspath(settings.socket_dir)}
    click.echo(f"export HERO_SOCKET_DIR={settings.socket_dir}", err=True)
    simulator_cmd = [*me, "simulator", "--seed", str(seed_jobs)]
    children = [subprocess.Popen(simulator_cmd, env=env)]  # noqa: S603 -- this program itself
    try:
        if _wait_until_live(settings.hero_proc_socket, children[0]):
            serve_cmd = [*me, "serve", "--admin-uid", str(os.getuid()), *policies_flag]
            children.append(subprocess.Popen(serve_cmd, env=env))  # noqa: S603 -- as above
        code = _run_until_stopped(children)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(code)


def _wait_until_live(path: Path, child: subprocess.Popen[bytes], limit_s: float = 30) -> bool:
    """Poll `path` until something listens there (False when `child` ends first)."""
    from ..unixsock import is_live  # noqa: PLC0415

    deadline = time.monotonic() + limit_s
    while child.poll() is None and time.monotonic() < deadline:
        if path.is_socket() and is_live(path):
            return True
        time.sleep(0.05)
    return False


def _run_until_stopped(children: Sequence[subprocess.Popen[bytes]]) -> int:
    """Wait for SIGINT or SIGTERM or a child's end; then stop the children still running,
    the service first, each with SIGTERM. 0 when every child exited 0, else the first
    failure."""
    with _StopSignals() as stop:
        while all(child.poll() is None for child in children) and not stop.requested:
            time.sleep(0.1)
        _terminate_last_first(children)
    return _first_failure(child.returncode for child in children)


class _StopSignals:
    """Inside `with`, SIGINT and SIGTERM only set `requested`; the handlers they had
    before are restored on leaving. (Ctrl-C in a terminal reaches the children as well.)"""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[signal.Signals, Any] = {}

    def _request(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> _StopSignals:
        self._previous = {sig: signal.signal(sig, self._request) for sig in self.SIGNALS}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _terminate_last_first(children: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each child still running and wait for its end, the last started first
    (the service before its hero_proc)."""
    for child in reversed(children):
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
            child.wait()


def _first_failure(codes: Iterable[int | None]) -> int:
    """The first non-zero exit status, or 0 when there is none."""
    return next((code for code in codes if code), 0)


COMMANDS = (serve, simulator, dev)
