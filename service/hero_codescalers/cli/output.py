"""What the CLI prints and the status it exits with.

Exit status: 0 success; 1 the service answered an error; 2 a usage or
configuration error (one line naming the flag or variable, the value and what
would be valid); 3 the service could not be reached; 4 the service answered,
but degraded (`health`: hero_proc does not answer) or partial (`jobs-cleanup`:
the run stopped short, `complete: false`).

Results go to stdout as JSON, problems to stderr in one line each.
"""

from __future__ import annotations

import json
import sys
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from hero_codescalers_sdk import Client, RpcError, TransportError
from pydantic import BaseModel

from ..config_errors import ConfigError

EXIT_ANSWERED_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_DEGRADED = 4


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


def config_exit(problems: Iterable[ConfigError]) -> typing.NoReturn:
    """Print each configuration mistake in one line and exit 2."""
    for problem in problems:
        click.echo(f"hero_codescalers: configuration error: {problem}", err=True)
    sys.exit(EXIT_USAGE)


def call_and_print(
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
