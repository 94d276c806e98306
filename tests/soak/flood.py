"""Flood: does an admin still get answers while one local peer floods the service?

    python -m tests.soak.flood [--idle 2000] [--seconds 20] [--senders 8]   (make soak-flood)

Starts a seeded simulator and the service, each in its own process, then a
flooding peer: a forked child (running as uid 65534 when this runs as root, so
that the service sees a non-admin peer) that opens `--idle` connections and
leaves them idle, and from `--senders` more connections sends batches of
`--batch` calls (stats, jobs.list, system.ping) back to back for `--seconds`.
Meanwhile this process, the admin (it presents the relay token), calls
`system.health` on a fresh connection every `--every` seconds. It prints the admin's p50/p99/max
latency, how many of its calls failed, the flood's throughput and refusals,
how many idle connections were still open at the end, and a final JSON line;
it exits 1 when an admin call failed or its p99 is over `--max-p99-ms`.
Only Unix sockets; every loop is bounded by `--seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from ..bench.processes import hero, start, stop_all

NOBODY = 65534
TOKEN = "flood-soak-admin-token"  # noqa: S105 -- a token for this run only
SERVICE_SOCKET = Path("hero_codescalers") / "rpc.sock"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def batch_body(size: int, methods: list[str]) -> bytes:
    """A batch of `size` calls taking `methods` in turn (jobs.list asks for 20 jobs)."""
    calls = []
    for i in range(size):
        method = methods[i % len(methods)]
        params = {"limit": 20} if method == "jobs.list" else {}
        calls.append({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
    return json.dumps(calls).encode()


async def flood(
    path: Path, idle: int, senders: int, size: int, methods: list[str], seconds: float
) -> dict[str, Any]:
    """The flooding peer: idle connections, then batches back to back until the time is up."""
    parked: list[socket.socket] = []
    give_up = time.monotonic() + 60
    for _ in range(idle):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        # With the backlog full, connect() on a Unix socket fails with EAGAIN (which
        # asyncio's sock_connect would take for success): try again shortly.
        while True:
            try:
                sock.connect(str(path))
                break
            except BlockingIOError:
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(0.005)
        parked.append(sock)
    body = batch_body(size, methods)
    codes: Counter[str] = Counter()
    batches = 0
    until = time.monotonic() + seconds
    connector = aiohttp.UnixConnector(path=str(path), limit=senders)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:

        async def sender() -> None:
            nonlocal batches
            while time.monotonic() < until:
                try:
                    async with session.post(
                        "http://localhost/rpc",
                        data=body,
                        headers={"Content-Type": "application/json"},
                    ) as resp:
                        answer = await resp.json()
                        codes[f"http {resp.status}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    codes[type(exc).__name__] += 1
                    continue
                batches += 1
                for item in answer if isinstance(answer, list) else [answer]:
                    codes["ok" if "result" in item else str(item["error"]["code"])] += 1

        await asyncio.gather(*(sender() for _ in range(senders)))
    still_open = 0
    for sock in parked:
        try:
            still_open += sock.recv(1) != b""
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        sock.close()
    return {"batches": batches, "codes": dict(codes), "idle_still_open": still_open}


def fork_flooder(args: argparse.Namespace) -> tuple[int, int, int]:
    """Fork the flooding peer before any event loop or thread exists; it waits for the
    socket path on one pipe and writes its report on another. Its pid and the pipes."""
    go_read, go_write = os.pipe()
    report_read, report_write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(go_read)
        os.close(report_write)
        return pid, go_write, report_read
    os.close(go_write)
    os.close(report_read)
    code = 0
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        with os.fdopen(go_read) as go:
            path = go.readline().strip()
        if not path:
            os._exit(0)
        report = asyncio.run(
            flood(Path(path), args.idle, args.senders, args.batch, args.calls, args.seconds)
        )
        report["uid"] = os.getuid()
    except BaseException as exc:  # the report says what went wrong
        report = {"error": f"{type(exc).__name__}: {exc}"}
        code = 1
    with os.fdopen(report_write, "w") as out:
        out.write(json.dumps(report))
    os._exit(code)


async def admin_probe(
    path: Path, method: str, every: float, stop: asyncio.Event
) -> tuple[list[float], int]:
    """`method` (system.health) on a fresh connection every `every` seconds until `stop`."""
    latencies: list[float] = []
    failures = 0
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            async with (
                aiohttp.ClientSession(
                    connector=aiohttp.UnixConnector(path=str(path)),
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as session,
                session.post("http://localhost/rpc", data=body, headers=headers) as resp,
            ):
                answer = await resp.json()
            if "result" in answer:
                latencies.append(time.perf_counter() - t0)
            else:
                failures += 1
        except (aiohttp.ClientError, TimeoutError):
            failures += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    return latencies, failures


async def scrape(path: Path) -> str:
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
        session.get("http://localhost/metrics") as resp,
    ):
        return await resp.text()


async def run(args: argparse.Namespace, pid: int, go: int, report_fd: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="hc-flood-", dir="/tmp"))
    os.chmod(scratch, 0o755)  # noqa: S103 -- the flooding peer (uid 65534) reaches the socket
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERO_")}
    env.update(
        HERO_SOCKET_DIR=str(scratch),
        HERO_CODESCALERS_STATE_DIR=str(scratch / "state"),
        HERO_CODESCALERS_LOG_FORMAT="json",
        HERO_CODESCALERS_SOCKET_MODE="0666",
        # Idle connections are closed after the request timeout: keep them for the run.
        HERO_CODESCALERS_REQUEST_TIMEOUT=str(args.seconds * 3 + 60),
    )
    # The admin presents the relay token: an admin even when the flooding peer has the
    # same uid (when this does not run as root).
    token_file = scratch / "token"
    token_file.write_text(TOKEN)
    os.chmod(token_file, 0o600)
    env["HERO_CODESCALERS_TOKEN_FILE"] = str(token_file)
    for setting in args.set:
        name, _, value = setting.partition("=")
        env[f"HERO_CODESCALERS_{name.upper()}"] = value
    path = scratch / SERVICE_SOCKET
    procs: list[asyncio.subprocess.Process] = []
    try:
        procs.append(
            await start(hero("simulator", "--seed", str(args.jobs)), env, b"simulator_started")
        )
        procs.append(await start(hero("serve"), env, b"service_started"))
        os.write(go, f"{path}\n".encode())
        os.close(go)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(report_fd, "rb")
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        # Let the flooder open its idle connections and start, then probe while it floods.
        await asyncio.sleep(args.settle)
        stop = asyncio.Event()
        probe = asyncio.create_task(admin_probe(path, args.method, args.every, stop))
        raw = await reader.read()
        transport.close()
        stop.set()
        latencies, failures = await probe
        metrics = await scrape(path)
    finally:
        await stop_all(procs)
        shutil.rmtree(scratch, ignore_errors=True)
    flooder = json.loads(raw) if raw else {"error": "no report"}
    wanted = (
        "hero_codescalers_connections_open ",
        "hero_codescalers_calls_refused_busy_total ",
        "hero_codescalers_stats_walks_total ",
        "hero_codescalers_connections_refused_total",
    )
    return {
        "admin_method": args.method,
        "idle_connections": args.idle,
        "senders": args.senders,
        "batch": args.batch,
        "calls": args.calls,
        "settings": args.set,
        "seconds": args.seconds,
        "flooder_uid": flooder.get("uid"),
        "flood": flooder,
        "admin_calls": len(latencies),
        "admin_failures": failures,
        "admin_p50_ms": round(percentile(latencies, 0.5) * 1000, 2) if latencies else None,
        "admin_p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "admin_max_ms": round(max(latencies) * 1000, 2) if latencies else None,
        "service_metrics": [line for line in metrics.splitlines() if line.startswith(wanted)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=2000, help="idle connections held")
    parser.add_argument("--senders", type=int, default=8, help="connections sending batches")
    parser.add_argument("--batch", type=int, default=100, help="calls per batch")
    parser.add_argument(
        "--calls",
        type=lambda text: text.split(","),
        default=["stats", "jobs.list", "system.ping"],
        help="methods a batch takes in turn, comma-separated",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs seeded in the simulator")
    parser.add_argument("--method", default="system.health", help="the admin's call")
    parser.add_argument("--every", type=float, default=0.02, help="seconds between admin calls")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before probing")
    parser.add_argument("--max-p99-ms", type=float, default=100.0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a service setting for the run (e.g. peer_concurrency=4); repeatable",
    )
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the service inherits it
    pid, go, report_fd = fork_flooder(args)
    try:
        report = asyncio.run(run(args, pid, go, report_fd))
    finally:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    flood_report = report["flood"]
    print(
        f"admin {args.method} under flood: {report['admin_calls']} calls, "
        f"p50 {report['admin_p50_ms']} ms, p99 {report['admin_p99_ms']} ms, "
        f"max {report['admin_max_ms']} ms, {report['admin_failures']} failed"
    )
    print(
        f"flooding peer (uid {report['flooder_uid']}): {report['idle_connections']} idle "
        f"connections ({flood_report.get('idle_still_open')} still open at the end), "
        f"{report['senders']} senders, {flood_report.get('batches')} batches of "
        f"{report['batch']} in {report['seconds']} s; answers {flood_report.get('codes')}"
    )
    for line in report["service_metrics"]:
        print(f"  {line}")
    print(json.dumps(report))
    ok = (
        "error" not in flood_report
        and report["admin_failures"] == 0
        and report["admin_p99_ms"] is not None
        and report["admin_p99_ms"] <= args.max_p99_ms
    )
    if not ok:
        print("FLOOD SOAK FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
