"""What the CLI prints for people (`--output table`, the default on a terminal).

Tables of jobs, stats, cleanup runs and policies, and the compact summary of a
cleanup: its counts, the first few ids, how to get the rest and where the run is
recorded. Built with rich; `output` imports this module only when it prints for
people, so that `--help` and JSON output never load rich.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

FEW = 5  # ids and error lines a compact summary shows


def console() -> Console:
    """stdout; not a terminal (`--output table` into a pipe or file): as wide as a line
    needs, so that no cell is cut."""
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=1000)
    return out


def table(*columns: str, numbers: tuple[str, ...] = (), keys: tuple[str, ...] = ()) -> Table:
    """A borderless table: `numbers` right-aligned and never cut, `keys` (ids, states)
    never cut; on a narrow terminal the other columns wrap."""
    grid = Table(box=None, header_style="bold", pad_edge=False)
    for name in columns:
        whole = name in numbers or name in keys
        grid.add_column(
            name,
            justify="right" if name in numbers else "left",
            no_wrap=whole,
            overflow="fold",
        )
    return grid


def when(ms: int | None) -> str:
    """A time in milliseconds since the epoch, local, to the second; '-' for none."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short(ms: int | None, now: datetime | None = None) -> str:
    """A time for a table cell, local: 14:03:09 today, 12-06 14:03 this year, else the day
    (2025-12-06); '-' for none."""
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp(ms / 1000).astimezone()
    now = now or datetime.now().astimezone()
    if moment.date() == now.date():
        return moment.strftime("%H:%M:%S")
    if moment.year == now.year:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def duration(ms: int | float | None) -> str:
    """850ms, 1.2s, 3m04s, 2h05m, 3d04h; '-' for none."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def count(n: int | None) -> str:
    return f"{n or 0:,}"


def plural(n: int | None, noun: str) -> str:
    """'1 job', '2,000 jobs'."""
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"


def first_few(ids: list[Any], total: int | None = None) -> str:
    """'1, 2, 3, 4, 5 and 1,995 more'."""
    total = len(ids) if total is None else total
    shown = ", ".join(str(i) for i in ids[:FEW])
    rest = total - min(len(ids), FEW)
    return f"{shown} and {rest:,} more" if rest > 0 else shown


def _next_page(result: Any, noun: str, command: str) -> None:
    out = console()
    shown = plural(len(getattr(result, noun)), noun[:-1])
    if result.next_cursor:
        out.print(
            f"{shown}; next page: hero_codescalers {command} --cursor {result.next_cursor}",
            style="dim",
        )
    else:
        out.print(shown, style="dim")


def jobs_table(result: Any) -> None:
    """`jobs-list`: one row per job, oldest first, and how to get the next page."""
    grid = table(
        "ID",
        "STATUS",
        "KIND",
        "ACTOR",
        "TARGET",
        "CREATED",
        "FINISHED",
        "ACTION",
        numbers=("ID",),
        keys=("STATUS", "CREATED", "FINISHED"),
    )
    for job in result.jobs:
        grid.add_row(
            str(job.id),
            job.status or "-",
            job.kind or "-",
            job.actor or "-",
            job.target or "-",
            short(job.created_at_ms),
            short(job.finished_at_ms),
            job.action_id + (" (kept)" if job.kept else ""),
        )
    console().print(grid)
    if result.jobs_skipped_malformed:
        console().print(f"{result.jobs_skipped_malformed:,} malformed jobs skipped", style="yellow")
    _next_page(result, "jobs", "jobs-list")


def stats_table(result: Any) -> None:
    """`stats`: codescaler jobs and actions by kind, jobs by status, hero_proc's totals."""
    ours = result.codescaler
    out = console()
    out.print(
        f"codescaler: [bold]{count(ours.jobs)}[/] jobs, [bold]{count(ours.actions)}[/] actions"
    )
    kinds = sorted(set(ours.jobs_by_kind) | set(ours.actions_by_kind))
    if kinds:
        grid = table("KIND", "JOBS", "ACTIONS", numbers=("JOBS", "ACTIONS"))
        for kind in kinds:
            grid.add_row(
                kind, count(ours.jobs_by_kind.get(kind)), count(ours.actions_by_kind.get(kind))
            )
        out.print(grid)
    if ours.jobs_by_status:
        statuses = ", ".join(f"{s} {count(n)}" for s, n in sorted(ours.jobs_by_status.items()))
        out.print(f"by status: {statuses}")
    malformed = (ours.jobs_skipped_malformed or 0) + (ours.actions_skipped_malformed or 0)
    if malformed:
        out.print(f"{malformed:,} malformed jobs or actions skipped", style="yellow")
    theirs = result.hero_proc
    out.print(
        f"hero_proc: {count(theirs.job_count)} jobs ({count(theirs.running_count)} running), "
        f"{count(theirs.action_count)} actions"
    )


def param(value: Any) -> str:
    """A selection's value as its flag takes it: lists joined by commas."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


_OUTCOME_STYLE = {"ok": "green", "partial": "yellow", "skipped": "dim"}


def outcome_text(outcome: str | None) -> Text:
    if outcome is None:
        return Text("running", style="cyan")
    return Text(outcome, style=_OUTCOME_STYLE.get(outcome, "red"))


def history_table(result: Any) -> None:
    """`cleanup-history`: one row per run, newest first (its actions and errors in
    --output json)."""
    numbers = ("DELETED", "FAILED", "TOOK")
    grid = table(
        "RUN",
        "STARTED",
        "BY",
        "OUTCOME",
        *numbers,
        "REASON",
        numbers=numbers,
        keys=("RUN", "STARTED", "BY", "OUTCOME"),
    )
    for run in result.runs:
        outcome = outcome_text(run.outcome)
        if run.dry_run:
            outcome.append(" (dry)", style="dim")
        grid.add_row(
            run.run_id,
            short(run.started_at_ms),
            f"policy {run.policy}" if run.policy else f"uid {run.peer_uid}",
            outcome,
            f"{count(run.jobs_deleted)}/{count(run.jobs_matched)}",
            count(run.jobs_failed),
            duration(run.duration_ms),
            run.reason or "",
        )
    console().print(grid)
    _next_page(result, "runs", "cleanup-history")


def policies_table(result: Any) -> None:
    """`policies`: each policy, what it selects, when it fires next, its last run."""
    grid = table(
        "NAME", "ENABLED", "EVERY", "SELECTS", "NEXT", "LAST RUN", keys=("NAME", "ENABLED")
    )
    for policy in result.policies:
        selects = " ".join(f"{k}={param(v)}" for k, v in policy.params.items()) or "everything"
        flags = [f for f, on in (("dry run", policy.dry_run), ("running", policy.running)) if on]
        last = policy.last_run
        last_text = Text("never", style="dim")
        if last is not None:
            last_text = Text(f"{short(last.started_at_ms)} ")
            last_text.append_text(outcome_text(last.outcome))
            last_text.append(f" {count(last.jobs_deleted)} deleted")
        grid.add_row(
            policy.name + "".join(f" ({f})" for f in flags),
            "yes" if policy.enabled else "no",
            duration(policy.every_ms),
            selects + (" +orphan actions" if policy.orphan_actions else ""),
            when(policy.next_due_ms),
            last_text,
        )
    out = console()
    out.print(grid)
    switch = "; every run is a dry run (HERO_CODESCALERS_POLICIES_DRY_RUN)"
    out.print(
        f"policies file: {result.file or 'none'}" + (switch if result.dry_run_switch else ""),
        style="dim",
    )


def cleanup_summary(summary: Any) -> None:
    """A cleanup's compact summary: what it matched and did, the first few ids and
    errors, how to get the rest, and where the run is recorded."""
    out = console()
    s = summary
    if s.dry_run:
        out.print(
            f"[bold]Dry run, nothing changed:[/] would delete {plural(s.jobs_matched, 'job')} "
            f"and {plural(s.actions_matched, 'codescaler action')}"
        )
    else:
        jobs = _details(
            (s.jobs_already_gone, "already gone"),
            (s.jobs_failed, "failed"),
            (s.jobs_not_attempted, "not attempted"),
            (s.jobs_skipped_malformed, "more skipped as malformed"),
        )
        actions = _details(
            (s.actions_already_gone, "already gone"),
            (s.actions_in_use, "in use by other jobs, kept"),
            (s.actions_failed, "failed"),
            (s.actions_not_attempted, "not attempted"),
        )
        out.print(
            f"[bold]Deleted {count(s.jobs_deleted)} of {plural(s.jobs_matched, 'matched job')}"
            f"[/]{jobs} and [bold]{count(s.actions_deleted)} of "
            f"{plural(s.actions_matched, 'action')}[/]{actions} in {duration(s.duration_ms)}"
        )
        if s.orphan_actions_deleted:
            out.print(f"Orphan actions deleted: {count(s.orphan_actions_deleted)}")
    _ids(out, s)
    if s.foreign_action_ids:
        out.print(
            f"Left in place, not created by this service: "
            f"{plural(len(s.foreign_action_ids), 'action')}"
        )
    _status_line(out, s)
    _record_line(out, s)


def _details(*parts: tuple[int | None, str]) -> str:
    """' (2 already gone, 1 failed)' of the parts that are not 0."""
    said = [f"{count(n)} {what}" for n, what in parts if n]
    return f" ({', '.join(said)})" if said else ""


def _ids(out: Console, s: Any) -> None:
    if getattr(s, "ids_omitted", False):
        out.print("Ids left out of this answer: --output json lists them", style="dim")
        return
    if s.job_ids:
        out.print(f"Jobs: {first_few(s.job_ids)}")
    if s.action_ids:
        out.print(f"Actions: {first_few(s.action_ids)}")


def _status_line(out: Console, s: Any) -> None:
    from .output import partial  # noqa: PLC0415 # output imports this module lazily

    # an action kept because other jobs use it is not a failure (newer services leave
    # it out of `errors`; older ones wrote it there with this reason)
    failures = [line for line in s.errors if not line.endswith(": in use by another job")]
    if partial(s):
        out.print(Text("Partial: not everything selected was deleted", style="bold yellow"))
        for line in failures[:FEW]:
            out.print(Text(f"  {line}", style="yellow"))
        if len(failures) > FEW:
            out.print(f"  and {len(failures) - FEW:,} more lines in errors", style="yellow")
    if getattr(s, "has_more", False):
        out.print("More jobs match: the run stopped at its --max-jobs bound; run it again")
    plan = getattr(s, "plan_id", None)
    if plan and s.dry_run:
        expires = getattr(s, "plan_expires_at_ms", None)
        until = f", until {short(expires)}" if expires else ""
        out.print(f"Plan {plan}{until}: delete exactly these with --plan {plan}")
    elif plan:
        out.print(f"Applied plan {plan}")


def _record_line(out: Console, s: Any) -> None:
    if s.run_id:
        out.print(f"Recorded as run {s.run_id}: hero_codescalers cleanup-history", style="dim")
        if not s.dry_run and s.jobs_deleted:
            later = f"hero_codescalers jobs-deleted --run-id {s.run_id}"
            out.print(f"What it deleted, any time later: {later}", style="dim")
    out.print("Every id and error: --output json", style="dim")


def status_table(status: Any) -> None:
    """`cleanup-status`: the run's state in a line, then its summary once it has one."""
    from .progress import status_line  # noqa: PLC0415 # progress imports this module

    status_line(status)
    if status.error:
        console().print(f"error: {status.error}", style="red")
    if status.summary is not None:
        cleanup_summary(status.summary)


def deleted_table(result: Any) -> None:
    """`jobs-deleted`: one row per deleted job, newest first: the job as the run listed
    it, the run that deleted it and when (its tags and context in --output json); for
    none, where a tombstone would have come from."""
    if not result.jobs and not result.next_cursor:
        console().print(
            "no deleted job matches: a job has a tombstone once a real cleanup of this "
            "service deleted it, for as long as that run is in the history",
            style="dim",
        )
        return
    grid = table(
        "ID",
        "DELETED",
        "RUN",
        "STATUS",
        "KIND",
        "ACTOR",
        "TARGET",
        "FINISHED",
        "ACTION",
        numbers=("ID",),
        keys=("DELETED", "RUN", "STATUS", "FINISHED"),
    )
    for job in result.jobs:
        grid.add_row(
            str(job.id),
            short(job.deleted_at_ms),
            job.run_id,
            job.status or "-",
            job.kind or "-",
            job.actor or "-",
            job.target or "-",
            short(job.finished_at_ms),
            job.action_id,
        )
    console().print(grid)
    _next_page(result, "jobs", "jobs-deleted")
