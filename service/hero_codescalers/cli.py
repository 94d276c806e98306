"""`hero_codescalers`: run the service or the simulator, and call the service.

Exit status: 0 success; 1 the service answered an error; 2 a usage or
configuration error (one line naming the flag or variable, the value and what
would be valid); 3 the service could not be reached; 4 the service answered,
but degraded (`health`: hero_proc does not answer) or partial (`jobs-cleanup`:
the run stopped short, `complete: false`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import typing
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import click
import structlog
from hero_codescalers_sdk import Client, RpcError, TransportError
from pydantic import BaseModel, ValidationError

from . import __version__, logs
from .config_errors import ConfigError, check, describe, setting_name, unknown_variables
from .models import JobStatus
from .settings import Settings

log = structlog.get_logger(__name__)

EXIT_ANSWERED_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_DEGRADED = 4

_DURATION = re.compile(r"^(\d{1,15})(ms|s|m|h|d)?$")
_UNIT_MS = {None: 1, "ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """`N` or `Nms` milliseconds, `Ns` seconds, `Nm` minutes, `Nh` hours, `Nd` days."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 12h or 7d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def render_json(value: Any, depth: int = 0) -> str:
    """Indented JSON; lists of plain values stay on one line (ids do not take a screen each)."""
    pad = "  " * depth
    if isinstance(value, dict) and value:
        items = [f"{pad}  {json.dumps(k)}: {render_json(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        items = [f"{pad}  {render_json(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


class Duration(click.ParamType[int]):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration_ms(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def config_exit(problems: Iterable[ConfigError]) -> typing.NoReturn:
    """Print each configuration mistake in one line and exit 2."""
    for problem in problems:
        click.echo(f"hero_codescalers: configuration error: {problem}", err=True)
    sys.exit(EXIT_USAGE)


def _settings(**overrides: Any) -> tuple[Settings, set[str]]:
    """The settings from the environment and the flags given; and which came from flags."""
    given = {k: v for k, v in overrides.items() if v not in (None, ())}
    try:
        return Settings(**given), set(given)
    except ValidationError as exc:
        config_exit(describe(exc, given))


def _print(
    socket: Path | None, call: Callable[[Client], Any], status: Callable[[Any], int] | None = None
) -> None:
    """Run `call` with an SDK client of the service and print its result as JSON.

    The socket defaults as the SDK's does: $HERO_CODESCALERS_SOCKET, else
    $HERO_SOCKET_DIR/hero_codescalers/rpc.sock. Exits 1 on an error answer and
    3 when the service cannot be reached, with one line on stderr; else with
    what `status` says of the result (0 when not given).
    """
    try:
        with Client(socket) as client:
            result = call(client)
    except RpcError as exc:
        detail = f": {exc.data}" if exc.data is not None else ""
        click.echo(f"hero_codescalers: {exc.message} ({exc.code}){detail}", err=True)
        sys.exit(EXIT_ANSWERED_ERROR)
    except TransportError as exc:
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    click.echo(
        render_json(result.model_dump(mode="json") if isinstance(result, BaseModel) else result)
    )
    if status is not None:
        sys.exit(status(result))


socket_option = click.option(
    "--socket",
    type=click.Path(path_type=Path),
    help="The service's socket [default: $HERO_CODESCALERS_SOCKET or "
    "$HERO_SOCKET_DIR/hero_codescalers/rpc.sock]",
)


def filter_options(fn: Any) -> Any:
    for option in reversed(
        (
            click.option("--kind", help="Only jobs of this kind (exact)."),
            click.option("--target", help="Only jobs with this target (exact)."),
            click.option("--actor", help="Only jobs of this actor (exact)."),
            click.option(
                "--older-than",
                type=Duration(),
                help="Only jobs created at least this long ago: N or Nms, Ns, Nm, Nh, Nd.",
            ),
        )
    ):
        fn = option(fn)
    return fn


class _Commands(click.Group):
    """The command group; a usage error is told in one line (click prints three)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "hero_codescalers"
            click.echo(f"{where}: {exc.format_message()} (see {where} --help)", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="hero_codescalers")
def main() -> None:
    """Tag what hero_codescalers enqueues in hero_proc, and clean it up.

    \b
    Exit status: 0 success; 1 the service answered an error; 2 a usage or
    configuration error; 3 the service could not be reached; 4 degraded
    (health) or partial (jobs-cleanup).
    """


@main.command()
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
def serve(**options: Any) -> None:
    """Run the service on its Unix socket until SIGINT or SIGTERM.

    Under systemd it takes the socket of its .socket unit (socket activation)
    and reports READY=1 and STOPPING=1 (Type=notify).
    """
    from .unixsock import SocketInUse  # noqa: PLC0415 -- keeps client commands light

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
    except SocketInUse as exc:
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(1)


async def _serve(settings: Settings, from_flags: Collection[str]) -> None:
    """The service, and once it listens, one warning line if hero_proc does not answer."""
    from .transport import serve as run  # noqa: PLC0415
    from .unixsock import UnsafeSocketDir  # noqa: PLC0415

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
    from .engine import HEALTH_TIMEOUT  # noqa: PLC0415
    from .errors import HeroProcError  # noqa: PLC0415
    from .heroproc import HeroProcClient  # noqa: PLC0415

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


def seed_option(default: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--seed N`: the jobs a simulator starts with (the same for the same seed)."""
    return click.option(
        "--seed",
        "seed_jobs",
        type=click.IntRange(min=0),
        default=default,
        show_default=True,
        help="Jobs the simulator starts with: 80% codescaler, 10% unrelated, 10% look-alike.",
    )


@main.command()
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
    from .simulator.main import run  # noqa: PLC0415
    from .unixsock import SocketInUse  # noqa: PLC0415

    logs.configure("info", "auto")
    path = socket or _settings()[0].hero_proc_socket
    try:
        asyncio.run(run(path, seed_jobs, rng_seed))
    except SocketInUse as exc:
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(1)


@main.command()
@seed_option(300)
def dev(seed_jobs: int) -> None:
    """Run a seeded hero_proc simulator and the service in front of it until Ctrl-C.

    Both use the sockets under $HERO_SOCKET_DIR (default ~/hero/var/sockets), so
    the CLI, curl and the SDK find them with the same variable. You (this uid)
    are an admin of this service. The two logs go to this terminal.
    """
    settings, _ = _settings()
    me = [sys.executable, "-m", "hero_codescalers"]
    env = {**os.environ, "HERO_SOCKET_DIR": os.fspath(settings.socket_dir)}
    click.echo(f"export HERO_SOCKET_DIR={settings.socket_dir}", err=True)
    simulator_cmd = [*me, "simulator", "--seed", str(seed_jobs)]
    children = [subprocess.Popen(simulator_cmd, env=env)]  # noqa: S603 -- this program itself
    try:
        if _wait_until_live(settings.hero_proc_socket, children[0]):
            serve_cmd = [*me, "serve", "--admin-uid", str(os.getuid())]
            children.append(subprocess.Popen(serve_cmd, env=env))  # noqa: S603 -- as above
        code = _run_until_stopped(children)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    sys.exit(code)


def _wait_until_live(path: Path, child: subprocess.Popen[bytes], limit_s: float = 30) -> bool:
    """Poll `path` until something listens there (False when `child` ends first)."""
    from .unixsock import is_live  # noqa: PLC0415

    deadline = time.monotonic() + limit_s
    while child.poll() is None and time.monotonic() < deadline:
        if path.is_socket() and is_live(path):
            return True
        time.sleep(0.05)
    return False


def _run_until_stopped(children: Collection[subprocess.Popen[bytes]]) -> int:
    """Wait for SIGINT or SIGTERM or a child's end; then stop the children still running,
    the service first, each with SIGTERM. 0 when every child exited 0, else the first
    failure."""
    stop = {"requested": False}

    def forward(signum: int, frame: Any) -> None:
        stop["requested"] = True  # (Ctrl-C in a terminal reaches the children as well)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while all(child.poll() is None for child in children) and not stop["requested"]:
            time.sleep(0.1)
        for child in reversed(list(children)):  # the service first, then its hero_proc
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
                child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [child.returncode for child in children]
    return next((c for c in codes if c), 0)


@main.command("jobs-cleanup")
@filter_options
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; change nothing.")
@socket_option
def jobs_cleanup(
    kind: str | None,
    target: str | None,
    actor: str | None,
    older_than: int | None,
    dry_run: bool,
    socket: Path | None,
) -> None:
    """Delete codescaler jobs (and their actions) matching every filter given (admin).

    Exits 4 when the run stopped short (`complete: false`; the reason is in `errors`).
    """
    _print(
        socket,
        lambda c: c.jobs_cleanup(
            kind=kind, target=target, actor=actor, older_than_ms=older_than, dry_run=dry_run
        ),
        lambda summary: 0 if summary.complete else EXIT_DEGRADED,
    )


@main.command("jobs-list")
@filter_options
@click.option("--status", type=click.Choice(typing.get_args(JobStatus)))
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", help="next_cursor from the previous page.")
@socket_option
def jobs_list(
    kind: str | None,
    target: str | None,
    actor: str | None,
    older_than: int | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    socket: Path | None,
) -> None:
    """List codescaler jobs matching every filter given, oldest first."""
    _print(
        socket,
        lambda c: c.jobs_list(
            kind=kind,
            target=target,
            actor=actor,
            older_than_ms=older_than,
            status=status,  # type: ignore[arg-type] # click.Choice checked it
            limit=limit,
            cursor=cursor,
        ),
    )


@main.command("jobs-submit")
@click.option("--kind", required=True)
@click.option("--actor", required=True)
@click.option("--target")
@click.option("--script", required=True, help="What the job runs.")
@click.option("--input", "input_", help="The feature's input, as JSON.")
@socket_option
def jobs_submit(
    kind: str, actor: str, target: str | None, script: str, input_: str | None, socket: Path | None
) -> None:
    """Enqueue a tagged job (the action is reused for an identical script and input)."""
    try:
        value = None if input_ is None else json.loads(input_)
    except ValueError:
        raise click.BadParameter("not valid JSON", param_hint="--input") from None
    _print(
        socket,
        lambda c: c.jobs_submit(kind=kind, actor=actor, target=target, script=script, input=value),
    )


@main.command()
@socket_option
def stats(socket: Path | None) -> None:
    """Codescaler job and action counts, and hero_proc's totals."""
    _print(socket, lambda c: c.stats())


@main.command()
@socket_option
def health(socket: Path | None) -> None:
    """The service's version, uptime and hero_proc's reachability.

    Exits 4 when the service answers but is degraded (hero_proc does not answer).
    """
    _print(
        socket,
        lambda c: c.system_health(),
        lambda health: 0 if health.status == "ok" else EXIT_DEGRADED,
    )


@main.command("cleanup-history")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@socket_option
def cleanup_history(limit: int, socket: Path | None) -> None:
    """The last cleanup runs: who, when, what and the result (admin)."""
    _print(socket, lambda c: c.jobs_cleanup_history(limit=limit))
