"""The CLI as an operator runs it: a separate process against the service's socket."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Faults, Simulator, seed_population

from ..conftest import Service, start_service
from .population import add_job


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hero_codescalers",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_jobs_cleanup_prints_the_summary(simulator: Simulator, service: Service) -> None:
    """`jobs-cleanup --dry-run` then for real: JSON summaries, exit 0."""
    job = add_job(simulator.store, actor="alice", created_at_ms=1)
    code, out, err = await cli(
        "jobs-cleanup",
        "--actor",
        "alice",
        "--older-than",
        "1d",
        "--dry-run",
        "--socket",
        str(service.socket),
    )
    assert (code, err) == (0, "")
    assert json.loads(out)["job_ids"] == [job]
    assert simulator.store.jobs
    code, out, _ = await cli("jobs-cleanup", "--actor", "alice", "--socket", str(service.socket))
    assert code == 0
    assert json.loads(out)["jobs_deleted"] == 1
    assert not simulator.store.jobs


async def test_list_submit_stats_and_history(simulator: Simulator, service: Service) -> None:
    """The read commands and submission print their results."""
    sock = str(service.socket)
    code, out, _ = await cli(
        "jobs-submit",
        "--kind",
        "user",
        "--actor",
        "bob",
        "--script",
        "s",
        "--input",
        '{"a": 1}',
        "--socket",
        sock,
    )
    assert code == 0
    job_id = json.loads(out)["job_id"]
    code, out, _ = await cli("jobs-list", "--actor", "bob", "--socket", sock)
    assert [j["id"] for j in json.loads(out)["jobs"]] == [job_id]
    code, out, _ = await cli("stats", "--socket", sock)
    assert json.loads(out)["codescaler"]["jobs"] == 1
    await cli("jobs-cleanup", "--socket", sock)
    code, out, _ = await cli("cleanup-history", "--socket", sock)
    assert json.loads(out)["runs"][0]["jobs_deleted"] == 1


async def test_cleanup_reason_and_history_filters(simulator: Simulator, service: Service) -> None:
    """--reason is kept with the run; cleanup-history pages (--cursor) and filters
    (--outcome, --policy, --dry-run/--no-dry-run)."""
    sock = str(service.socket)
    seed_population(simulator.store, 10)
    code, _, _ = await cli("jobs-cleanup", "--dry-run", "--reason", "look first", "--socket", sock)
    assert code == 0
    code, _, _ = await cli("jobs-cleanup", "--reason", "ticket 7", "--socket", sock)
    assert code == 0

    async def runs(*args: str) -> dict[str, Any]:
        code, out, err = await cli("cleanup-history", *args, "--socket", sock)
        assert code == 0, err
        result: dict[str, Any] = json.loads(out)
        return result

    newest = await runs("--limit", "1")
    assert [r["reason"] for r in newest["runs"]] == ["ticket 7"]
    older = await runs("--limit", "1", "--cursor", newest["next_cursor"])
    assert [r["reason"] for r in older["runs"]] == ["look first"]
    assert older["next_cursor"] is None
    assert [r["reason"] for r in (await runs("--dry-run"))["runs"]] == ["look first"]
    assert [r["reason"] for r in (await runs("--no-dry-run"))["runs"]] == ["ticket 7"]
    assert len((await runs("--outcome", "ok", "--policy", "manual"))["runs"]) == 2
    assert (await runs("--outcome", "interrupted"))["runs"] == []
    code, _, err = await cli("cleanup-history", "--outcome", "fine", "--socket", sock)
    assert code == 2
    assert "'fine' is not one of" in err


async def cli_without_hero_proc(sock_dir: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI against a service (the caller an admin) whose hero_proc is not there."""
    settings = Settings(
        socket=sock_dir / "svc.sock",
        hero_proc_socket=sock_dir / "none.sock",
        admin_uids={os.getuid()},
    )
    svc, runner, sock, _ = await start_service(settings)
    try:
        return await cli(*args, "--socket", str(svc.socket))
    finally:
        await runner.cleanup()
        sock.close()


async def test_rpc_errors_exit_1_with_one_line(sock_dir: Path) -> None:
    """hero_proc unavailable: exit 1 and one line on stderr naming the error and the socket."""
    code, out, err = await cli_without_hero_proc(sock_dir, "jobs-cleanup")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("hero_codescalers: hero_proc unavailable (-32020): ")
    assert str(sock_dir / "none.sock") in err


async def test_invalid_params_exit_1(service: Service) -> None:
    """A name the service refuses is reported with the field, exit 1."""
    code, _, err = await cli(
        "jobs-cleanup", "--actor", "kind_user", "--socket", str(service.socket)
    )
    assert code == 1
    assert err.startswith('hero_codescalers: Invalid params (-32602): "actor: ')


async def test_health_exits_4_when_degraded(sock_dir: Path) -> None:
    """The service answers but hero_proc does not: the health JSON, exit 4."""
    code, out, err = await cli_without_hero_proc(sock_dir, "health")
    assert (code, err) == (4, "")
    assert json.loads(out)["status"] == "degraded"


async def test_health_exits_0_when_ok(service: Service) -> None:
    """hero_proc answers: exit 0."""
    code, out, _ = await cli("health", "--socket", str(service.socket))
    assert code == 0
    assert json.loads(out)["status"] == "ok"


async def test_a_cleanup_that_stops_short_exits_4(simulator: Simulator, service: Service) -> None:
    """Past its deadline the run is partial (`complete: false`): summary printed, exit 4."""
    seed_population(simulator.store, 40)
    service.engine.page_size = 4
    service.engine.deadline = 0.05
    simulator.store.faults = Faults(latency_ms=20)
    code, out, _ = await cli("jobs-cleanup", "--socket", str(service.socket))
    assert code == 4
    assert json.loads(out)["complete"] is False


async def test_preview_then_apply_the_plan_and_bound_a_run(
    simulator: Simulator, service: Service
) -> None:
    """`jobs-cleanup --dry-run` prints the plan id; `--plan ID` deletes that plan's jobs
    (not one made since); `--max-jobs N` deletes N and says more remain, exit 0; the plan
    applied again exits 1 naming why."""
    sock = str(service.socket)
    planned = [add_job(simulator.store, actor="alice") for _ in range(2)]
    code, out, err = await cli("jobs-cleanup", "--actor", "alice", "--dry-run", "--socket", sock)
    assert (code, err) == (0, "")
    plan = json.loads(out)["plan_id"]
    assert isinstance(plan, str)
    since = [add_job(simulator.store, actor="alice") for _ in range(3)]
    code, out, err = await cli("jobs-cleanup", "--plan", plan, "--reason", "ok'd", "--socket", sock)
    assert (code, err) == (0, "")
    assert json.loads(out)["job_ids"] == planned
    code, out, err = await cli("jobs-cleanup", "--max-jobs", "2", "--socket", sock)
    assert (code, err) == (0, "")
    summary = json.loads(out)
    assert (summary["job_ids"], summary["has_more"]) == (since[:2], True)
    assert set(simulator.store.jobs) == {since[2]}
    code, out, err = await cli("jobs-cleanup", "--plan", plan, "--socket", sock)
    assert (code, out) == (1, "")
    assert err.startswith("hero_codescalers: Plan unusable (-32014): ")
    assert '"reason": "applied"' in err or "'reason': 'applied'" in err
    code, _, err = await cli("jobs-cleanup", "--max-jobs", "0", "--socket", sock)
    assert code == 2
    assert "--max-jobs" in err
