"""Cleanup at scale: the specification's algorithm, the practical limit, and the service.

    python -m tests.bench.cleanup_bench [--jobs 100000] [--reps 3] [--modes cheap,slow,nobatch]
    python -m tests.bench.cleanup_bench --keep-last 5 [--select '{"statuses": ["failed"]}']

The simulator runs in its own process, the service in its own, this script is
the caller. Before every measurement the simulator is reset and seeded
identically: `--jobs` codescaler jobs (about ten per action) plus a tenth as
many unrelated and look-alike jobs. Then, for each simulator mode:

- seed:    the algorithm of jobs-cleanup-spec.txt as written: list with limit
           10,000 (repeated until nothing is left, so it finishes), one
           `job.delete` per request, sequentially, then one `action.delete` each;
- limit:   a raw client, no service in between, deleting the same jobs and
           actions the fastest way the contract allows: JSON-RPC batches and
           concurrency (without batch support: concurrent single calls). Its
           batch size and concurrency are calibrated per mode on a smaller run;
- service: `jobs.cleanup` through the service's socket, end to end;
- background: the same run started with `jobs.cleanup_start` and watched as a
           progress bar would watch it (`jobs.cleanup_status` every
           `STATUS_EVERY_S`) until done; its summary read from the last status.
           Its runs alternate with the service's, and a line gives the ratio of
           their CPU time per job (background/service): the median of the ratios
           of each pair of runs made one after the other (a shared machine's load
           changes slowly, and weighs on both runs of a pair alike), then the
           ratio of the medians and of the least of each.

On a shared machine a run's CPU time varies by a third from one run to the next,
more than a background run could add. `--instructions` (needs valgrind) then
also counts the instructions the service executes (callgrind) for one
foreground and one background run of each mode, deterministic where CPU time is
not: the service runs under callgrind for them, some fifty times slower, so the
background run's status is asked as many times as in the runs above (their wall
time over `STATUS_EVERY_S`), spread evenly over its run.

Modes: `cheap` (no faults), `slow` (`latency_ms: 1`: every call 1 ms, a
batch's calls one after another), `nobatch` (`batch: false`). The table shows
jobs/s (codescaler jobs deleted per second, their actions included in the time),
wall time, the service's peak RSS growth and the service's CPU time (user +
system, read from /proc) per job deleted; the last line is JSON with every
figure (medians of `--reps`) and the ratios service/seed and service/limit.

With `--select PARAMS` (a JSON object of `jobs.cleanup` params) or `--keep-last N`
(the same as `--select '{"keep_last": N}'`, merged with it), each mode compares
two service runs instead: `service`, the plain cleanup of every codescaler job
(the page walk alone), and `select`, the cleanup with those params (with
`keep_last`, its reading of the whole listing first). CPU per job is then per
codescaler job seeded (every one is listed, deleted or not); each run has a
service process of its own, whose peak RSS (VmHWM) is the run's. A `keep_last`
run without other params is checked to leave exactly N jobs in each (kind,
actor, target) group.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import itertools
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .processes import cpu_seconds, hero, start, stop_all

MODES: dict[str, dict[str, Any]] = {
    "cheap": {},
    "slow": {"latency_ms": 1},
    "nobatch": {"batch": False},
}
# (batch size, requests in flight) tried for the limit; 1 = single calls.
LIMIT_CANDIDATES: dict[str, list[tuple[int, int]]] = {
    "cheap": [(1000, 2), (1000, 4), (500, 8), (2000, 2)],
    "slow": [(50, 64), (100, 64), (25, 128), (50, 256)],
    "nobatch": [(1, 16), (1, 64), (1, 128)],
}
URL = "http://localhost/rpc"
STATUS_EVERY_S = 0.2  # how often the background run's status is asked (a progress bar's pace)
JSON = {"Content-Type": "application/json"}


class Rpc:
    """A raw JSON-RPC client of a Unix socket: one keep-alive session."""

    def __init__(self, socket: Path, connections: int = 256) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(socket), limit=connections),
            timeout=aiohttp.ClientTimeout(total=3600),
        )
        self.ids = itertools.count(1)

    async def close(self) -> None:
        await self.session.close()

    async def post(self, payload: Any) -> Any:
        async with self.session.post(URL, data=orjson.dumps(payload), headers=JSON) as resp:
            body = await resp.read()
        return orjson.loads(body) if body else None

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        answer = await self.post(
            {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params or {}}
        )
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def many(self, calls: list[tuple[str, dict[str, Any]]], batch: int, inflight: int) -> int:
        """Send `calls` as batches of `batch` (1: single calls), `inflight` requests at once;
        how many were answered with an error (the least a client must know)."""
        gate = asyncio.Semaphore(inflight)
        failed = 0

        async def send(chunk: list[tuple[str, dict[str, Any]]]) -> None:
            nonlocal failed
            async with gate:
                if batch == 1:
                    method, params = chunk[0]
                    one = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
                    failed += "error" in await self.post(one)
                else:
                    answers = await self.post(
                        [
                            {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                            for i, (m, p) in enumerate(chunk)
                        ]
                    )
                    failed += sum("error" in a for a in answers)

        await asyncio.gather(*(send(calls[i : i + batch]) for i in range(0, len(calls), batch)))
        return failed


async def seed_algorithm(hp: Rpc) -> None:
    """jobs-cleanup-spec.txt as written (its list repeated until empty so that it finishes)."""
    while True:
        jobs = await hp.call("job.list", {"filter": {"tag": "codescaler", "limit": 10_000}})
        matched = [j for j in jobs if "codescaler" in (j.get("tags") or [])]
        if not matched:
            return
        actions = {j["action_id"] for j in matched}
        for job in matched:
            await hp.post(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "job.delete",
                    "params": {"id": job["id"], "force": True},
                }
            )
        for name in actions:
            await hp.post(
                {"jsonrpc": "2.0", "id": 1, "method": "action.delete", "params": {"name": name}}
            )


async def limit_algorithm(hp: Rpc, batch: int, inflight: int) -> None:
    """The service's algorithm with none of its bookkeeping nor checks: page through the
    codescaler jobs, each page's deletions (as batches or concurrent calls) sent a slice
    at a time while the next slice is picked, all done before the next page."""
    actions: set[str] = set()
    offset = 0
    while True:
        flt = {"tag": "codescaler", "limit": 10_000, "offset": offset}
        jobs = await hp.call("job.list", {"filter": flt})
        sending = []
        matched = 0
        for first in range(0, len(jobs), 2_000):
            mine = [j for j in jobs[first : first + 2_000] if "codescaler" in (j.get("tags") or [])]
            matched += len(mine)
            actions.update(j["action_id"] for j in mine)
            deletes = [("job.delete", {"id": j["id"], "force": True}) for j in mine]
            sending.append(asyncio.create_task(hp.many(deletes, batch, inflight)))
            for _ in range(4):
                await asyncio.sleep(0)
        await asyncio.gather(*sending)
        offset += len(jobs) - matched
        if len(jobs) < 10_000:
            break
    await hp.many([("action.delete", {"name": a}) for a in sorted(actions)], batch, inflight)


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of process `pid` in kB: VmRSS (resident now), VmHWM (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


async def peak_rss_while(pid: int, work: Awaitable[Any]) -> tuple[Any, int]:
    """Run `work`, sampling `pid`'s RSS every 10 ms; its result and the peak growth in kB."""
    base = rss_kb(pid)
    peak = base
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            peak = max(peak, rss_kb(pid))
        except FileNotFoundError:
            task.cancel()
            raise RuntimeError(f"process {pid} ended during the run") from None
        await asyncio.wait({task}, timeout=0.01)
    return task.result(), peak - base


class Bench:
    def __init__(self, scratch: Path, jobs: int) -> None:
        self.scratch = scratch
        self.jobs = jobs
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERO_")}
        env.update(
            HERO_SOCKET_DIR=str(self.scratch),
            HERO_CODESCALERS_STATE_DIR=str(self.scratch / "state"),
            HERO_CODESCALERS_LOG_FORMAT="json",
        )
        self.sim = await start(hero("simulator"), env, b"simulator_started")
        self.procs.append(self.sim)
        env["HERO_CODESCALERS_HERO_PROC_TIMEOUT"] = "120"
        self.env = env
        self.service = await start(hero("serve"), env, b"service_started")
        self.procs.append(self.service)
        self.hp = Rpc(self.scratch / "hero_proc" / "rpc.sock")
        self.svc = Rpc(self.scratch / "hero_codescalers" / "rpc.sock")

    async def restart_service(self, under: list[str] | None = None) -> None:
        """A fresh service process: its peak RSS (VmHWM) is then the next run's. `under`:
        a command line that runs it (callgrind's)."""
        await self.svc.close()
        self.service.send_signal(signal.SIGTERM)
        await self.service.wait()
        self.procs.remove(self.service)
        self.service = await start([*(under or []), *hero("serve")], self.env, b"service_started")
        self.procs.append(self.service)
        self.svc = Rpc(self.scratch / "hero_codescalers" / "rpc.sock")

    async def stop(self) -> None:
        await self.hp.close()
        await self.svc.close()
        await stop_all(self.procs)  # those still running: one may have ended on its own

    async def reseed(self, jobs: int, faults: dict[str, Any]) -> int:
        await self.hp.call("sim.faults", {})
        await self.hp.call("sim.reset")
        extra = max(1, jobs // 20)
        await self.hp.call(
            "sim.seed", {"codescaler": jobs, "unrelated": extra, "lookalike": extra, "seed": 1}
        )
        # Warm hero_proc's tag index, as a real one would have it, outside the timing.
        await self.hp.call("job.list", {"filter": {"tag": "codescaler", "limit": 1}})
        await self.hp.call("sim.faults", faults)
        return 2 * extra

    async def measure(
        self, jobs: int, faults: dict[str, Any], run: Callable[[], Awaitable[Any]]
    ) -> dict[str, float]:
        """Reseed, time `run` (which may return how many codescaler jobs it leaves), check
        that hero_proc holds what it should after it."""
        others = await self.reseed(jobs, faults)
        t0 = time.perf_counter()
        cpu0 = cpu_seconds(self.service.pid)
        kept, growth_kb = await peak_rss_while(self.service.pid, run())
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(self.service.pid) - cpu0
        await self.hp.call("sim.faults", {})
        left = await self.hp.call("stats")
        want = others + (kept or 0)
        if left["job_count"] != want:
            raise RuntimeError(f"{left['job_count']} jobs left, expected {want}")
        return {
            "seconds": wall,
            "jobs_per_s": jobs / wall,
            "rss_growth_mb": growth_kb / 1024,
            "peak_rss_mb": rss_kb(self.service.pid, "VmHWM") / 1024,
            "svc_cpu_us_per_job": cpu / jobs * 1e6,
        }

    async def service_cleanup(self) -> int:
        summary = await self.svc.call("jobs.cleanup", {})
        if summary["jobs_deleted"] + summary["jobs_already_gone"] != self.jobs or summary["errors"]:
            raise RuntimeError(f"service cleanup incomplete: {summary['jobs_deleted']} deleted")
        return 0

    async def background_cleanup(self, every: float = STATUS_EVERY_S) -> int:
        """The cleanup in the background, its status asked every `every` seconds until done."""
        started = await self.svc.call("jobs.cleanup_start", {})
        while True:
            await asyncio.sleep(every)
            status = await self.svc.call("jobs.cleanup_status", {"run_id": started["run_id"]})
            if status["phase"] == "done":
                break
        summary = status["summary"]
        if summary["jobs_deleted"] + summary["jobs_already_gone"] != self.jobs or summary["errors"]:
            raise RuntimeError(f"background cleanup incomplete: {summary['jobs_deleted']} deleted")
        return 0

    async def instructions(self, faults: dict[str, Any], polls: int) -> dict[str, Any]:
        """Instructions the service executes per job (callgrind) in a foreground run, and in
        a background run whose status is asked `polls` times, evenly over its run."""
        out = self.scratch / "callgrind.out"
        await self.restart_service(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
        )
        pid = self.service.pid

        async def counted(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
            await self.reseed(self.jobs, faults)
            await _callgrind("-z", pid)
            t0 = time.perf_counter()
            await work()
            wall = time.perf_counter() - t0
            await _callgrind("-d", pid)
            dump = max(self.scratch.glob(f"callgrind.out.{pid}.*"), key=lambda f: f.stat().st_mtime)
            for line in dump.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1]) / self.jobs, wall
            raise RuntimeError(f"no instruction count in {dump}")

        foreground, wall = await counted(self.service_cleanup)
        background, _ = await counted(
            functools.partial(self.background_cleanup, wall / max(polls, 1))
        )
        await self.restart_service()
        return {
            "service_ir_per_job": round(foreground),
            "background_ir_per_job": round(background),
            "polls": polls,
            "background_over_service": round(background / foreground, 4),
        }

    async def selected_cleanup(self, params: dict[str, Any]) -> int:
        """A cleanup with `params`: how many codescaler jobs it must leave."""
        summary = await self.svc.call("jobs.cleanup", params)
        done: int = summary["jobs_deleted"] + summary["jobs_already_gone"]
        # Errors may name the actions the kept jobs still use: only jobs are checked.
        if done != summary["jobs_matched"] or summary["jobs_failed"] or not summary["complete"]:
            raise RuntimeError(f"selected cleanup incomplete: {summary['jobs_deleted']} deleted")
        if set(params) == {"keep_last"}:
            await self.check_kept(params["keep_last"])
        return self.jobs - done

    async def check_kept(self, keep: int) -> None:
        """Every (kind, actor, target) group of the seeded population keeps exactly `keep`."""
        groups: dict[tuple[str | None, ...], int] = {}
        offset = 0
        while page := await self.hp.call(
            "job.list", {"filter": {"tag": "codescaler", "limit": 10_000, "offset": offset}}
        ):
            offset += len(page)
            for job in page:
                tags = job["tags"]
                if "codescaler" not in tags:
                    continue
                kind = next((t[16:] for t in tags if t.startswith("codescaler_kind_")), None)
                target = next((t[18:] for t in tags if t.startswith("codescaler_target_")), None)
                actor = next(
                    (t[11:] for t in tags if t.startswith("codescaler_") and t.count("_") == 1),
                    None,
                )
                key = (kind, actor, target)
                groups[key] = groups.get(key, 0) + 1
        if set(groups.values()) != {keep}:
            raise RuntimeError(f"keep_last {keep} left groups of {sorted(set(groups.values()))}")

    async def calibrate(self, mode: str) -> tuple[int, int]:
        faults = MODES[mode]
        small = max(5_000, self.jobs // 20)
        best: tuple[float, tuple[int, int]] = (0.0, LIMIT_CANDIDATES[mode][0])
        for batch, inflight in LIMIT_CANDIDATES[mode]:
            work = functools.partial(limit_algorithm, self.hp, batch, inflight)
            rate = (await self.measure(small, faults, work))["jobs_per_s"]
            best = max(best, (rate, (batch, inflight)))
        return best[1]


async def _callgrind(command: str, pid: int) -> None:
    """`callgrind_control <command> <pid>` (-z: zero the counts, -d: dump them)."""
    proc = await asyncio.create_subprocess_exec(
        "callgrind_control", command, str(pid), stdout=asyncio.subprocess.DEVNULL
    )
    if await proc.wait():
        raise RuntimeError(f"callgrind_control {command} {pid} failed")


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarise(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "jobs_per_s": round(median(runs, "jobs_per_s")),
        "seconds": round(median(runs, "seconds"), 3),
        "rss_growth_mb": round(max(r["rss_growth_mb"] for r in runs), 1),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "svc_cpu_us_per_job": round(median(runs, "svc_cpu_us_per_job"), 2),
        "runs_jobs_per_s": [round(r["jobs_per_s"]) for r in runs],
        "runs_svc_cpu_us_per_job": [round(r["svc_cpu_us_per_job"], 2) for r in runs],
    }


async def run_selected(
    bench: Bench, reps: int, modes: list[str], params: dict[str, Any], results: dict[str, Any]
) -> None:
    """Each mode: the plain cleanup against the one with `params`, runs alternated, each in
    a fresh service process (so that its peak RSS is its own)."""
    for mode in modes:
        faults = MODES[mode]
        plans: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("service", bench.service_cleanup),
            ("select", functools.partial(bench.selected_cleanup, params)),
        ]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in plans}
        for _ in range(reps):
            for name, work in plans:
                await bench.restart_service()
                runs[name].append(await bench.measure(bench.jobs, faults, work))
        rows = {name: summarise(done) for name, done in runs.items()}
        for name, row in rows.items():
            print(f"  {mode:8} {name:8} {row['seconds']:>9} s", file=sys.stderr)
        results["modes"][mode] = rows


async def run(
    jobs: int,
    reps: int,
    seed_reps: int,
    modes: list[str],
    select: dict[str, Any] | None = None,
    instructions: bool = False,
) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="hc-bench-", dir="/tmp"))
    bench = Bench(scratch, jobs)
    results: dict[str, Any] = {"jobs": jobs, "reps": reps, "modes": {}}
    if select is not None:
        results["select"] = select
    try:
        await bench.start()
        gc.freeze()  # the raw client too gets the service's treatment of long-lived objects
        if select is not None:
            await run_selected(bench, reps, modes, select, results)
            return results
        for mode in modes:
            faults = MODES[mode]
            batch, inflight = await bench.calibrate(mode)
            rows: dict[str, Any] = {"limit_batch": batch, "limit_inflight": inflight}
            plans: list[tuple[str, int, Callable[[], Awaitable[Any]]]] = [
                ("seed", seed_reps, lambda: seed_algorithm(bench.hp)),
                ("limit", reps, functools.partial(limit_algorithm, bench.hp, batch, inflight)),
            ]
            for name, count, work in plans:
                if count == 0:
                    continue  # --seed-reps 0: the (slow) seed algorithm is left out
                runs = [await bench.measure(jobs, faults, work) for _ in range(count)]
                rows[name] = summarise(runs)
                print(f"  {mode:8} {name:8} {rows[name]['jobs_per_s']:>9} jobs/s", file=sys.stderr)
            # The foreground and the background runs alternate: drift hits both alike.
            alternated: dict[str, list[dict[str, float]]] = {"service": [], "background": []}
            for _ in range(reps):
                alternated["service"].append(
                    await bench.measure(jobs, faults, bench.service_cleanup)
                )
                alternated["background"].append(
                    await bench.measure(jobs, faults, bench.background_cleanup)
                )
            for name, runs in alternated.items():
                rows[name] = summarise(runs)
                print(f"  {mode:8} {name:8} {rows[name]['jobs_per_s']:>9} jobs/s", file=sys.stderr)
            pairs = zip(alternated["service"], alternated["background"], strict=True)
            rows["background_over_service_cpu_pairs"] = round(
                statistics.median(
                    b["svc_cpu_us_per_job"] / f["svc_cpu_us_per_job"] for f, b in pairs
                ),
                3,
            )
            # Medians, and the least of each (other load on the machine only ever adds).
            rows["background_over_service_cpu"] = round(
                rows["background"]["svc_cpu_us_per_job"] / rows["service"]["svc_cpu_us_per_job"], 3
            )
            rows["background_over_service_cpu_least"] = round(
                min(rows["background"]["runs_svc_cpu_us_per_job"])
                / min(rows["service"]["runs_svc_cpu_us_per_job"]),
                3,
            )
            if instructions:
                polls = round(rows["background"]["seconds"] / STATUS_EVERY_S)
                rows["instructions"] = await bench.instructions(faults, polls)
            seed_rate = rows.get("seed", {}).get("jobs_per_s")
            rows["service_over_seed"] = (
                round(rows["service"]["jobs_per_s"] / seed_rate, 2) if seed_rate else None
            )
            rows["service_over_limit"] = round(
                rows["service"]["jobs_per_s"] / rows["limit"]["jobs_per_s"], 3
            )
            results["modes"][mode] = rows
    finally:
        await bench.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def table(results: dict[str, Any]) -> str:
    if "select" in results:
        return select_table(results)
    lines = [
        f"N = {results['jobs']} codescaler jobs, medians of {results['reps']} runs",
        f"{'mode':<9}{'approach':<10}{'jobs/s':>10}{'wall s':>10}{'svc RSS +MB':>13}"
        f"{'svc CPU µs/job':>16}",
    ]
    for mode, rows in results["modes"].items():
        for name in ("seed", "limit", "service", "background"):
            if name not in rows:
                continue
            row = rows[name]
            service = name in {"service", "background"}
            rss = f"{row['rss_growth_mb']:.1f}" if service else "-"
            cpu = f"{row['svc_cpu_us_per_job']:.2f}" if service else "-"
            lines.append(
                f"{mode:<9}{name:<10}{row['jobs_per_s']:>10}{row['seconds']:>10.3f}{rss:>13}"
                f"{cpu:>16}"
            )
        lines.append(
            f"{'':<9}service/seed {rows['service_over_seed']}x   "
            f"service/limit {rows['service_over_limit']}"
            f"   (limit: batch {rows['limit_batch']}, {rows['limit_inflight']} in flight)"
        )
        lines.append(
            f"{'':<9}background/service CPU per job "
            f"{rows['background_over_service_cpu_pairs']} (median of pairs), "
            f"{rows['background_over_service_cpu']} (medians), "
            f"{rows['background_over_service_cpu_least']} (least of each)"
        )
        if "instructions" in rows:
            ir = rows["instructions"]
            lines.append(
                f"{'':<9}instructions per job: service {ir['service_ir_per_job']}, background "
                f"{ir['background_ir_per_job']} ({ir['polls']} status calls): "
                f"{ir['background_over_service']}"
            )
    return "\n".join(lines)


def select_table(results: dict[str, Any]) -> str:
    lines = [
        f"N = {results['jobs']} codescaler jobs, medians of {results['reps']} runs; "
        f"select = {json.dumps(results['select'])}",
        f"{'mode':<9}{'cleanup':<10}{'wall s':>10}{'svc RSS +MB':>13}{'peak RSS MB':>13}"
        f"{'svc CPU µs/job':>16}",
    ]
    for mode, rows in results["modes"].items():
        for name, row in rows.items():
            lines.append(
                f"{mode:<9}{name:<10}{row['seconds']:>10.3f}{row['rss_growth_mb']:>13.1f}"
                f"{row['peak_rss_mb']:>13.1f}{row['svc_cpu_us_per_job']:>16.2f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--seed-reps", type=int, default=1, help="runs of the (slow) seed algorithm"
    )
    parser.add_argument("--modes", default="cheap,slow,nobatch")
    parser.add_argument(
        "--select",
        type=json.loads,
        help="jobs.cleanup params (JSON object): compare that cleanup with the plain one",
    )
    parser.add_argument(
        "--keep-last", type=int, metavar="N", help="the same as --select '{\"keep_last\": N}'"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count the service's instructions per job, foreground and background "
        "(callgrind: needs valgrind)",
    )
    args = parser.parse_args(argv)
    select = args.select
    if args.keep_last is not None:
        select = {**(select or {}), "keep_last": args.keep_last}
    if select is not None and not isinstance(select, dict):
        parser.error("--select: a JSON object of jobs.cleanup params")
    modes = args.modes.split(",")
    results = asyncio.run(
        run(args.jobs, args.reps, args.seed_reps, modes, select, args.instructions)
    )
    print(table(results))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
