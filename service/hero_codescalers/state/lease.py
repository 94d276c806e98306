"""The single-cleanup lease: one cleanup at a time across the processes of a state directory.

The lock inside one process (`Engine`) is not enough when two service processes
share a state directory (an overlapping restart, a container beside a host
install). Before a run starts, its process takes the lease `cleanup` in the
database: a row naming its holder and when the lease expires. The holder renews
it while the run goes (each page's checkpoint, and a timer) and releases it at
the end. Another process may take it over once it has expired, or at once when
its holder is known to have ended: a holder on this host, in this pid namespace,
whose pid no longer runs (killed, crashed). A holder elsewhere is waited for
until its lease expires.

A holder id is `<host> <pid namespace> <pid> <random>`: the random part tells a
restarted process from its predecessor even when the pid comes round again.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3

from ..errors import CleanupRunning
from . import runs

NAME = "cleanup"
# The holder ids of this process's open `State`s (tests run several in one process).
LIVE_HERE: set[str] = set()


def holder_id() -> str:
    """This process's holder id (a new one for each `State`)."""
    return f"{socket.gethostname()} {_pid_namespace()} {os.getpid()} {secrets.token_hex(4)}"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "?"


def describe(holder: str) -> tuple[str, int | None]:
    """The host and pid of a holder id."""
    parts = holder.rsplit(" ", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return holder, None
    return parts[0], int(parts[2])


def gone(holder: str, me: str) -> bool:
    """Whether `holder` is known to have ended: a process of this host and pid namespace
    whose pid no longer runs, or whose pid is this process's but not one of its holders."""
    if holder == me:
        return False
    parts, mine = holder.rsplit(" ", 3), me.rsplit(" ", 3)
    if len(parts) != 4 or parts[:2] != mine[:2] or "?" in parts[1] or not parts[2].isdigit():
        return False
    pid = int(parts[2])
    if pid == os.getpid():
        return holder not in LIVE_HERE  # else an earlier process that had this pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it runs, as another user
    return False


def acquire(
    connection: sqlite3.Connection, me: str, run_id: str, now_ms: int, ttl_ms: int
) -> str | None:
    """Take the lease for `run_id` (in the caller's transaction): CleanupRunning while
    another holder has it; the holder it was taken over from, if any."""
    row = connection.execute(
        "SELECT holder, expires_at_ms, run_id FROM leases WHERE name = ?", (NAME,)
    ).fetchone()
    previous = None
    if row is not None and row[0] != me:
        holder, expires, held_for = row
        if expires > now_ms and not gone(holder, me):
            host, pid = describe(holder)
            raise CleanupRunning(
                f"another hero_codescalers process (pid {pid} on {host}) holds the cleanup "
                "lease of this state directory",
                **runs.holder(connection, held_for),
                holder_pid=pid,
                holder_host=host,
                lease_expires_at_ms=expires,
            )
        previous = holder
    connection.execute(
        "INSERT INTO leases (name, holder, run_id, expires_at_ms) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, run_id = excluded.run_id, "
        "expires_at_ms = excluded.expires_at_ms",
        (NAME, me, run_id, now_ms + ttl_ms),
    )
    return previous


def renew(connection: sqlite3.Connection, me: str, now_ms: int, ttl_ms: int) -> bool:
    """Push the lease's expiry on; False when `me` no longer holds it (taken over)."""
    cursor = connection.execute(
        "UPDATE leases SET expires_at_ms = ? WHERE name = ? AND holder = ?",
        (now_ms + ttl_ms, NAME, me),
    )
    return cursor.rowcount == 1


def release(connection: sqlite3.Connection, me: str) -> None:
    connection.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (NAME, me))


def live_holders(connection: sqlite3.Connection, me: str, now_ms: int) -> set[str]:
    """The holders whose lease still counts: unexpired, and not known to have ended."""
    found = connection.execute(
        "SELECT holder FROM leases WHERE expires_at_ms > ?", (now_ms,)
    ).fetchall()
    return {holder for (holder,) in found if not gone(holder, me)}
