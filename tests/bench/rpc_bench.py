"""The cost of the JSON-RPC layer: `system.ping` against a bare aiohttp handler.

    python -m tests.bench.rpc_bench [--seconds 5] [--reps 3]      (make bench-rpc)

Two servers on Unix sockets, each its own process: the service (`serve`, its
full path: peer credentials, request id, framing, dispatch, params, logging)
and a bare aiohttp application whose handler reads the body and answers a fixed
JSON-RPC result. This script is the client, a third process: at concurrency 1
and 32 (keep-alive connections, each caller sending its next request when the
last is answered) it measures requests per second and latency percentiles,
`--reps` times each, alternating servers, and prints the medians, the ratio
service/bare, and a final JSON line. "CPU µs/call" is the server process's own
CPU time (user + system, read from /proc) over the measured seconds divided by
the calls answered: on a shared machine it varies far less than requests per
second, so it is the figure to compare between two versions of the service.

A second call, `jobs.submit` with a kind that is refused (-32602 before
anything reaches hero_proc), measures the path of the methods that change
hero_proc, whose params are also checked for duplicate keys (the body parsed a
second time); the bare handler answers it as it answers a ping.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from .processes import cpu_seconds, hero, start

BARE_SERVER = """
import asyncio, os, signal, sys
from aiohttp import web

ANSWER = b'{"jsonrpc":"2.0","result":{"pong":true},"id":1}'

async def rpc(request):
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")

async def main(path):
    app = web.Application()
    app.router.add_post("/rpc", rpc)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    os.unlink(path)

asyncio.run(main(sys.argv[1]))
"""
PING = b'{"jsonrpc":"2.0","method":"system.ping","id":1}'
SUBMIT = (
    b'{"jsonrpc":"2.0","method":"jobs.submit","id":1,'
    b'"params":{"kind":"no such kind!","actor":"alice","script":"echo","input":{"n":1}}}'
)
CALLS = {"ping": (PING, b'"pong"'), "submit_refused": (SUBMIT, b"-32602")}
HEADERS = {"Content-Type": "application/json"}


async def load(
    socket: Path,
    pid: int,
    concurrency: int,
    seconds: float,
    body: bytes = PING,
    expect: bytes = b'"pong"',
) -> dict[str, float]:
    """`concurrency` callers for `seconds`: requests per second, latency percentiles and
    the CPU time of the server (process `pid`) per call."""
    connector = aiohttp.UnixConnector(path=str(socket), limit=concurrency)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=connector) as session:

        async def caller(until: float) -> None:
            while (now := time.perf_counter()) < until:
                async with session.post("http://localhost/rpc", data=body, headers=HEADERS) as resp:
                    answer = await resp.read()
                latencies.append(time.perf_counter() - now)
                if expect not in answer:
                    raise RuntimeError(f"unexpected answer {answer[:200]!r}")

        await asyncio.gather(*(caller(time.perf_counter() + 0.3) for _ in range(concurrency)))
        latencies.clear()  # warm-up done: connections open, code paths hot
        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(t0 + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
    ordered = sorted(latencies)
    return {
        "req_per_s": len(ordered) / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "cpu_us_per_call": cpu / len(ordered) * 1e6,
    }


async def run(seconds: float, reps: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="hc-rpcbench-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERO_")}
    env.update(
        HERO_SOCKET_DIR=str(scratch),
        HERO_CODESCALERS_STATE_DIR=str(scratch / "state"),
        HERO_CODESCALERS_LOG_FORMAT="json",
    )
    bare_socket = scratch / "bare.sock"
    service_socket = scratch / "hero_codescalers" / "rpc.sock"
    procs = [
        await start([sys.executable, "-c", BARE_SERVER, str(bare_socket)], env, b"ready", "stdout"),
        await start(hero("serve"), env, b"service_started"),
    ]
    servers = {"bare": (bare_socket, procs[0].pid), "service": (service_socket, procs[1].pid)}
    gc.freeze()
    results: dict[str, Any] = {"seconds": seconds, "reps": reps}
    try:
        for call, (body, expect) in CALLS.items():
            for concurrency in (1, 32):
                runs: dict[str, list[dict[str, float]]] = {"bare": [], "service": []}
                for _ in range(reps):
                    for name, (socket, pid) in servers.items():
                        # the bare handler answers every call as a ping
                        wanted = expect if name == "service" else b'"pong"'
                        runs[name].append(
                            await load(socket, pid, concurrency, seconds, body, wanted)
                        )
                row = {
                    name: {key: round(statistics.median(r[key] for r in rs), 3) for key in rs[0]}
                    for name, rs in runs.items()
                }
                row["ratio"] = round(row["service"]["req_per_s"] / row["bare"]["req_per_s"], 3)
                results[f"{call}_c{concurrency}"] = row
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.seconds, args.reps))
    print(
        f"{'call':<16}{'concurrency':<13}{'server':<9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU µs/call':>13}"
    )
    for call in CALLS:
        for concurrency in (1, 32):
            row = results[f"{call}_c{concurrency}"]
            for name in ("bare", "service"):
                r = row[name]
                print(
                    f"{call:<16}{concurrency:<13}{name:<9}{r['req_per_s']:>10.0f}"
                    f"{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['cpu_us_per_call']:>13.1f}"
                )
            print(f"{'':<29}service/bare {row['ratio']}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
