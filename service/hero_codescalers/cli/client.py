"""The commands that call the service: the jobs, their cleanup, stats and health.

Each sends one call through the SDK and prints the answer as JSON
(`output.call_and_print`); none imports the service itself.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import click

from ..models import KEEP_LAST_MAX, MAX_JOBS_MAX, REASON_MAX_LENGTH, Outcome
from .options import filter_options, socket_option
from .output import EXIT_DEGRADED, call_and_print


@click.command("jobs-cleanup")
@filter_options
@click.option(
    "--keep-last",
    type=click.IntRange(1, KEEP_LAST_MAX),
    metavar="N",
    help="Of the jobs the other filters select, keep the newest N of each (kind, actor, "
    "target) and delete the rest.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would be deleted, change nothing; the answer's plan_id applies exactly "
    "that (--plan).",
)
@click.option(
    "--reason",
    help=f"Why (one line, at most {REASON_MAX_LENGTH} characters): logged and kept in the history.",
)
@click.option(
    "--plan",
    "plan_id",
    metavar="ID",
    help="Apply the plan of a dry run (its plan_id): delete only the jobs it listed that "
    "still exist and still match its filters. Give no filter with it.",
)
@click.option(
    "--max-jobs",
    type=click.IntRange(1, MAX_JOBS_MAX),
    metavar="N",
    help="Stop after N matched jobs; has_more says whether more remain.",
)
@socket_option
def jobs_cleanup(
    kind: str | None,
    target: str | None,
    actor: str | None,
    older_than: int | None,
    statuses: tuple[str, ...],
    finished_older_than: int | None,
    include_kept: bool,
    keep_last: int | None,
    dry_run: bool,
    reason: str | None,
    plan_id: str | None,
    max_jobs: int | None,
    socket: Path | None,
) -> None:
    """Delete codescaler jobs (and their actions) matching every filter given (admin).

    Preview, then apply exactly that: `--dry-run` answers a plan_id, `--plan ID` deletes
    the jobs of that plan that still match (within the hour). Exits 4 when the run
    stopped short (`complete: false`; the reason is in `errors`).
    """
    call_and_print(
        socket,
        lambda c: c.jobs_cleanup(
            kind=kind,
            target=target,
            actor=actor,
            older_than_ms=older_than,
            dry_run=dry_run,
            reason=reason,
            statuses=list(statuses) or None,  # type: ignore[arg-type] # click.Choice checked it
            finished_older_than_ms=finished_older_than,
            keep_last=keep_last,
            include_kept=include_kept,
            plan_id=plan_id,
            max_jobs=max_jobs,
        ),
        lambda summary: 0 if summary.complete else EXIT_DEGRADED,
    )


@click.command("jobs-list")
@filter_options
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", help="next_cursor from the previous page.")
@socket_option
def jobs_list(
    kind: str | None,
    target: str | None,
    actor: str | None,
    older_than: int | None,
    statuses: tuple[str, ...],
    finished_older_than: int | None,
    include_kept: bool,
    limit: int,
    cursor: str | None,
    socket: Path | None,
) -> None:
    """List codescaler jobs matching every filter given, oldest first."""
    call_and_print(
        socket,
        lambda c: c.jobs_list(
            kind=kind,
            target=target,
            actor=actor,
            older_than_ms=older_than,
            limit=limit,
            cursor=cursor,
            statuses=list(statuses) or None,  # type: ignore[arg-type] # click.Choice checked it
            finished_older_than_ms=finished_older_than,
            include_kept=include_kept,
        ),
    )


@click.command("jobs-submit")
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
    call_and_print(
        socket,
        lambda c: c.jobs_submit(kind=kind, actor=actor, target=target, script=script, input=value),
    )


@click.command()
@socket_option
def stats(socket: Path | None) -> None:
    """Codescaler job and action counts, and hero_proc's totals."""
    call_and_print(socket, lambda c: c.stats())


@click.command()
@socket_option
def health(socket: Path | None) -> None:
    """The service's version, uptime and hero_proc's reachability.

    Exits 4 when the service answers but is degraded (hero_proc does not answer).
    """
    call_and_print(
        socket,
        lambda c: c.system_health(),
        lambda health: 0 if health.status == "ok" else EXIT_DEGRADED,
    )


@click.command("cleanup-history")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--cursor", help="next_cursor from the previous page.")
@click.option(
    "--outcome", type=click.Choice(typing.get_args(Outcome)), help="Only runs that ended so."
)
@click.option("--policy", help="Only the runs of this policy; 'manual' for callers' runs.")
@click.option(
    "--dry-run/--no-dry-run",
    "dry_run",
    default=None,
    help="Only dry runs, or only real ones [default: both].",
)
@socket_option
def cleanup_history(
    limit: int,
    cursor: str | None,
    outcome: str | None,
    policy: str | None,
    dry_run: bool | None,
    socket: Path | None,
) -> None:
    """The recorded cleanup runs, newest first: who, when, why, what, the result (admin)."""
    call_and_print(
        socket,
        lambda c: c.jobs_cleanup_history(
            limit=limit,
            cursor=cursor,
            outcome=outcome,  # type: ignore[arg-type] # click.Choice checked it
            policy=policy,
            dry_run=dry_run,
        ),
    )


@click.group("policies", invoke_without_command=True)
@socket_option
@click.pass_context
def policies(ctx: click.Context, socket: Path | None) -> None:
    """The retention policies: what each selects, when it fires next, its last run (admin).

    The policies come from the service's policies file (HERO_CODESCALERS_POLICIES).
    """
    if ctx.invoked_subcommand is None:
        call_and_print(socket, lambda c: c.retention_list())


@policies.command("run")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Show what it would delete; change nothing.")
@click.option(
    "--reason",
    help=f"Why (one line, at most {REASON_MAX_LENGTH} characters): logged and kept in the history.",
)
@socket_option
def policies_run(name: str, dry_run: bool, reason: str | None, socket: Path | None) -> None:
    """Run the policy NAME now, enabled or not; its schedule does not change (admin).

    Exits 4 when the run stopped short (`complete: false`).
    """
    call_and_print(
        socket,
        lambda c: c.retention_run(name=name, dry_run=dry_run, reason=reason),
        lambda summary: 0 if summary.complete else EXIT_DEGRADED,
    )


COMMANDS = (jobs_cleanup, jobs_list, jobs_submit, stats, health, cleanup_history, policies)
