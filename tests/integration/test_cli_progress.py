"""jobs-cleanup on a terminal: the run goes on in the background with a live progress
bar, then the compact summary; Ctrl-C cancels it, a second Ctrl-C leaves it to the
service. Through a pseudo-terminal, against the service and simulator on real sockets;
simulator hooks hold the run where a test needs it."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hero_codescalers.simulator import Simulator, seed_population

from ..conftest import Service
from .terminal import on_terminal, terminal
from .test_cli import cli
from .test_state import HoldListing


def codescaler_jobs(simulator: Simulator) -> int:
    return sum("codescaler" in (job.get("tags") or []) for job in simulator.store.jobs.values())


def spy_cancel(service: Service) -> asyncio.Event:
    """An event set when the service is asked to cancel a run (the run's cancel is
    noted before the test goes on: the engine notes it before its first await)."""
    asked = asyncio.Event()
    engine = service.engine
    cancel: Callable[..., Awaitable[Any]] = engine.cancel

    async def spy(*args: Any, **kwargs: Any) -> Any:
        asked.set()
        return await cancel(*args, **kwargs)

    engine.cancel = spy
    return asked


async def held_run(simulator: Simulator, service: Service) -> HoldListing:
    """3,000 codescaler jobs, pages of 1,000, the second page held."""
    seed_population(simulator.store, 3_000)
    service.engine.page_size = 1_000
    hold = HoldListing(nth=2)
    simulator.hooks.append(hold)
    return hold


async def test_a_cleanup_on_a_terminal_shows_its_progress_then_the_summary(
    simulator: Simulator, service: Service
) -> None:
    """While the run is held after its first page, the bar shows its run id, phase,
    counts, rate and the time left (hero_proc's stats bound the listing); released, the
    compact summary, exit 0; the run was a background run."""
    hold = await held_run(simulator, service)
    async with terminal("jobs-cleanup", "--yes", "--socket", str(service.socket)) as term:
        screen = await term.expect("1,000 matched · 1,000 deleted")
        run_id = re.search(r"Run (\w+): Ctrl-C cancels it", screen)
        assert run_id, screen
        await term.expect(" left")
        assert re.search(
            r"listing\s+\S*\s*1,000 matched · 1,000 deleted [\d,]+ jobs/s ~", term.text
        )
        hold.release.set()
        code, screen = await term.finish()
    assert code == 0, screen
    assert "Deleted 3,000 of 3,000 matched jobs" in screen
    assert f"Recorded as run {run_id.group(1)}: hero_codescalers cleanup-history" in screen
    assert codescaler_jobs(simulator) == 0
    _, out, _ = await cli("cleanup-history", "--limit", "1", "--socket", str(service.socket))
    [run] = json.loads(out)["runs"]
    assert (run["run_id"], run["background"], run["outcome"]) == (run_id.group(1), True, "ok")


async def test_ctrl_c_cancels_the_run_and_prints_what_it_did(
    simulator: Simulator, service: Service
) -> None:
    """^C: the service is asked to cancel; the run stops at its next step; the partial
    summary, 'cancelled', exit 130; the record says who cancelled it."""
    hold = await held_run(simulator, service)
    asked = spy_cancel(service)
    async with terminal("jobs-cleanup", "--yes", "--socket", str(service.socket)) as term:
        await term.expect("1,000 matched · 1,000 deleted")
        term.ctrl_c()
        await asyncio.wait_for(asked.wait(), 30)
        hold.release.set()
        code, screen = await term.finish()
    assert code == 130, screen
    assert re.search(r"Deleted [\d,]+ of [\d,]+ matched jobs", screen), screen
    assert "Partial: not everything selected was deleted" in screen
    assert f"cancelled (by uid {os.getuid()}): what it had not done is left." in screen
    assert 0 < codescaler_jobs(simulator) < 3_000
    _, out, _ = await cli("cleanup-history", "--limit", "1", "--socket", str(service.socket))
    [run] = json.loads(out)["runs"]
    assert run["outcome"] == "cancelled"
    assert run["cancelled_by"]["uid"] == os.getuid()


async def test_a_second_ctrl_c_leaves_the_run_to_the_service(
    simulator: Simulator, service: Service
) -> None:
    """^C then ^C while the cancel waits for the held run: the CLI leaves at once, exit
    130, saying how to follow the run; the run then stops as it was asked."""
    hold = await held_run(simulator, service)
    asked = spy_cancel(service)
    async with terminal("jobs-cleanup", "--yes", "--socket", str(service.socket)) as term:
        screen = await term.expect("1,000 matched · 1,000 deleted")
        found = re.search(r"Run (\w+): Ctrl-C cancels it", screen)
        assert found
        run_id = found.group(1)
        term.ctrl_c()
        await asyncio.wait_for(asked.wait(), 30)
        term.ctrl_c()
        code, screen = await term.finish()
    assert code == 130, screen
    assert (
        f"Left run {run_id} to the service (asked to stop). Follow it: "
        f"hero_codescalers cleanup-status {run_id} --follow" in screen
    )
    assert "Deleted" not in screen
    hold.release.set()
    await service.engine.idle()
    code, out, _ = await cli("cleanup-status", run_id, "--socket", str(service.socket))
    assert code == 0
    status = json.loads(out)
    assert (status["phase"], status["outcome"]) == ("done", "cancelled")
    code, screen = await on_terminal("cleanup-status", run_id, "--socket", str(service.socket))
    assert code == 0
    assert re.search(rf"Run {run_id} cancelled: 2,000 jobs matched, 1,000 deleted", screen), screen


async def test_a_run_that_fails_says_why_and_exits_1(
    simulator: Simulator, service: Service
) -> None:
    """hero_proc does not answer the listing: the run is started, fails; its error, exit 1."""
    seed_population(simulator.store, 10)
    simulator.store.faults.drop_rate = {"job.list": 1.0}
    code, screen = await on_terminal("jobs-cleanup", "--yes", "--socket", str(service.socket))
    assert code == 1, screen
    assert re.search(r"hero_codescalers: run \w+ failed: .*hero_proc unavailable", screen), screen
    assert "Traceback" not in screen


async def test_a_refused_start_is_one_line_with_its_data(
    simulator: Simulator, service: Service
) -> None:
    """Another run holds the lock: -32011 on one line, its data (the run holding it) as
    JSON, exit 1."""
    hold = await held_run(simulator, service)
    first = asyncio.create_task(cli("jobs-cleanup", "--socket", str(service.socket)))
    await hold.entered.wait()
    code, screen = await on_terminal("jobs-cleanup", "--yes", "--socket", str(service.socket))
    hold.release.set()
    await first
    assert code == 1, screen
    line = next(x for x in screen.splitlines() if x.startswith("hero_codescalers: "))
    data = json.loads(line.split("(-32011): ", 1)[1])
    assert isinstance(data["run_id"], str)


async def test_following_a_run_that_is_done_prints_how_it_ended(
    simulator: Simulator, service: Service
) -> None:
    """cleanup-status RUN_ID --follow of a run that has ended: its line (a foreground
    run's summary went to its caller), exit 0."""
    seed_population(simulator.store, 10)
    _, out, _ = await cli("jobs-cleanup", "--socket", str(service.socket))
    run_id = json.loads(out)["run_id"]
    code, screen = await on_terminal(
        "cleanup-status", run_id, "--follow", "--socket", str(service.socket)
    )
    assert code == 0, screen
    assert f"Run {run_id} ok: 10 jobs matched, 10 deleted, 0 failed" in screen


@pytest.mark.parametrize("output", ["json", "table"])
async def test_an_unknown_run_is_one_line_exit_1(service: Service, output: str) -> None:
    """cleanup-status of a run nobody knows: -32602 naming it, exit 1."""
    code, _, err = await cli(
        "cleanup-status", "0123456789abcdef", "--output", output, "--socket", str(service.socket)
    )
    assert code == 1
    assert "(-32602)" in err
    assert "0123456789abcdef" in err
