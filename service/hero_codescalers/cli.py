"""`hero_codescalers`: run the service or the simulator, and call the service.

Exit status: 0 success, 1 the service answered an error, 2 usage error,
3 the service could not be reached.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from hero_codescalers_sdk import Client, RpcError, TransportError
from pydantic import BaseModel, ValidationError

from . import __version__, logs
from .models import JobStatus
from .settings import Settings

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


def _settings(**overrides: Any) -> Settings:
    given = {k: v for k, v in overrides.items() if v not in (None, ())}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise click.UsageError(f"invalid settings: {problems}") from None


def _print(socket: Path | None, call: Callable[[Client], Any]) -> None:
    """Run `call` with an SDK client of the service and print its result as JSON.

    The socket defaults as the SDK's does: $HERO_CODESCALERS_SOCKET, else
    $HERO_SOCKET_DIR/hero_codescalers/rpc.sock. Exits 1 on an error answer and
    3 when the service cannot be reached, with one line on stderr.
    """
    try:
        with Client(socket) as client:
            result = call(client)
    except RpcError as exc:
        detail = f": {exc.data}" if exc.data is not None else ""
        click.echo(f"hero_codescalers: {exc.message} ({exc.code}){detail}", err=True)
        sys.exit(1)
    except TransportError as exc:
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(3)
    click.echo(
        render_json(result.model_dump(mode="json") if isinstance(result, BaseModel) else result)
    )


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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="hero_codescalers")
def main() -> None:
    """Tag what hero_codescalers enqueues in hero_proc, and clean it up."""


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
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the bearer token that makes relayed callers admins.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]))
def serve(**options: Any) -> None:
    """Run the service on its Unix socket until SIGINT or SIGTERM."""
    from .transport import serve as run  # noqa: PLC0415 -- keeps client commands light
    from .unixsock import SocketInUse  # noqa: PLC0415

    settings = _settings(**options)
    logs.configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(run(settings))
    except SocketInUse as exc:
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.option(
    "--socket",
    type=click.Path(path_type=Path),
    help="Socket to listen on [default: $HERO_SOCKET_DIR/hero_proc/rpc.sock].",
)
@click.option(
    "--seed",
    "seed_jobs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed this many jobs: 80% codescaler, 10% unrelated, 10% look-alike tags.",
)
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
    path = socket or _settings().hero_proc_socket
    try:
        asyncio.run(run(path, seed_jobs, rng_seed))
    except SocketInUse as exc:
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(1)


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
    """Delete codescaler jobs (and their actions) matching every filter given (admin)."""
    _print(
        socket,
        lambda c: c.jobs_cleanup(
            kind=kind, target=target, actor=actor, older_than_ms=older_than, dry_run=dry_run
        ),
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
    """The service's version, uptime and hero_proc's reachability."""
    _print(socket, lambda c: c.system_health())


@main.command("cleanup-history")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@socket_option
def cleanup_history(limit: int, socket: Path | None) -> None:
    """The last cleanup runs: who, when, what and the result (admin)."""
    _print(socket, lambda c: c.jobs_cleanup_history(limit=limit))
