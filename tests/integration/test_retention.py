"""Retention policies as an operator meets them: `retention.list` and `retention.run` on the
socket, a policy's selection (finished jobs only, never a kept one), the global dry-run
switch, the orphan-action sweep, and the `serve` process: a bad file at start, SIGHUP,
a short `every` firing, and a cleanup killed mid-way whose actions the next one sweeps."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from hero_codescalers.simulator import Simulator, seed_population
from hero_codescalers.tags import KEEP_TAG, action_name, action_tags, job_tags
from hero_codescalers.transport import POLICY as ADMIN_POLICY
from hero_codescalers.transport import reload

from ..conftest import Caller, ServiceFactory
from .population import DAY, NOW, add_job
from .test_processes import command, service_env
from .test_state import HoldListing, metrics_text

POLICY = """\
[policies.finished]
kind = "user"
finished_older_than = "1d"
every = "1h"
enabled = false
"""


def policies_file(tmp_path: Path, text: str = POLICY) -> Path:
    path = tmp_path / "policies.toml"
    path.write_text(text)
    return path


def finished_job(simulator: Simulator, status: str = "succeeded", **fields: Any) -> int:
    """A user job of alice that finished two days before NOW (unless told otherwise)."""
    job_id = add_job(simulator.store, status=status, created_at_ms=NOW - 3 * DAY, **fields)
    simulator.store.jobs[job_id]["finished_at_ms"] = NOW - 2 * DAY
    return job_id


async def serving(make_service: ServiceFactory, tmp_path: Path, **settings: Any) -> Caller:
    """A service serving POLICY, its clock at NOW; a caller of it."""
    svc = await make_service(policies=policies_file(tmp_path), **settings)
    svc.engine.clock = lambda: NOW
    return Caller(svc.socket)


@pytest.fixture
async def caller(make_service: ServiceFactory, tmp_path: Path) -> Caller:
    return await serving(make_service, tmp_path)


# retention.list and retention.run ----------------------------------------------------


async def test_a_policy_run_deletes_finished_jobs_only_never_a_kept_one(
    simulator: Simulator, caller: Caller
) -> None:
    """Of alice's user jobs, the policy takes those finished more than a day ago: not the
    pending or running ones, not one finished an hour ago, not one tagged codescaler_keep,
    not another kind's. The run is recorded with the policy, the caller and the reason."""
    old = [finished_job(simulator, s) for s in ("succeeded", "failed", "cancelled")]
    kept = finished_job(simulator, extra_tags=[*job_tags("alice", None), KEEP_TAG])
    recent = finished_job(simulator)
    simulator.store.jobs[recent]["finished_at_ms"] = NOW - 3_600_000
    pending = add_job(simulator.store, status="pending", created_at_ms=NOW - 3 * DAY)
    running = add_job(simulator.store, status="running", created_at_ms=NOW - 3 * DAY)
    other_kind = finished_job(simulator, kind="service")
    summary = await caller.call(
        "retention.run", {"name": "finished", "reason": "trying the policy"}
    )
    assert sorted(summary["job_ids"]) == old
    assert summary["jobs_deleted"] == 3
    assert set(simulator.store.jobs) == {kept, recent, pending, running, other_kind}
    [run] = (await caller.call("jobs.cleanup_history", {}))["runs"]
    assert (run["policy"], run["peer_uid"], run["peer_pid"], run["reason"]) == (
        "finished",
        os.getuid(),
        os.getpid(),
        "trying the policy",
    )
    assert run["params"] == {
        "kind": "user",
        "statuses": ["succeeded", "failed", "cancelled"],
        "finished_older_than_ms": DAY,
    }


async def test_retention_list_shows_the_policy_and_its_last_run(
    simulator: Simulator, caller: Caller
) -> None:
    finished_job(simulator)
    [before] = (await caller.call("retention.list"))["policies"]
    assert before["name"] == "finished"
    assert before["enabled"] is False
    assert before["next_due_ms"] is None  # disabled: never due
    assert before["every_ms"] == 3_600_000
    assert before["last_run"] is None
    summary = await caller.call("retention.run", {"name": "finished", "dry_run": True})
    listing = await caller.call("retention.list")
    [after] = listing["policies"]
    assert after["last_run"]["run_id"] == summary["run_id"]
    assert after["last_run"]["dry_run"] is True
    assert after["running"] is False
    assert listing["file"].endswith("policies.toml")
    assert listing["dry_run_switch"] is False


async def test_an_unknown_policy_is_invalid_params_naming_it(caller: Caller) -> None:
    error = await caller.error("retention.run", {"name": "nightly"})
    assert error["code"] == -32602
    assert "no retention policy 'nightly' (policies: finished)" in error["data"]


async def test_the_dry_run_switch_holds_for_a_run_asked_for(
    simulator: Simulator, make_service: ServiceFactory, tmp_path: Path
) -> None:
    """HERO_CODESCALERS_POLICIES_DRY_RUN: retention.run without dry_run still deletes
    nothing, and says it was a dry run."""
    caller = await serving(make_service, tmp_path, policies_dry_run=True)
    job = finished_job(simulator)
    summary = await caller.call("retention.run", {"name": "finished"})
    assert summary["dry_run"] is True
    assert summary["job_ids"] == [job]
    assert job in simulator.store.jobs
    assert (await caller.call("retention.list"))["dry_run_switch"] is True


# The orphan-action sweep -------------------------------------------------------------


def orphan(simulator: Simulator, name: str) -> tuple[str, None]:
    action = action_name("user", name)
    simulator.store.action_set(
        {"name": action, "spec": {"script": "x", "tags": action_tags("user")}}
    )
    return (action, None)


async def test_an_unfiltered_cleanup_sweeps_orphan_actions_a_filtered_one_does_not(
    simulator: Simulator, caller: Caller
) -> None:
    lone = orphan(simulator, "lone")
    finished_job(simulator, kind="service")
    summary = await caller.call("jobs.cleanup", {"kind": "service"})
    assert summary["orphan_actions_deleted"] == 0
    assert lone in simulator.store.actions
    dry = await caller.call("jobs.cleanup", {"dry_run": True})
    assert dry["orphan_actions_deleted"] == 0
    assert lone in simulator.store.actions
    summary = await caller.call("jobs.cleanup", {})
    assert summary["orphan_actions_deleted"] == 1
    assert summary["complete"] is True
    assert lone not in simulator.store.actions
    [run, *_] = (await caller.call("jobs.cleanup_history", {}))["runs"]
    assert run["outcome"] == "ok"


async def test_a_policy_sweeps_orphans_only_when_it_says_so(
    simulator: Simulator, make_service: ServiceFactory, tmp_path: Path
) -> None:
    text = POLICY + '\n[policies.sweeping]\nkind = "none"\nevery = "1h"\n'
    text += "enabled = false\norphan_actions = true\n"
    svc = await make_service(policies=policies_file(tmp_path, text))
    caller = Caller(svc.socket)
    lone = orphan(simulator, "lone")
    assert (await caller.call("retention.run", {"name": "finished"}))["orphan_actions_deleted"] == 0
    assert lone in simulator.store.actions
    summary = await caller.call("retention.run", {"name": "sweeping"})
    assert summary["jobs_matched"] == 0  # its filters select nothing; the sweep is not narrowed
    assert summary["orphan_actions_deleted"] == 1
    assert lone not in simulator.store.actions


# The serve process ---------------------------------------------------------------------


async def test_a_bad_policies_file_stops_the_start_in_one_line(
    sock_dir: Path, simulator: Simulator, tmp_path: Path
) -> None:
    path = policies_file(tmp_path, '[policies.weekly]\nevery = "1h"\nstatuses = ["done"]\n')
    env = service_env(sock_dir, simulator, HERO_CODESCALERS_POLICIES=str(path))
    async with command("serve", env=env) as proc:
        assert await proc.process.wait() == 2
        assert proc.process.stderr is not None
        err = (await proc.process.stderr.read()).decode()
    assert err.count("\n") == 1
    assert err.startswith(f"hero_codescalers: {path}: policy 'weekly', field 'statuses.0': ")
    assert not (sock_dir / "hero_codescalers" / "rpc.sock").exists()


async def test_sighup_reloads_the_policies_and_keeps_them_when_the_file_is_bad(
    sock_dir: Path, simulator: Simulator, tmp_path: Path
) -> None:
    path = policies_file(tmp_path)
    env = service_env(sock_dir, simulator, HERO_CODESCALERS_POLICIES=str(path))
    caller = Caller(sock_dir / "hero_codescalers" / "rpc.sock")

    async def names() -> list[str]:
        return [p["name"] for p in (await caller.call("retention.list"))["policies"]]

    async with command("serve", env=env) as proc:
        await proc.wait_for("service_started")
        assert await names() == ["finished"]
        path.write_text(POLICY.replace("[policies.finished]", "[policies.weekly]"))
        proc.process.send_signal(signal.SIGHUP)
        assert (await proc.wait_for("policies_reloaded"))["policies"] == ["weekly"]
        assert await names() == ["weekly"]
        path.write_text("[policies.broken]\n")
        proc.process.send_signal(signal.SIGHUP)
        failed = await proc.wait_for("policies_reload_failed")
        assert "policy 'broken', field 'every': Field required" in failed["error"]
        assert failed["kept"] == ["weekly"]
        assert await names() == ["weekly"]
        assert await proc.stop() == 0


async def test_a_policy_every_two_seconds_fires_again_and_again(
    sock_dir: Path, simulator: Simulator, tmp_path: Path
) -> None:
    """A real process, the wall clock: the policy fires at start (its jitter is at most a
    tenth of its period), then again about two seconds later, each run recorded."""
    path = policies_file(tmp_path, '[policies.often]\nevery = "2s"\n')
    env = service_env(sock_dir, simulator, HERO_CODESCALERS_POLICIES=str(path))
    async with command("serve", env=env) as proc:
        first = await proc.wait_for("cleanup_finished")
        second = await proc.wait_for("cleanup_finished")
        assert first["policy"] == second["policy"] == "often"
        assert first["run_id"] != second["run_id"]
        metrics = await metrics_text(sock_dir / "hero_codescalers" / "rpc.sock")
        fired = re.search(
            r'^hero_codescalers_policy_fires_total\{event="scheduled",policy="often"\} (\S+)$',
            metrics,
            re.MULTILINE,
        )
        assert fired is not None
        assert float(fired.group(1)) >= 2
        assert await proc.stop() == 0


async def test_a_cleanup_killed_mid_way_leaves_no_action_after_the_next_full_one(
    sock_dir: Path, simulator: Simulator
) -> None:
    """SIGKILL after the first page (12,000 jobs, many actions): the jobs of that page
    are gone and their actions stayed. The next full cleanup (a new process) deletes every
    codescaler job, and its sweep every codescaler action left: none stays behind."""
    seed_population(simulator.store, 12_000)
    hold = HoldListing(nth=2)
    simulator.hooks.append(hold)
    env = service_env(sock_dir, simulator)
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("serve", env=env) as first:
        await first.wait_for("service_started")
        call = asyncio.create_task(Caller(path).answer("jobs.cleanup", {}))
        await first.wait_for("cleanup_progress")
        await hold.entered.wait()
        first.process.kill()
        await first.process.wait()
        with pytest.raises(aiohttp.ClientError):
            await call
    simulator.hooks.remove(hold)
    hold.release.set()

    def codescaler_actions() -> set[str]:
        return {name for name, _ in simulator.store.actions if name.startswith("codescaler_")}

    before = codescaler_actions()
    assert before
    async with command("serve", env=env) as second:
        await second.wait_for("service_started")
        summary = await Caller(path).call("jobs.cleanup", {})
        assert summary["complete"] is True
        assert summary["orphan_actions_deleted"] > 0
        assert await second.stop() == 0
    assert codescaler_actions() == set()
    assert not any("codescaler" in job["tags"] for job in simulator.store.jobs.values())


async def test_a_reload_reads_the_token_file_again(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """SIGHUP's work (`transport.reload`): the relay token is the file's new one at once;
    a token file that cannot be read any more keeps the old token."""
    token = tmp_path / "token"
    token.write_text("first-secret-0123456789\n")
    token.chmod(0o600)
    svc = await make_service(token_file=token)
    policy = svc.app[ADMIN_POLICY]
    assert policy.token_matches("first-secret-0123456789")
    token.write_text("second-secret-0123456789\n")
    reload(svc.app)
    assert policy.token_matches("second-secret-0123456789")
    assert not policy.token_matches("first-secret-0123456789")
    token.unlink()
    with capture_logs() as logs:
        reload(svc.app)
    assert policy.token_matches("second-secret-0123456789")
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["token_reload_failed"]
