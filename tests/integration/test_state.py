"""The state database: the audit trail survives restarts and crashes, history pages and
filters, retention, the lease across processes, and a database that cannot serve."""

from __future__ import annotations

import asyncio
import ctypes
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from hero_codescalers.engine import CleanupRequest
from hero_codescalers.errors import CleanupRunning, StateUnavailable
from hero_codescalers.listener import listen
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator, seed_population
from hero_codescalers.state import FILE_NAME, RunStart, State
from hero_codescalers.state.runs import INTERRUPTED_ERROR
from hero_codescalers.state.schema import LATEST, MIGRATIONS
from hero_codescalers.tags import Selector
from hero_codescalers.transport import create_app, runner_for, start_site
from hero_codescalers.unixsock import remove_socket

from ..conftest import Caller, Service
from .peers import IS_ROOT
from .test_processes import HoldDeletes, Proc, _login_fd_limit, command, service_env

DAY_MS = 86_400_000


@asynccontextmanager
async def running(settings: Settings, clock: Any = None) -> AsyncIterator[Caller]:
    """The service of `settings` in this event loop (`clock` its wall time), a caller of it;
    stopped, its state database closed, on the way out."""
    sock, inode = listen(settings)
    runner = runner_for(create_app(settings, clock=clock))
    await runner.setup()
    try:
        await start_site(runner, sock)
        yield Caller(settings.socket)
    finally:
        await runner.cleanup()
        sock.close()
        remove_socket(settings.socket, inode)


class HoldListing:
    """A simulator hook that holds the `nth` job.list (the run's next page) until released."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.seen = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, method: str, params: dict[str, Any]) -> None:
        if method == "job.list":
            self.seen += 1
            if self.seen == self.nth:
                self.entered.set()
                await self.release.wait()


async def history(caller: Caller, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = await caller.call("jobs.cleanup_history", params)
    return result


# The record: before, during, after ---------------------------------------------------


async def test_a_run_is_recorded_before_its_first_deletion(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """While the first job.delete is held, the history already shows the run: who, why,
    params, not a dry run, no outcome yet; after it, its outcome and counts."""
    seed_population(simulator.store, 30)
    hold = HoldDeletes()
    simulator.hooks.append(hold)
    params = {"kind": "user", "reason": "disk pressure, OPS-12"}
    call = asyncio.create_task(caller.call("jobs.cleanup", params))
    await hold.entered.wait()
    [run] = (await history(caller))["runs"]
    assert run["outcome"] is None
    assert run["finished_at_ms"] is None
    assert run["duration_ms"] is None
    assert run["params"] == {"kind": "user"}
    assert run["reason"] == "disk pressure, OPS-12"
    assert run["dry_run"] is False
    assert run["policy"] is None
    assert (run["peer_uid"], run["peer_pid"]) == (os.getuid(), os.getpid())
    assert run["jobs_deleted"] == 0
    hold.release.set()
    summary = await call
    [done] = (await history(caller))["runs"]
    assert done["run_id"] == run["run_id"] == summary["run_id"]
    assert done["outcome"] == "ok"
    assert done["jobs_deleted"] == summary["jobs_deleted"] > 0
    assert done["actions_deleted"] == summary["actions_deleted"] > 0
    assert done["finished_at_ms"] >= done["started_at_ms"]
    assert done["errors_count"] == 0


async def test_history_survives_a_restart(settings: Settings, simulator: Simulator) -> None:
    """A service started again on the same state directory shows the runs of the last one."""
    seed_population(simulator.store, 20)
    async with running(settings) as caller:
        summary = await caller.call("jobs.cleanup", {"reason": "before the restart"})
    assert not (settings.state_dir / f"{FILE_NAME}-wal").exists()  # closed cleanly
    async with running(settings) as caller:
        [run] = (await history(caller))["runs"]
        assert run["run_id"] == summary["run_id"]
        assert run["reason"] == "before the restart"
        assert run["jobs_deleted"] == summary["jobs_deleted"] == 20
        assert run["outcome"] == "ok"


# A crash -----------------------------------------------------------------------------


async def test_a_run_killed_mid_way_is_interrupted_with_its_counts(
    sock_dir: Path, simulator: Simulator
) -> None:
    """SIGKILL after the first page's checkpoint (the second listing held): the next start
    marks the run interrupted with the counts of that checkpoint, and cleans at once."""
    seed_population(simulator.store, 12_000)  # two pages of 10,000
    hold = HoldListing(nth=2)
    simulator.hooks.append(hold)
    env = service_env(sock_dir, simulator)
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("serve", env=env) as first:
        await first.wait_for("service_started")
        call = asyncio.create_task(Caller(path).answer("jobs.cleanup", {"reason": "nightly"}))
        progress = await first.wait_for("cleanup_progress")
        await hold.entered.wait()  # the checkpoint is written before the next page
        first.process.kill()
        await first.process.wait()
        with pytest.raises(aiohttp.ClientError):
            await call
    simulator.hooks.remove(hold)
    hold.release.set()
    assert progress["jobs_deleted"] == 10_000
    async with command("serve", env=env) as second:
        cut = await second.wait_for("cleanup_interrupted")
        await second.wait_for("service_started")
        caller = Caller(path)
        [run] = (await history(caller))["runs"]
        assert run["run_id"] == cut["run_id"] == progress["run_id"]
        assert run["outcome"] == "interrupted"
        assert run["error"] == INTERRUPTED_ERROR
        assert run["reason"] == "nightly"
        assert (run["jobs_matched"], run["jobs_deleted"]) == (10_000, 10_000)
        assert run["finished_at_ms"] >= run["started_at_ms"]
        # The lease of the killed process does not hold the next run up.
        summary = await caller.call("jobs.cleanup", {})
        assert summary["jobs_deleted"] == 2_000
        outcomes = [r["outcome"] for r in (await history(caller))["runs"]]
        assert outcomes == ["ok", "interrupted"]
        assert await second.stop() == 0


# The lease ---------------------------------------------------------------------------


async def test_two_processes_on_one_state_directory_never_clean_at_once(
    sock_dir: Path, simulator: Simulator
) -> None:
    """While one service process cleans, another sharing its state directory answers
    -32011 naming the process that holds the lease and the run it holds it for (dry runs
    too); once the run ends and releases the lease, the other cleans."""
    seed_population(simulator.store, 40)
    hold = HoldDeletes()
    simulator.hooks.append(hold)
    a_path, b_path = sock_dir / "a.sock", sock_dir / "b.sock"
    env = service_env(sock_dir, simulator)
    async with (
        command("serve", "--socket", str(a_path), env=env) as a,
        command("serve", "--socket", str(b_path), env=env) as b,
    ):
        await a.wait_for("service_started")
        await b.wait_for("service_started")
        call = asyncio.create_task(Caller(a_path).call("jobs.cleanup", {"kind": "user"}))
        await hold.entered.wait()
        [run] = (await history(Caller(b_path)))["runs"]
        for params in ({}, {"dry_run": True}):
            err = await Caller(b_path).error("jobs.cleanup", params)
            assert err["code"] == -32011
            assert err["data"]["holder_pid"] == a.process.pid
            assert "another hero_codescalers process" in err["data"]["reason"]
            held = {k: err["data"][k] for k in ("run_id", "started_at_ms", "peer_uid", "peer_pid")}
            assert held == {k: run[k] for k in held}  # the run holding the lease
            assert (err["data"]["policy"], err["data"]["background"]) == (None, False)
        hold.release.set()
        first = await call
        second = await Caller(b_path).call("jobs.cleanup", {})
        assert first["jobs_deleted"] + second["jobs_deleted"] == 40
        runs = (await history(Caller(b_path)))["runs"]
        assert [r["params"] for r in runs] == [{}, {"kind": "user"}]  # one shared history
        assert await a.stop() == 0
        assert await b.stop() == 0


async def test_a_lease_is_taken_over_only_once_expired(tmp_path: Path) -> None:
    """A holder this process cannot judge (another host) keeps the lease until it expires;
    then the next run takes it over, and the old holder's open run is interrupted, while
    the old holder learns at its next renewal that it lost the lease."""
    now = [1_000_000]
    old = await State.open(tmp_path, clock=lambda: now[0], lease_ttl_ms=60_000)
    old.holder = "elsewhere pid:[1] 42 cafe"
    new = await State.open(tmp_path, clock=lambda: now[0], lease_ttl_ms=60_000)
    try:
        await old.begin(RunStart("r-old", now[0], False, {}))
        await old.checkpoint("r-old", {"jobs_deleted": 7}, 0)
        now[0] += 59_999
        with pytest.raises(CleanupRunning, match="pid 42 on elsewhere"):
            await new.begin(RunStart("r-new", now[0], False, {}))
        assert await new.sweep() == []  # the old run still counts as going
        now[0] += 2
        [cut] = await new.begin(RunStart("r-new", now[0], False, {}))
        assert cut["run_id"] == "r-old"
        assert await old.renew() is False
        runs, _ = await new.history(limit=5)
        assert [(r["run_id"], r["outcome"]) for r in runs] == [
            ("r-new", None),
            ("r-old", "interrupted"),
        ]
        assert runs[1]["counts"] == {"jobs_deleted": 7}
    finally:
        await old.close()
        await new.close()


async def test_a_skipped_run_is_noted_without_the_lease(tmp_path: Path) -> None:
    """A run noted as skipped (a policy meeting a running cleanup) is complete at once, in
    the history, while another holds the lease; the last-run figures ignore it."""
    state = await State.open(tmp_path, lease_ttl_ms=60_000)
    other = await State.open(tmp_path, lease_ttl_ms=60_000)
    try:
        await other.begin(RunStart("r-real", state.clock(), False, {}))
        await other.finish(
            "r-real", outcome="ok", error=None, counts={}, errors_count=0, duration_ms=5
        )
        await other.begin(RunStart("r-going", state.clock(), False, {}))
        skipped = RunStart("r-skip", state.clock(), False, {}, policy="nightly")
        await state.note(skipped, "skipped", "a cleanup was running")
        runs, _ = await state.history(limit=5, outcome="skipped")
        assert [(r["run_id"], r["policy"], r["error"]) for r in runs] == [
            ("r-skip", "nightly", "a cleanup was running")
        ]
        assert runs[0]["finished_at_ms"] == runs[0]["started_at_ms"]
        assert [(r["policy"], r["outcome"]) for r in await state.last_finished()] == [(None, "ok")]
    finally:
        await state.close()
        await other.close()


# History: pages, filters, retention ---------------------------------------------------


async def test_history_pages_newest_first_and_filters(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """Pages follow the opaque cursor without gaps or repeats; outcome, policy and dry-run
    filters select exactly their runs."""
    seed_population(simulator.store, 10)
    await caller.call("jobs.cleanup", {"dry_run": True})
    await caller.call("jobs.cleanup", {"dry_run": True, "kind": "user"})
    simulator.store.faults.fail_rate = {"action.delete": 1.0}
    partial = await caller.call("jobs.cleanup", {"kind": "user"})
    simulator.store.faults.fail_rate = None
    await caller.call("jobs.cleanup", {})
    await service.engine.cleanup(
        CleanupRequest(Selector.build(), dry_run=True, params={}, policy="nightly")
    )
    everything = (await history(caller, limit=100))["runs"]
    assert len(everything) == 5
    pages, cursor = [], None
    while True:
        page = await history(caller, limit=2, **({"cursor": cursor} if cursor else {}))
        pages.append([r["run_id"] for r in page["runs"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [run_id for page in pages for run_id in page] == [r["run_id"] for r in everything]
    assert everything[0]["policy"] == "nightly"
    assert everything[0]["peer_uid"] is None

    def ids(**filters: Any) -> list[str]:
        return [r["run_id"] for r in everything if all(r[k] == v for k, v in filters.items())]

    async def found(**filters: Any) -> list[str]:
        return [r["run_id"] for r in (await history(caller, **filters))["runs"]]

    assert await found(outcome="partial") == [partial["run_id"]]
    assert await found(outcome="ok") == ids(outcome="ok")
    assert await found(dry_run=True) == ids(dry_run=True)
    assert len(await found(dry_run=True)) == 3
    assert await found(dry_run=False) == ids(dry_run=False)
    assert await found(policy="nightly") == ids(policy="nightly")
    assert await found(policy="manual") == ids(policy=None)
    assert await found(policy="manual", dry_run=True) == ids(policy=None, dry_run=True)
    assert len(await found(policy="manual", dry_run=True)) == 2
    assert await found(outcome="interrupted") == []


@pytest.mark.parametrize(
    ("params", "data"),
    [
        pytest.param({"cursor": "x1"}, "cursor: String should match pattern", id="cursor"),
        pytest.param(
            {"cursor": "9999999999999999999"},
            "cursor: String should match pattern",
            id="cursor-beyond-sqlite",
        ),
        pytest.param({"outcome": "fine"}, "outcome: Input should be 'ok'", id="outcome"),
        pytest.param({"policy": "a b"}, "policy: String should match pattern", id="policy"),
        pytest.param({"dry_run": "yes"}, "dry_run: Input should be a valid boolean", id="dry"),
    ],
)
async def test_history_filters_are_checked(
    caller: Caller, params: dict[str, Any], data: str
) -> None:
    """A malformed cursor or filter is -32602 naming it."""
    err = await caller.error("jobs.cleanup_history", params)
    assert err["code"] == -32602
    assert err["data"].startswith(data), err


async def test_history_older_than_its_retention_is_pruned(
    settings: Settings, simulator: Simulator
) -> None:
    """Runs that finished more than HERO_CODESCALERS_HISTORY_DAYS ago are dropped at the
    next start (a clock moved on), newer ones kept; the freed pages go back to the file
    system (incremental vacuum)."""
    now = [1_700_000_000_000]
    kept = settings.model_copy(update={"history_days": 30})
    async with running(kept, clock=lambda: now[0]) as caller:
        for _ in range(40):
            await caller.call("jobs.cleanup", {"dry_run": True, "reason": "x" * 500})
        now[0] += 20 * DAY_MS
        recent = await caller.call("jobs.cleanup", {"dry_run": True})
    database = settings.state_dir / FILE_NAME
    size_before = database.stat().st_size
    now[0] += 10 * DAY_MS + 1  # the first 40 ended just over 30 days ago
    with capture_logs() as logs:
        async with running(kept, clock=lambda: now[0]) as caller:
            runs = (await history(caller, limit=100))["runs"]
    assert [r["run_id"] for r in runs] == [recent["run_id"]]
    [pruned] = [e for e in logs if e["event"] == "history_pruned"]
    assert pruned["runs"] == 40
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
        assert db.execute("PRAGMA freelist_count").fetchone() == (0,)
    assert database.stat().st_size < size_before


# The reason --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "data"),
    [
        pytest.param("a\nb", "reason: control characters", id="newline"),
        pytest.param("tab\there", "reason: control characters", id="tab"),
        pytest.param("esc\x1b[31m", "reason: control characters", id="escape"),
        pytest.param("line\u2028sep", "reason: control characters", id="line-separator"),
        pytest.param("x" * 501, "reason: String should have at most 500 characters", id="long"),
        pytest.param("", "reason: String should have at least 1 character", id="empty"),
        pytest.param(5, "reason: Input should be a valid string", id="number"),
    ],
)
async def test_a_reason_is_one_bounded_line(
    simulator: Simulator, caller: Caller, reason: Any, data: str
) -> None:
    """A reason with a control character, longer than 500 characters, or empty is -32602;
    nothing is deleted or recorded."""
    seed_population(simulator.store, 5)
    err = await caller.error("jobs.cleanup", {"reason": reason})
    assert err["code"] == -32602
    assert err["data"].startswith(data), err
    assert len(simulator.store.jobs) == 5
    assert (await history(caller))["runs"] == []


async def test_a_reason_is_logged_and_stored(simulator: Simulator, caller: Caller) -> None:
    """500 characters of any printable text, logged on the run's lines and kept."""
    reason = "é✓ ticket #42 " + "x" * 486
    with capture_logs() as logs:
        summary = await caller.call("jobs.cleanup", {"reason": reason})
    [started] = [e for e in logs if e["event"] == "cleanup_started"]
    [finished] = [e for e in logs if e["event"] == "cleanup_finished"]
    assert started["reason"] == finished["reason"] == reason
    assert started["run_id"] == summary["run_id"]
    [run] = (await history(caller))["runs"]
    assert run["reason"] == reason


# Metrics -----------------------------------------------------------------------------


async def metrics_text(path: Path) -> str:
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
        session.get("http://localhost/metrics") as response,
    ):
        return await response.text()


def gauge(text: str, name: str) -> float | None:
    prefix = f'hero_codescalers_cleanup_last_run_{name}{{policy="manual"}} '
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(found[0].removeprefix(prefix)) if found else None


async def test_last_run_gauges_of_manual_runs(settings: Settings, simulator: Simulator) -> None:
    """A real run sets the last-run gauges of policy "manual" (a dry run does not); a
    restart restores them from the database."""
    now = [1_800_000_000_000]
    seed_population(simulator.store, 10)
    async with running(settings, clock=lambda: now[0]) as caller:
        await caller.call("jobs.cleanup", {"dry_run": True})
        assert gauge(await metrics_text(settings.socket), "success") is None
        simulator.store.faults.fail_rate = {"action.delete": 1.0}
        await caller.call("jobs.cleanup", {"kind": "user"})
        text = await metrics_text(settings.socket)
        assert gauge(text, "success") == 0
        simulator.store.faults.fail_rate = None
        now[0] += 1_000
        summary = await caller.call("jobs.cleanup", {})
        text = await metrics_text(settings.socket)
        assert gauge(text, "success") == 1
        assert gauge(text, "timestamp_seconds") == now[0] / 1000
        assert gauge(text, "duration_seconds") == summary["duration_ms"] / 1000
    async with running(settings, clock=lambda: now[0]):
        text = await metrics_text(settings.socket)
        assert gauge(text, "success") == 1
        assert gauge(text, "timestamp_seconds") == now[0] / 1000


# A database that cannot serve ----------------------------------------------------------


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")


def _newer(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
        db.execute("CREATE TABLE runs_v2 (x)")


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 200)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        pytest.param(
            _garbage,
            "not a usable SQLite database (file is not a database); move it aside",
            id="not-a-database",
        ),
        pytest.param(
            _newer,
            f"its schema is version {LATEST + 1}, newer than this hero_codescalers knows "
            f"({LATEST}); run the newer hero_codescalers that wrote it, or move the file aside",
            id="newer-schema",
        ),
        pytest.param(
            _foreign,
            "a SQLite database, but not hero_codescalers' state; move it aside",
            id="foreign-database",
        ),
    ],
)
async def test_a_database_that_cannot_serve_stops_the_start(
    sock_dir: Path, simulator: Simulator, make: Any, problem: str
) -> None:
    """One line naming the file, what is wrong and what to do; exit 2; no socket left."""
    state = sock_dir / "state"
    state.mkdir()
    make(state / FILE_NAME)
    async with command("serve", env=service_env(sock_dir, simulator)) as svc:
        out, err = await svc.process.communicate()
    text = err.decode()
    assert svc.process.returncode == 2, text
    assert text.count("\n") == 1, text
    assert text.startswith(f"hero_codescalers: state database {state / FILE_NAME}: {problem}")
    assert out == b""
    assert not (sock_dir / "hero_codescalers" / "rpc.sock").exists()


async def test_an_uncreatable_state_directory_stops_the_start(
    sock_dir: Path, simulator: Simulator
) -> None:
    """A state directory under a plain file: one line, exit 2."""
    (sock_dir / "file").write_text("x")
    env = service_env(sock_dir, simulator, HERO_CODESCALERS_STATE_DIR=str(sock_dir / "file/s"))
    async with command("serve", env=env) as svc:
        _, err = await svc.process.communicate()
    text = err.decode()
    assert svc.process.returncode == 2, text
    assert text == (
        f"hero_codescalers: state database {sock_dir / 'file/s' / FILE_NAME}: cannot create its "
        f"directory {sock_dir / 'file/s'}: Not a directory; set HERO_CODESCALERS_STATE_DIR (or "
        "--state-dir) to a directory this user may create or write\n"
    )


PR_CAPBSET_DROP = 24
# CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: without them root meets file modes.
FILE_CAPABILITIES = (1, 2, 3)


def _as_an_ordinary_user() -> None:
    """In the child: root's capabilities to ignore file modes dropped before exec (so the
    service, even as root, cannot write a read-only file), and a login's fd limit."""
    _login_fd_limit()
    if IS_ROOT:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in FILE_CAPABILITIES:
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


async def test_a_read_only_database_refuses_real_cleanups_only(
    sock_dir: Path, simulator: Simulator
) -> None:
    """state.db made read-only (mode 0444) after a first run: the service starts with a
    warning, a real cleanup is refused with -32013 (nothing deleted), a dry run and the
    history still answer."""
    seed_population(simulator.store, 20)
    env = service_env(sock_dir, simulator)
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("serve", env=env) as first:
        await first.wait_for("service_started")
        await Caller(path).call("jobs.cleanup", {"kind": "user", "reason": "first"})
        assert await first.stop() == 0
    database = sock_dir / "state" / FILE_NAME
    database.chmod(0o444)
    left = len(simulator.store.jobs)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hero_codescalers",
        "serve",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        preexec_fn=_as_an_ordinary_user,
    )
    svc = Proc(process)
    try:
        warning = await svc.wait_for("state_read_only")
        assert warning["path"] == str(database)
        await svc.wait_for("service_started")
        caller = Caller(path)
        err = await caller.error("jobs.cleanup", {})
        assert err["code"] == -32013
        assert err["message"] == "State database unavailable"
        assert err["data"]["path"] == str(database)
        assert "readonly" in err["data"]["reason"]
        assert len(simulator.store.jobs) == left
        dry = await caller.call("jobs.cleanup", {"dry_run": True})
        assert dry["jobs_matched"] == left > 0
        [run] = (await history(caller))["runs"]
        assert run["reason"] == "first"
        assert await svc.stop() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_run_stops_when_its_record_cannot_be_kept(
    simulator: Simulator, service: Service, caller: Caller
) -> None:
    """The database becomes unwritable mid-run: the run stops at its next step rather than
    go on without a checkpoint, and says why."""
    seed_population(simulator.store, 30)
    service.engine.page_size = 10
    state = service.engine.state
    real = state.checkpoint

    async def failing(*args: Any) -> bool:
        raise StateUnavailable(str(state.path), "disk I/O error")

    state.checkpoint = failing  # type: ignore[method-assign]
    summary = await caller.call("jobs.cleanup", {})
    assert summary["complete"] is False
    assert summary["jobs_deleted"] == 10
    assert any("the state database cannot be written" in e for e in summary["errors"])
    [run] = (await history(caller))["runs"]
    assert run["outcome"] == "partial"
    state.checkpoint = real  # type: ignore[method-assign]


async def test_processes_starting_together_on_a_new_file_migrate_it_once(tmp_path: Path) -> None:
    """Several openings of a file that does not exist yet, at once: each serves, the
    schema is made once."""
    states = await asyncio.gather(*(State.open(tmp_path, lease_ttl_ms=60_000) for _ in range(8)))
    try:
        for state in states:
            assert await state.history(limit=1) == ([], None)
    finally:
        for state in states:
            await state.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (LATEST,)


async def test_a_database_of_the_first_schema_is_migrated_keeping_its_runs(
    tmp_path: Path,
) -> None:
    """A file written by the first schema (runs and leases, no policy fires) opens at the
    latest version with its runs intact (not background, never cancelled), and the policy
    fires and the tombstones can then be kept."""
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO runs (run_id, holder, params, dry_run, started_at_ms, updated_at_ms, "
            "finished_at_ms, outcome) VALUES ('old', 'h', '{}', 0, 1, 2, 3, 'ok')"
        )
    db.close()
    state = await State.open(tmp_path, lease_ttl_ms=60_000)
    try:
        found, _ = await state.history(limit=5)
        assert [run["run_id"] for run in found] == ["old"]
        assert (found[0]["background"], found[0]["cancelled_by"]) == (False, None)
        assert await state.fires() == {}
        await state.fired("users", 1_000)
        await state.fired("users", 2_000)
        assert await state.fires() == {"users": 2_000}
    finally:
        await state.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (LATEST,) == (5,)
    db.close()


async def test_a_database_of_the_second_schema_is_migrated_keeping_its_fires(
    tmp_path: Path,
) -> None:
    """A file written by the second schema (policy fires, no plans) opens at the latest
    version with its fires intact, and keeps plans from then on."""
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
            db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        db.execute("INSERT INTO fires (policy, fired_at_ms) VALUES ('users', 5)")
    db.close()
    state = await State.open(tmp_path, clock=lambda: 1_000, lease_ttl_ms=60_000)
    try:
        assert await state.fires() == {"users": 5}
        await state.save_plan(
            "00000000000000aa",
            run_id="r",
            params={"kind": "user"},
            created_at_ms=1_000,
            expires_at_ms=2_000,
            job_ids=[3, 1, 2],
        )
        plan = await state.plan("00000000000000aa")
        assert (plan.params, plan.job_ids) == ({"kind": "user"}, frozenset({1, 2, 3}))
    finally:
        await state.close()
