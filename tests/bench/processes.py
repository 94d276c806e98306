"""Processes for benchmarks and the soak: start one, wait until it says it is ready."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Literal


def hero(*args: str) -> list[str]:
    """The command line of `hero_codescalers <args>` in this environment."""
    return [sys.executable, "-m", "hero_codescalers", *args]


async def start(
    argv: list[str],
    env: dict[str, str],
    ready: bytes,
    stream: Literal["stdout", "stderr"] = "stderr",
) -> asyncio.subprocess.Process:
    """Start `argv` and wait for a line of its `stream` containing `ready`; the rest of
    that stream is read and dropped, so that the process never blocks on it."""
    pipes = (
        {"stdout": asyncio.subprocess.PIPE}
        if stream == "stdout"
        else {"stderr": asyncio.subprocess.PIPE, "stdout": asyncio.subprocess.DEVNULL}
    )
    proc = await asyncio.create_subprocess_exec(*argv, env=env, **pipes)  # type: ignore[arg-type]
    out = proc.stdout if stream == "stdout" else proc.stderr
    assert out is not None
    while ready not in (line := await out.readline()):
        if not line:
            raise RuntimeError(f"{argv} exited before it was ready")
    asyncio.get_running_loop().create_task(_drain(out))
    return proc


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process `pid` has used so far."""
    # /proc/PID/stat: fields 14 and 15 (utime, stime) in clock ticks, counted after
    # the command name, which is in parentheses and may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stop_all(procs: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM each process still running, the last started first, and wait for it."""
    for proc in reversed(procs):
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
