"""A cleanup followed on a terminal: a live progress bar, then the compact summary.

`jobs-cleanup` on a terminal starts its run in the background (`jobs.cleanup_start`)
and `follow`s it: it asks `jobs.cleanup_status` a few times a second and shows the
run's phase, its counts, its rate and the time left on stderr (rich), the bar's
total from the status's bound on the jobs still to list when there is one; once the
run is done, its compact summary goes to stdout. The first Ctrl-C asks the service
to cancel the run (`jobs.cleanup_cancel`) and prints the partial summary (exit 130);
a second one leaves the run to the service and says how to follow it.

Imported only to follow a run on a terminal: rich's progress loads with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
from hero_codescalers_sdk import AsyncClient, RpcError, TransportError
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from . import tables
from .output import (
    EXIT_ANSWERED_ERROR,
    EXIT_CANCELLED,
    EXIT_PARTIAL,
    cleanup_exit_status,
    error_exit,
)

POLL_S = 0.2  # between two status calls

PHASES = {
    "listing": "listing",
    "deleting_jobs": "deleting jobs",
    "deleting_actions": "deleting actions",
    "settling": "settling",
    "done": "done",
}


class Interrupts:
    """Ctrl-C while a run is followed: counted, and waking the loop that follows it."""

    def __init__(self) -> None:
        self.count = 0
        self.wake = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.wake.set()

    async def wait(self, seconds: float) -> None:
        """Until the next Ctrl-C, at most `seconds`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()
        self.wake.clear()


Start = Callable[[AsyncClient], Awaitable[Any]]


def follow_run(socket: Path | None, start: Start | str) -> int:
    """Start a background run with `start` and follow it on a terminal (Ctrl-C cancels
    it, a second one leaves it); or follow the run of that id (Ctrl-C leaves it). Its
    exit status. An error answer or an unreachable service exits as `output.error_exit`
    does."""
    try:
        return asyncio.run(_follow(socket, start))
    except (RpcError, TransportError) as exc:
        error_exit(exc)


async def _follow(socket: Path | None, start: Start | str) -> int:
    interrupts = Interrupts()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupts)
    try:
        async with AsyncClient(socket) as client:
            if isinstance(start, str):
                return await Follower(client, start, interrupts, cancels=False).run()
            run_id = (await start(client)).run_id
            return await Follower(client, run_id, interrupts, cancels=True).run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


class Follower:
    """One run followed until it is done, cancelled, or left (a second Ctrl-C)."""

    def __init__(
        self, client: AsyncClient, run_id: str, interrupts: Interrupts, *, cancels: bool
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.interrupts = interrupts
        self.leave_at = 2 if cancels else 1  # the Ctrl-C that leaves the run
        self.cancelling: asyncio.Task[Any] | None = None
        self.bar = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description:<16}"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[left]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True, highlight=False),
        )
        self.task: TaskID = self.bar.add_task("starting", total=None, counts="", rate="", left="")

    async def run(self) -> int:
        with self.bar:
            keys = "Ctrl-C cancels it" if self.leave_at == 2 else "Ctrl-C leaves it"
            self.bar.console.print(f"Run {self.run_id}: {keys}", style="dim")
            status = await self._until_done()
        if status is None:
            self._detached()
            return EXIT_CANCELLED
        return self._ended(status)

    async def _until_done(self) -> Any:
        """The run's last status once done; None when left to the service."""
        while True:
            if self.interrupts.count >= self.leave_at:
                if self.cancelling is not None:
                    self.cancelling.cancel()
                return None
            if self.interrupts.count == 1 and self.cancelling is None:
                self.cancelling = asyncio.create_task(
                    self.client.jobs_cleanup_cancel(run_id=self.run_id)
                )
            status = await self._status()
            self._show(status)
            if status.phase == "done":
                return status
            await self.interrupts.wait(POLL_S)

    async def _status(self) -> Any:
        """The cancel's answer once it has come (it waits for the run to stop), else the
        run's status."""
        if self.cancelling is not None and self.cancelling.done():
            status = self.cancelling.result()
            if status.phase == "done":
                return status
        return await self.client.jobs_cleanup_status(run_id=self.run_id)

    def _show(self, status: Any) -> None:
        phase = PHASES.get(status.phase, status.phase)
        if self.cancelling is not None and status.phase != "done":
            phase = "cancelling"
        listed = status.jobs_listed
        bound = status.jobs_left_at_most
        update: dict[str, Any] = {}
        if listed is not None and bound is not None:
            update = {"total": listed + bound, "completed": listed}
        elif status.phase == "done" or listed is None:
            total = self.bar.tasks[0].total
            if total is not None:
                update = {"completed": total}
        rate = "" if status.jobs_per_s is None else f"{status.jobs_per_s:,.0f} jobs/s"
        left = "" if status.eta_ms is None else f"~{tables.duration(status.eta_ms)} left"
        counts = (
            f"{tables.count(status.jobs_matched)} matched · "
            f"{tables.count(status.jobs_deleted)} deleted"
        )
        if status.jobs_failed:
            counts += f" · [yellow]{tables.count(status.jobs_failed)} failed[/]"
        if status.actions_deleted:
            counts += f" · {tables.plural(status.actions_deleted, 'action')}"
        self.bar.update(self.task, description=phase, counts=counts, rate=rate, left=left, **update)

    def _detached(self) -> None:
        asked = " (asked to stop)" if self.cancelling is not None else ""
        click.echo(
            f"Left run {self.run_id} to the service{asked}. Follow it: "
            f"hero_codescalers cleanup-status {self.run_id} --follow "
            "(or hero_codescalers cleanup-history)",
            err=True,
        )

    def _ended(self, status: Any) -> int:
        """Print how the run ended; its exit status."""
        cancelled = self.cancelling is not None or status.outcome == "cancelled"
        if status.summary is not None:
            tables.cleanup_summary(status.summary)
        elif status.outcome != "error":
            status_line(status)
        if status.outcome == "error":
            click.echo(f"hero_codescalers: run {self.run_id} failed: {status.error}", err=True)
            return EXIT_ANSWERED_ERROR
        if cancelled:
            who = status.cancelled_by
            by = f" (by uid {who.uid})" if who is not None and who.uid is not None else ""
            click.echo(f"Run {self.run_id} cancelled{by}: what it had not done is left.")
            return EXIT_CANCELLED if self.cancelling is not None else EXIT_PARTIAL
        if status.summary is not None:
            return cleanup_exit_status(status.summary)
        return EXIT_PARTIAL if status.outcome != "ok" else 0


def status_line(status: Any) -> None:
    """A run's status in one line, for people."""
    outcome = status.outcome or PHASES.get(status.phase, status.phase)
    click.echo(
        f"Run {status.run_id} {outcome}: {tables.count(status.jobs_matched)} jobs matched, "
        f"{tables.count(status.jobs_deleted)} deleted, {tables.count(status.jobs_failed)} "
        f"failed, {tables.plural(status.actions_deleted, 'action')} deleted, "
        f"{tables.duration(status.elapsed_ms)}"
    )
