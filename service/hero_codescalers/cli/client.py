"""The commands that call the service: the jobs, their cleanup, stats and health.

Each sends one call through the SDK and prints the answer for people or as JSON
(`output.call_and_print`, `--output`); none imports the service itself.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

import click

from ..models import KEEP_LAST_MAX, MAX_JOB_ID, MAX_JOBS_MAX, REASON_MAX_LENGTH, Outcome
from .options import When, filter_options, socket_option
from .output import (
    EXIT_ANSWERED_ERROR,
    EXIT_CANCELLED,
    EXIT_DEGRADED,
    ask,
    call_and_print,
    cleanup_exit_status,
    for_people,
    output_option,
    show,
)


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
@click.option("--yes", "-y", is_flag=True, help="Do not ask before a cleanup without any filter.")
@output_option
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
    yes: bool,
    output: str | None,
    socket: Path | None,
) -> None:
    """Delete codescaler jobs (and their actions) matching every filter given (admin).

    Preview, then apply exactly that: `--dry-run` answers a plan_id, `--plan ID` deletes
    the jobs of that plan that still match (within the hour).

    On a terminal it runs in the background with a live progress bar on stderr (phase,
    counts, rate, time left), then prints a compact summary (counts, the first few ids,
    the run's id); Ctrl-C asks the service to cancel the run and prints what it did, a
    second Ctrl-C leaves the run to the service. Otherwise, or with --output json, it
    waits for the run and prints the whole summary as JSON. A real cleanup without any
    filter (nor plan) asks first when someone can answer (stdin and stderr on a
    terminal; --yes does not ask).

    Exits 0 when everything selected was deleted or already gone (also when --max-jobs
    left more: has_more), 4 when the run was partial (stopped short, malformed jobs
    skipped, a job or action failed for another reason than being in use; `errors`
    says which), 130 on Ctrl-C.
    """
    unfiltered = (
        not any(
            (kind, target, actor, older_than is not None, statuses, finished_older_than is not None)
        )
        and keep_last is None
        and plan_id is None
    )
    if unfiltered and not dry_run and not yes:
        confirm_everything(include_kept)
    params: dict[str, Any] = {
        "kind": kind,
        "target": target,
        "actor": actor,
        "older_than_ms": older_than,
        "dry_run": dry_run,
        "reason": reason,
        "statuses": list(statuses) or None,
        "finished_older_than_ms": finished_older_than,
        "keep_last": keep_last,
        "include_kept": include_kept,
        "plan_id": plan_id,
        "max_jobs": max_jobs,
    }
    if for_people(output) and sys.stderr.isatty():
        from .progress import follow_run  # noqa: PLC0415 # rich's progress, on a terminal only

        sys.exit(follow_run(socket, lambda c: c.jobs_cleanup_start(**params)))
    try:
        summary = ask(socket, lambda c: c.jobs_cleanup(**params))
    except KeyboardInterrupt:
        click.echo(
            "hero_codescalers: interrupted; the service takes the run to its end and records "
            "it (hero_codescalers cleanup-history)",
            err=True,
        )
        sys.exit(EXIT_CANCELLED)
    show(summary, output, "cleanup_summary")
    sys.exit(cleanup_exit_status(summary))


def confirm_everything(include_kept: bool) -> None:
    """Ask before a real cleanup without any filter, when someone can answer: stdin and
    stderr on a terminal. Anything but y or yes exits 1, nothing deleted."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return
    which = "every codescaler job" + ("" if include_kept else " (but those tagged codescaler_keep)")
    click.echo(f"No filter given: this deletes {which} and their actions.", err=True)
    click.echo("Delete them all? [y/N] ", err=True, nl=False)
    answer = sys.stdin.readline().strip().lower()
    if answer not in {"y", "yes"}:
        click.echo("Nothing deleted.", err=True)
        sys.exit(EXIT_ANSWERED_ERROR)


@click.command("jobs-list")
@filter_options
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", help="next_cursor from the previous page.")
@output_option
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
    output: str | None,
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
        output=output,
        table="jobs_table",
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
@output_option
@socket_option
def stats(output: str | None, socket: Path | None) -> None:
    """Codescaler job and action counts, and hero_proc's totals."""
    call_and_print(socket, lambda c: c.stats(), output=output, table="stats_table")


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
@output_option
@socket_option
def cleanup_history(
    limit: int,
    cursor: str | None,
    outcome: str | None,
    policy: str | None,
    dry_run: bool | None,
    output: str | None,
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
        output=output,
        table="history_table",
    )


@click.group("policies", invoke_without_command=True)
@output_option
@socket_option
@click.pass_context
def policies(ctx: click.Context, output: str | None, socket: Path | None) -> None:
    """The retention policies: what each selects, when it fires next, its last run (admin).

    The policies come from the service's policies file (HERO_CODESCALERS_POLICIES).
    """
    if ctx.invoked_subcommand is None:
        call_and_print(socket, lambda c: c.retention_list(), output=output, table="policies_table")


@policies.command("run")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Show what it would delete; change nothing.")
@click.option(
    "--reason",
    help=f"Why (one line, at most {REASON_MAX_LENGTH} characters): logged and kept in the history.",
)
@output_option
@socket_option
def policies_run(
    name: str, dry_run: bool, reason: str | None, output: str | None, socket: Path | None
) -> None:
    """Run the policy NAME now, enabled or not; its schedule does not change (admin).

    Prints as jobs-cleanup does, and exits as it does: 4 when the run was partial.
    """
    call_and_print(
        socket,
        lambda c: c.retention_run(name=name, dry_run=dry_run, reason=reason),
        cleanup_exit_status,
        output=output,
        table="cleanup_summary",
    )


@click.command("cleanup-status")
@click.argument("run_id", metavar="RUN_ID")
@click.option(
    "--follow",
    is_flag=True,
    help="On a terminal: a live progress bar until the run is done (Ctrl-C leaves it).",
)
@output_option
@socket_option
def cleanup_status(run_id: str, follow: bool, output: str | None, socket: Path | None) -> None:
    """Where the cleanup run RUN_ID stands: phase, counts, rate, time left, summary (admin).

    RUN_ID comes from jobs-cleanup, cleanup-history or an error naming the run that
    holds the lock.
    """
    if follow and for_people(output) and sys.stderr.isatty():
        from .progress import follow_run  # noqa: PLC0415 # rich's progress, on a terminal only

        sys.exit(follow_run(socket, run_id))
    call_and_print(
        socket,
        lambda c: c.jobs_cleanup_status(run_id=run_id),
        output=output,
        table="status_table",
    )


@click.command("jobs-deleted")
@click.option("--id", "job_id", type=click.IntRange(1, MAX_JOB_ID), help="Only this job.")
@click.option("--kind", help="Only jobs of this kind (exact).")
@click.option("--target", help="Only jobs with this target (exact).")
@click.option("--actor", help="Only jobs of this actor (exact).")
@click.option(
    "--deleted-after",
    type=When(),
    help="Only jobs deleted at or after WHEN: 2026-12-01, 2026-12-01T14:00 (local time "
    "unless it ends in Z or +HH:MM), or a duration ago: 90s, 15m, 12h, 7d.",
)
@click.option("--deleted-before", type=When(), help="Only jobs deleted before WHEN.")
@click.option("--run-id", help="Only jobs deleted by this run (see cleanup-history).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", help="next_cursor from the previous page.")
@output_option
@socket_option
def jobs_deleted(
    job_id: int | None,
    kind: str | None,
    target: str | None,
    actor: str | None,
    deleted_after: int | None,
    deleted_before: int | None,
    run_id: str | None,
    limit: int,
    cursor: str | None,
    output: str | None,
    socket: Path | None,
) -> None:
    """What happened to a job: the jobs real cleanups deleted, newest first (admin).

    Each tombstone is the job as the run listed it, the run that deleted it and when.
    """
    call_and_print(
        socket,
        lambda c: c.jobs_deleted(
            id=job_id,
            kind=kind,
            target=target,
            actor=actor,
            deleted_after_ms=deleted_after,
            deleted_before_ms=deleted_before,
            run_id=run_id,
            limit=limit,
            cursor=cursor,
        ),
        output=output,
        table="deleted_table",
    )


COMMANDS = (
    jobs_cleanup,
    jobs_list,
    jobs_submit,
    stats,
    health,
    cleanup_history,
    cleanup_status,
    policies,
    jobs_deleted,
)
