"""What the CLI prints and the status it exits with.

Exit status:

- 0: success; for a cleanup, everything it selected was deleted or was already gone
  (a run that stopped at its `--max-jobs` bound, `has_more: true`, still exits 0: the
  bound was asked for);
- 1: the service answered an error (or a confirmation was declined: nothing changed);
- 2: a usage or configuration error (one line naming the flag or variable, the value
  and what would be valid);
- 3: the service could not be reached;
- 4: the service answered, but degraded (`health`: hero_proc does not answer) or
  partial (`jobs-cleanup`, `policies run`: the run stopped short, skipped malformed
  jobs, or a job or action failed for another reason than being in use by other jobs);
- 130: cancelled by Ctrl-C.

Output: `--output table` prints for people (tables, a compact cleanup summary), the
default when stdout is a terminal; `--output json` prints the answer as JSON, the
default otherwise, so that a pipe or a script gets what it always got. Problems go to
stderr in one line each (an error's data as JSON).
"""

from __future__ import annotations

import json
import sys
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import click
from hero_codescalers_sdk import Client, RpcError, TransportError
from pydantic import BaseModel

from ..config_errors import ConfigError

EXIT_OK = 0
EXIT_ANSWERED_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_PARTIAL = 4
EXIT_DEGRADED = EXIT_PARTIAL
EXIT_CANCELLED = 130

Output = Literal["table", "json"]

output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(typing.get_args(Output)),
    help="table: for people; json: the answer as JSON, as a script reads it "
    "[default: table on a terminal, json otherwise]",
)


def for_people(output: str | None) -> bool:
    """Whether to print for people: `--output table`, or stdout is a terminal."""
    if output is None:
        return sys.stdout.isatty()
    return output == "table"


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


def error_exit(exc: RpcError | TransportError) -> typing.NoReturn:
    """One line on stderr for an error answer (exit 1; its data as JSON) or an
    unreachable service (exit 3)."""
    if isinstance(exc, TransportError):
        click.echo(f"hero_codescalers: {exc}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    detail = ""
    if exc.data is not None:
        detail = ": " + json.dumps(exc.data, ensure_ascii=False, default=str)
    click.echo(f"hero_codescalers: {exc.message} ({exc.code}){detail}", err=True)
    sys.exit(EXIT_ANSWERED_ERROR)


def ask(socket: Path | None, call: Callable[[Client], Any]) -> Any:
    """Run `call` with an SDK client of the service; its result, or exit as `error_exit`.

    The socket defaults as the SDK's does: $HERO_CODESCALERS_SOCKET, else
    $HERO_SOCKET_DIR/hero_codescalers/rpc.sock. Each method waits as long as the SDK's
    default for it says (a few seconds for health, a minute for reads, no limit for a
    foreground cleanup, which the service's own deadline ends).
    """
    try:
        with Client(socket) as client:
            return call(client)
    except (RpcError, TransportError) as exc:
        error_exit(exc)


def as_json(result: Any) -> Any:
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else result


Table = Literal[
    "jobs_table",
    "stats_table",
    "history_table",
    "policies_table",
    "cleanup_summary",
    "status_table",
    "deleted_table",
]


def show(result: Any, output: str | None, table: Table | None) -> None:
    """Print `result` with `table` (a function of `tables`) when printing for people
    (see `for_people`), else as JSON."""
    if table is not None and for_people(output):
        from . import tables  # noqa: PLC0415 # rich loads only to print for people

        getattr(tables, table)(result)
    else:
        click.echo(render_json(as_json(result)))


def call_and_print(
    socket: Path | None,
    call: Callable[[Client], Any],
    status: Callable[[Any], int] | None = None,
    *,
    output: str | None = "json",
    table: Table | None = None,
) -> None:
    """Run `call` (as `ask`), print its result (as `show`), and exit with what `status`
    says of the result (0 when not given)."""
    result = ask(socket, call)
    show(result, output, table)
    if status is not None:
        sys.exit(status(result))


def cleanup_exit_status(summary: Any) -> int:
    """4 when the run was partial (see `partial`), else 0."""
    return EXIT_PARTIAL if partial(summary) else EXIT_OK


def partial(summary: Any) -> bool:
    """Whether a cleanup summary says the run did not do all it selected: it stopped
    short (`complete: false`), skipped malformed jobs, or failed to delete a job or an
    action for another reason than the action being in use by other jobs (a job found
    already gone is not a failure; `has_more` is not either)."""
    return (
        not summary.complete
        or bool(summary.jobs_failed)
        or bool(summary.actions_failed)
        or bool(summary.jobs_skipped_malformed)
        or bool(summary.jobs_not_attempted)
        or bool(summary.actions_not_attempted)
    )
