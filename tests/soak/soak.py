"""Soak: N concurrent callers for T seconds against the service, as separate processes.

    python -m tests.soak.soak [--callers 16] [--seconds 30] [--jobs 20000]   (make soak)

Starts a seeded simulator and the service, each in its own process, then runs
`--callers` concurrent callers from this process for `--seconds`: reads
(stats, jobs.list, system.health), submissions, dry runs and real cleanups
(several callers cleaning up at once, so -32011 is expected). It samples the
service's resident memory every second, stops everything, prints a table and
a final JSON line, and exits 1 on any error other than -32011, on a failed
call, or when memory grew by more than `--max-growth-mb` after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from ..bench.processes import hero, start, stop_all

ACTORS = ("alice", "bob", "carol", "ci-bot")
KINDS = ("user", "template", "service", "install")
EXPECTED_ERRORS = {-32011}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Load:
    """The callers' shared tally."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.codes: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def record(self, method: str, seconds: float, answer: dict[str, Any] | None) -> None:
        self.latencies.setdefault(method, []).append(seconds)
        if answer is None:
            self.failures["no answer"] += 1
        elif "error" in answer:
            self.codes[f"{method} {answer['error']['code']}"] += 1


def pick(rng: random.Random) -> tuple[str, dict[str, Any]]:
    roll = rng.random()
    actor, kind = rng.choice(ACTORS), rng.choice(KINDS)
    if roll < 0.25:
        return "stats", {}
    if roll < 0.50:
        return "jobs.list", {"actor": actor, "limit": 50}
    if roll < 0.65:
        return "system.health", {}
    if roll < 0.90:
        return "jobs.submit", {
            "kind": kind,
            "actor": actor,
            "script": "s",
            "input": rng.randrange(500),
        }
    if roll < 0.95:
        return "jobs.cleanup", {"actor": actor, "dry_run": True}
    return "jobs.cleanup", {"actor": actor, "kind": kind}


async def caller(session: aiohttp.ClientSession, load: Load, seed: int, until: float) -> None:
    rng = random.Random(seed)
    ids = 0
    while time.monotonic() < until:
        method, params = pick(rng)
        ids += 1
        t0 = time.perf_counter()
        try:
            async with session.post(
                "http://localhost/rpc",
                json={"jsonrpc": "2.0", "id": ids, "method": method, "params": params},
            ) as resp:
                answer = await resp.json()
        except (aiohttp.ClientError, TimeoutError):
            answer = None
        load.record(method, time.perf_counter() - t0, answer)


async def sample(
    pid: int, every: float, out: list[tuple[float, float]], stop: asyncio.Event
) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        out.append((time.monotonic() - t0, rss_mb(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(callers: int, seconds: float, jobs: int, warmup: float) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="hc-soak-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERO_")}
    env.update(
        HERO_SOCKET_DIR=str(scratch),
        HERO_CODESCALERS_STATE_DIR=str(scratch / "state"),
        HERO_CODESCALERS_LOG_FORMAT="json",
    )
    procs: list[asyncio.subprocess.Process] = []
    try:
        procs.append(await start(hero("simulator", "--seed", str(jobs)), env, b"simulator_started"))
        service = await start(hero("serve"), env, b"service_started")
        procs.append(service)
        load = Load()
        memory: list[tuple[float, float]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(service.pid, 1.0, memory, stop))
        connector = aiohttp.UnixConnector(
            path=str(scratch / "hero_codescalers" / "rpc.sock"), limit=callers
        )
        t0 = time.monotonic()
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60)
        ) as session:
            await asyncio.gather(*(caller(session, load, i, t0 + seconds) for i in range(callers)))
        elapsed = time.monotonic() - t0
        stop.set()
        await sampler
    finally:
        await stop_all(procs)
        shutil.rmtree(scratch, ignore_errors=True)
    after_warmup = [mb for t, mb in memory if t >= warmup] or [memory[-1][1]]
    all_latencies = [s for v in load.latencies.values() for s in v]
    return {
        "callers": callers,
        "seconds": round(elapsed, 1),
        "calls": len(all_latencies),
        "calls_per_s": round(len(all_latencies) / elapsed, 1),
        "p50_ms": round(percentile(all_latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(all_latencies, 0.99) * 1000, 2),
        "max_ms": round(max(all_latencies) * 1000, 2),
        "by_method": {
            m: {
                "calls": len(v),
                "p50_ms": round(percentile(v, 0.5) * 1000, 2),
                "p99_ms": round(percentile(v, 0.99) * 1000, 2),
                "mean_ms": round(statistics.fmean(v) * 1000, 2),
            }
            for m, v in sorted(load.latencies.items())
        },
        "errors": dict(load.codes),
        "failures": dict(load.failures),
        "rss_mb_start": round(after_warmup[0], 1),
        "rss_mb_max": round(max(after_warmup), 1),
        "rss_mb_end": round(after_warmup[-1], 1),
        "rss_growth_mb": round(after_warmup[-1] - after_warmup[0], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs seeded in the simulator")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before memory counts")
    parser.add_argument("--max-growth-mb", type=float, default=30.0)
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.callers, args.seconds, args.jobs, args.warmup))
    print(f"{'method':<16}{'calls':>8}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for method, row in report["by_method"].items():
        print(
            f"{method:<16}{row['calls']:>8}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['mean_ms']:>10}"
        )
    print(
        f"{report['calls']} calls in {report['seconds']} s ({report['calls_per_s']}/s) from "
        f"{report['callers']} callers; p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms; "
        f"service RSS {report['rss_mb_start']} -> {report['rss_mb_end']} MB "
        f"(max {report['rss_mb_max']})"
    )
    print(f"errors: {report['errors'] or 'none'}; failures: {report['failures'] or 'none'}")
    print(json.dumps(report))
    unexpected = {
        k: v for k, v in report["errors"].items() if int(k.rsplit(" ", 1)[1]) not in EXPECTED_ERRORS
    }
    ok = not unexpected and not report["failures"] and report["rss_growth_mb"] <= args.max_growth_mb
    if not ok:
        print(
            f"SOAK FAILED: unexpected errors {unexpected}, failures {report['failures']}, "
            f"growth {report['rss_growth_mb']} MB",
            file=sys.stderr,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
