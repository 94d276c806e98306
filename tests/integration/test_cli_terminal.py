"""The CLI for people and for scripts: tables and a compact summary on a terminal (a
pseudo-terminal here), JSON otherwise or with --output json, a question before a
cleanup without any filter, and exit statuses a script can act on."""

from __future__ import annotations

import json
import re

import pytest

from hero_codescalers.simulator import Simulator, seed_population

from ..conftest import Service
from .population import add_job
from .terminal import on_terminal, terminal
from .test_cli import cli
from .test_processes import HoldDeletes


def codescaler_jobs(simulator: Simulator) -> int:
    return sum("codescaler" in (job.get("tags") or []) for job in simulator.store.jobs.values())


# Tables and JSON -----------------------------------------------------------------------


async def test_jobs_list_prints_a_table_on_a_terminal(
    simulator: Simulator, service: Service
) -> None:
    """On a terminal: a header, one row per job, the next page's command; no JSON."""
    first = add_job(simulator.store, actor="alice", target="web", created_at_ms=1)
    second = add_job(simulator.store, actor="alice", kind="install", status="failed")
    add_job(simulator.store, actor="bob")
    code, screen = await on_terminal(
        "jobs-list", "--actor", "alice", "--limit", "1", "--socket", str(service.socket)
    )
    assert code == 0
    lines = screen.splitlines()
    assert lines[0].split() == [
        "ID", "STATUS", "KIND", "ACTOR", "TARGET", "CREATED", "FINISHED", "ACTION"
    ]  # fmt: skip
    assert lines[1].split()[:5] == [str(first), "succeeded", "user", "alice", "web"]
    assert re.search(r"1 job; next page: hero_codescalers jobs-list --cursor \S+", screen)
    assert "{" not in screen
    code, screen = await on_terminal(
        "jobs-list", "--actor", "alice", "--status", "failed", "--socket", str(service.socket)
    )
    assert [line.split()[:3] for line in screen.splitlines()[1:2]] == [
        [str(second), "failed", "install"]
    ]


async def test_output_json_on_a_terminal_is_the_answer(
    simulator: Simulator, service: Service
) -> None:
    """--output json on a terminal prints what a pipe gets: the answer as JSON."""
    job = add_job(simulator.store, actor="alice")
    code, screen = await on_terminal(
        "jobs-list", "--output", "json", "--socket", str(service.socket)
    )
    assert code == 0
    assert [j["id"] for j in json.loads(screen)["jobs"]] == [job]
    _, out, _ = await cli("jobs-list", "--socket", str(service.socket))
    assert json.loads(out) == json.loads(screen)


async def test_output_table_into_a_pipe_is_a_table(simulator: Simulator, service: Service) -> None:
    """--output table asks for the table also when stdout is not a terminal; nothing is
    cut to a terminal's width."""
    job = add_job(simulator.store, actor="alice", target="t" * 150)
    code, out, err = await cli("jobs-list", "--output", "table", "--socket", str(service.socket))
    assert (code, err) == (0, "")
    assert out.splitlines()[1].split()[:5] == [str(job), "succeeded", "user", "alice", "t" * 150]
    assert "\x1b[" not in out


async def test_stats_history_and_policies_as_tables(simulator: Simulator, service: Service) -> None:
    """stats: counts by kind and status and hero_proc's totals; cleanup-history: one row
    a run; policies: the file (none here)."""
    sock = str(service.socket)
    seed_population(simulator.store, 20, unrelated=5)
    _, out, _ = await cli("stats", "--socket", sock)
    stats = json.loads(out)
    code, screen = await on_terminal("stats", "--socket", sock)
    assert code == 0
    assert f"codescaler: {stats['codescaler']['jobs']} jobs" in screen
    for kind, jobs in stats["codescaler"]["jobs_by_kind"].items():
        assert re.search(rf"^{kind}\s+{jobs}\s+\d+\s*$", screen, re.MULTILINE), (kind, screen)
    assert f"hero_proc: {stats['hero_proc']['job_count']} jobs" in screen

    await cli("jobs-cleanup", "--dry-run", "--reason", "look first", "--socket", sock)
    await cli("jobs-cleanup", "--kind", "user", "--reason", "ticket 7", "--socket", sock)
    _, out, _ = await cli("cleanup-history", "--socket", sock)
    runs = json.loads(out)["runs"]
    code, screen = await on_terminal("cleanup-history", "--socket", sock)
    assert code == 0
    rows = screen.splitlines()
    assert rows[0].split() == [
        "RUN",
        "STARTED",
        "BY",
        "OUTCOME",
        "DELETED",
        "FAILED",
        "TOOK",
        "REASON",
    ]
    assert rows[1].split()[0] == runs[0]["run_id"]
    assert f"{runs[0]['jobs_deleted']}/{runs[0]['jobs_matched']}" in rows[1]
    assert rows[1].rstrip().endswith("ticket 7")
    assert "ok (dry)" in rows[2]
    assert rows[2].rstrip().endswith("look first")
    assert "2 runs" in screen

    code, screen = await on_terminal("policies", "--socket", sock)
    assert code == 0, screen
    assert screen.splitlines()[0].split()[:3] == ["NAME", "ENABLED", "EVERY"]
    assert "policies file: none" in screen
    code, screen = await on_terminal("policies", "--output", "json", "--socket", sock)
    assert json.loads(screen)["policies"] == []


# The compact summary -------------------------------------------------------------------


async def test_a_cleanup_on_a_terminal_prints_a_compact_summary(
    simulator: Simulator, service: Service
) -> None:
    """Counts, the first five ids and how many more, where the run is recorded, how to get
    every id, now and later (its tombstones); not the JSON."""
    jobs = [add_job(simulator.store, actor="alice") for _ in range(12)]
    sock = str(service.socket)
    code, screen = await on_terminal(
        "jobs-cleanup", "--actor", "alice", "--dry-run", "--socket", sock
    )
    assert code == 0
    assert "Dry run, nothing changed: would delete 12 jobs and 1 codescaler action" in screen
    assert f"Jobs: {', '.join(map(str, jobs[:5]))} and 7 more" in screen
    assert "jobs-deleted" not in screen  # a dry run deletes nothing
    code, screen = await on_terminal("jobs-cleanup", "--actor", "alice", "--socket", sock)
    assert code == 0
    assert "Deleted 12 of 12 matched jobs and 1 of 1 action in " in screen
    _, out, _ = await cli("cleanup-history", "--limit", "1", "--socket", sock)
    run_id = json.loads(out)["runs"][0]["run_id"]
    assert f"Recorded as run {run_id}: hero_codescalers cleanup-history" in screen
    later = f"hero_codescalers jobs-deleted --run-id {run_id}"
    assert f"What it deleted, any time later: {later}" in screen
    assert "Every id and error: --output json" in screen
    assert "job_ids" not in screen
    assert codescaler_jobs(simulator) == 0


async def test_a_partial_run_on_a_terminal_says_so_and_exits_4(
    simulator: Simulator, service: Service
) -> None:
    """Jobs hero_proc refuses to delete: the summary says partial with the first error
    lines; exit 4."""
    for _ in range(8):
        add_job(simulator.store, actor="alice")
    simulator.store.faults.fail_rate = {"job.delete": 1.0}
    code, screen = await on_terminal(
        "jobs-cleanup", "--actor", "alice", "--socket", str(service.socket)
    )
    assert code == 4, screen
    assert "(8 failed)" in screen
    assert "Partial: not everything selected was deleted" in screen
    assert "and 3 more lines in errors" in screen


# Exit statuses for scripts -------------------------------------------------------------


async def test_failed_jobs_exit_4_though_the_run_went_through(
    simulator: Simulator, service: Service
) -> None:
    """Every job.delete refused: the JSON summary as today, exit 4 (partial)."""
    for _ in range(3):
        add_job(simulator.store, actor="alice")
    simulator.store.faults.fail_rate = {"job.delete": 1.0}
    code, out, err = await cli("jobs-cleanup", "--actor", "alice", "--socket", str(service.socket))
    assert (code, err) == (4, "")
    assert json.loads(out)["jobs_failed"] == 3


async def test_actions_in_use_alone_exit_0(simulator: Simulator, service: Service) -> None:
    """An action kept because another job uses it is the design working: exit 0."""
    add_job(simulator.store, actor="alice", action="codescaler_user_shared")
    add_job(simulator.store, actor="bob", action="codescaler_user_shared")
    code, out, _ = await cli("jobs-cleanup", "--actor", "alice", "--socket", str(service.socket))
    summary = json.loads(out)
    assert (summary["jobs_deleted"], summary["actions_in_use"]) == (1, 1)
    assert code == 0


async def test_an_error_answer_prints_its_data_as_json(service: Service) -> None:
    """The error's data is JSON on the one stderr line, exit 1."""
    code, _, err = await cli(
        "jobs-cleanup", "--actor", "kind_user", "--socket", str(service.socket)
    )
    assert code == 1
    prefix = "hero_codescalers: Invalid params (-32602): "
    assert err.startswith(prefix)
    assert json.loads(err[len(prefix) :]).startswith("actor: ")


# The question before a cleanup without any filter ---------------------------------------


async def test_an_unfiltered_cleanup_asks_and_no_deletes_nothing(
    simulator: Simulator, service: Service
) -> None:
    """No filter, on a terminal: the question; 'n' deletes nothing, exit 1."""
    seed_population(simulator.store, 10)
    before = codescaler_jobs(simulator)
    async with terminal("jobs-cleanup", "--socket", str(service.socket)) as term:
        screen = await term.expect("Delete them all? [y/N] ")
        assert "every codescaler job (but those tagged codescaler_keep)" in screen
        term.type("n\n")
        code, screen = await term.finish()
    assert code == 1
    assert "Nothing deleted." in screen
    assert codescaler_jobs(simulator) == before > 0


async def test_an_unfiltered_cleanup_asked_and_yes_deletes(
    simulator: Simulator, service: Service
) -> None:
    """'y' goes on: everything deleted, the compact summary, exit 0."""
    seed_population(simulator.store, 10)
    async with terminal("jobs-cleanup", "--socket", str(service.socket)) as term:
        await term.expect("Delete them all? [y/N] ")
        term.type("y\n")
        code, screen = await term.finish()
    assert code == 0, screen
    assert "Deleted 10 of 10 matched jobs" in screen
    assert codescaler_jobs(simulator) == 0


async def test_ctrl_c_at_the_question_exits_130(simulator: Simulator, service: Service) -> None:
    """^C at the question: nothing deleted, exit 130."""
    seed_population(simulator.store, 10)
    async with terminal("jobs-cleanup", "--socket", str(service.socket)) as term:
        await term.expect("Delete them all? [y/N] ")
        term.ctrl_c()
        code, _ = await term.finish()
    assert code == 130
    assert codescaler_jobs(simulator) == 10


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--yes",), id="yes"),
        pytest.param(("--kind", "user"), id="filtered"),
    ],
)
async def test_no_question_with_yes_or_a_filter(
    simulator: Simulator, service: Service, args: tuple[str, ...]
) -> None:
    """--yes, or any filter: no question, the run goes on."""
    seed_population(simulator.store, 10)
    code, screen = await on_terminal("jobs-cleanup", *args, "--socket", str(service.socket))
    assert code == 0, screen
    assert "[y/N]" not in screen
    assert "Deleted " in screen


async def test_no_question_on_a_dry_run(simulator: Simulator, service: Service) -> None:
    """A dry run deletes nothing: no question."""
    seed_population(simulator.store, 10)
    code, screen = await on_terminal("jobs-cleanup", "--dry-run", "--socket", str(service.socket))
    assert code == 0
    assert "[y/N]" not in screen


async def test_no_question_without_a_terminal(simulator: Simulator, service: Service) -> None:
    """Not a terminal: no question, the run goes on as it always did (JSON, exit 0)."""
    seed_population(simulator.store, 10)
    code, out, err = await cli("jobs-cleanup", "--socket", str(service.socket))
    assert (code, err) == (0, "")
    assert json.loads(out)["jobs_deleted"] == 10


# Ctrl-C ----------------------------------------------------------------------------------


async def test_ctrl_c_during_a_foreground_cleanup_exits_130_and_the_run_goes_on(
    simulator: Simulator, service: Service
) -> None:
    """^C while a foreground run (--output json) deletes: exit 130 with one line saying the
    service takes the run to its end; it does, and records it."""
    seed_population(simulator.store, 10)
    hold = HoldDeletes()
    simulator.hooks.append(hold)
    sock = str(service.socket)
    async with terminal("jobs-cleanup", "--yes", "--output", "json", "--socket", sock) as term:
        await hold.entered.wait()
        term.ctrl_c()
        code, screen = await term.finish()
    assert code == 130
    assert "interrupted; the service takes the run to its end and records it" in screen
    assert "Traceback" not in screen
    hold.release.set()
    await service.engine.idle()
    assert codescaler_jobs(simulator) == 0
    _, out, _ = await cli("cleanup-history", "--socket", sock)
    assert json.loads(out)["runs"][0]["outcome"] == "ok"


# Plans and bounded runs -------------------------------------------------------------------


async def test_a_preview_on_a_terminal_names_its_plan_and_the_apply_does_not_ask(
    simulator: Simulator, service: Service
) -> None:
    """The dry run's summary says how to apply its plan; `--plan ID`, without filters,
    deletes that plan's jobs without a question (the plan was the preview)."""
    planned = [add_job(simulator.store, actor="alice") for _ in range(3)]
    sock = str(service.socket)
    code, screen = await on_terminal("jobs-cleanup", "--dry-run", "--socket", sock)
    assert code == 0
    found = re.search(
        r"^Plan (\S+), until [-0-9: ]+: delete exactly these with --plan \1$",
        screen,
        re.MULTILINE,
    )
    assert found, screen
    later = add_job(simulator.store, actor="alice")
    code, screen = await on_terminal("jobs-cleanup", "--plan", found.group(1), "--socket", sock)
    assert code == 0, screen
    assert "[y/N]" not in screen
    assert "Deleted 3 of 3 matched jobs" in screen
    assert f"Applied plan {found.group(1)}" in screen
    assert "--plan" not in screen
    assert list(simulator.store.jobs) == [later]
    assert planned


async def test_a_bounded_run_that_leaves_more_says_so_and_exits_0(
    simulator: Simulator, service: Service
) -> None:
    """--max-jobs 2 of 5: two deleted, 'more jobs match' said, exit 0 (the bound was
    asked for)."""
    for _ in range(5):
        add_job(simulator.store, actor="alice")
    sock = str(service.socket)
    code, screen = await on_terminal(
        "jobs-cleanup", "--actor", "alice", "--max-jobs", "2", "--socket", sock
    )
    assert code == 0, screen
    assert "Deleted 2 of 2 matched jobs" in screen
    assert "More jobs match: the run stopped at its --max-jobs bound; run it again" in screen
    assert "Partial" not in screen
    code, out, _ = await cli(
        "jobs-cleanup", "--actor", "alice", "--max-jobs", "2", "--socket", sock
    )
    assert (code, json.loads(out)["has_more"]) == (0, True)
    assert codescaler_jobs(simulator) == 1


async def test_a_narrow_terminal_wraps_text_and_keeps_ids_whole(
    simulator: Simulator, service: Service
) -> None:
    """On 80 columns the run ids, outcomes and counts of cleanup-history stay whole
    (the reason wraps), as do the ids and statuses of jobs-list."""
    sock = str(service.socket)
    job = add_job(simulator.store, actor="alice", target="t" * 60)
    await cli("jobs-cleanup", "--dry-run", "--reason", "why " * 30, "--socket", sock)
    _, out, _ = await cli("cleanup-history", "--socket", sock)
    [run] = json.loads(out)["runs"]
    code, screen = await on_terminal("cleanup-history", "--socket", sock, columns=80)
    assert code == 0
    assert max(len(line) for line in screen.splitlines()) <= 80
    row = screen.splitlines()[1].split()
    assert row[0] == run["run_id"]
    assert "ok" in row
    assert "0/1" in row
    code, screen = await on_terminal("jobs-list", "--socket", sock, columns=80)
    assert screen.splitlines()[1].split()[:2] == [str(job), "succeeded"]
