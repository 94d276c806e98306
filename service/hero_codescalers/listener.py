"""The listening socket and its connections: creation, permissions, backlog, file-descriptor
limits, and the accepting of connections within a cap.

`listen()` binds the service's socket with its mode and group (or takes the one
systemd passed). Connections are accepted by the service's own loop on it
(`Listener`), not asyncio's: at most the gate's cap are open at once (a
connection beyond is closed as soon as it is accepted, unless it comes from an
admin uid or gid and the admin reserve has room), the listen backlog is the
configured one, and running out of file descriptors is logged once per interval
with a count, never per connection. Each accepted connection's peer
credentials (SO_PEERCRED) are read once, at accept (`peer_of`). At start the
soft file-descriptor limit is raised to the hard one (`fd_limit`), and the cap
is lowered, with a warning, when it would not leave `FD_RESERVE` descriptors
for the rest of the service (`connection_cap`).

What a connection says is HTTP, the transport's: it gives the `Listener` its
connection handler, a `Connection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import os
import resource
import socket
import weakref
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from . import systemd
from .auth import AdminPolicy, Peer
from .logs import Throttled
from .metrics import Metrics
from .settings import Settings
from .tuning import HERO_PROC_CONNECTIONS
from .unixsock import bind_unix

log = structlog.get_logger(__name__)

# File descriptors left for everything but callers' connections: hero_proc's
# connection pool, the listening socket, logs, the token file, a spare.
FD_RESERVE = HERO_PROC_CONNECTIONS + 64
ACCEPT_BATCH = 128  # connections accepted per wake-up, so other work gets its turn


_PEERS: weakref.WeakKeyDictionary[asyncio.BaseTransport, Peer] = weakref.WeakKeyDictionary()


def peer_of(request: web.BaseRequest) -> Peer:
    """The peer of the request's connection, asked of the kernel once per connection."""
    transport = request.transport
    if transport is None:
        return Peer.unknown()
    peer = _PEERS.get(transport)
    if peer is None:
        peer = _PEERS[transport] = Peer.of_socket(transport.get_extra_info("socket"))
    return peer


@dataclass
class Gate:
    """Who may have a connection: the cap, the admins' reserve, the count of open ones."""

    cap: int
    reserve: int
    policy: AdminPolicy
    metrics: Metrics
    open: int = 0
    over_cap: Throttled = field(default_factory=lambda: Throttled("connections_refused"))
    out_of_fds: Throttled = field(default_factory=lambda: Throttled("accept_failed"))

    def admits(self, peer: Peer) -> bool:
        if self.open < self.cap:
            return True
        return self.open < self.cap + self.reserve and self.policy.is_admin(peer)

    def opened(self) -> None:
        self.open += 1
        self.metrics.connections_open.set(self.open)

    def closed(self) -> None:
        self.open -= 1
        self.metrics.connections_open.set(self.open)


class Connection(RequestHandler):
    """aiohttp's connection handler, counted against the gate's cap while it is open."""

    gate: Gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.gate.opened()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.gate.closed()


class Listener(web.BaseSite):
    """A site on an already bound Unix socket that accepts connections itself, within
    the gate's cap, with the configured backlog, and survives running out of file
    descriptors (a spare one is let go to accept and close the waiting connection).
    Each connection is handled by a `connection` (a `Connection` class)."""

    __slots__ = ("_factory", "_gate", "_paused", "_sock", "_spare", "_tasks")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        gate: Gate,
        backlog: int,
        connection: type[Connection] = Connection,
    ):
        super().__init__(runner, backlog=backlog)
        server = runner.server
        if server is None:
            raise RuntimeError("runner.setup() must come before the site")
        loop = asyncio.get_running_loop()
        handler_args: dict[str, Any] = server._kwargs  # aiohttp's own; pinned by a test

        def factory() -> Connection:
            handler = connection(server, loop=loop, **handler_args)
            handler.gate = gate
            return handler

        self._sock = sock
        self._gate = gate
        self._factory = factory
        self._spare: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused = False

    @property
    def name(self) -> str:
        return f"unix:{self._sock.getsockname()}"

    @property
    def backlog(self) -> int:
        return self._backlog

    async def start(self) -> None:
        await super().start()
        self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._sock.setblocking(False)
        self._sock.listen(self._backlog)
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._accept)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        self._gate.over_cap.close()
        self._gate.out_of_fds.close()
        self._gate.metrics.busy_log.close()
        await super().stop()

    def _accept(self) -> None:
        gate = self._gate
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                gate.out_of_fds.note(error=errno.errorcode.get(exc.errno or 0, str(exc.errno)))
                gate.metrics.connections_refused.labels("accept_failed").inc()
                if not (exc.errno in (errno.EMFILE, errno.ENFILE) and self._shed()):
                    self._pause()
                return
            peer = Peer.of_socket(conn)
            if not gate.admits(peer):
                conn.close()
                gate.metrics.connections_refused.labels("over_cap").inc()
                gate.over_cap.note(cap=gate.cap, peer_uid=peer.uid)
                continue
            task = asyncio.get_running_loop().create_task(self._serve(conn, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket, peer: Peer) -> None:
        try:
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                self._factory, conn
            )
        except OSError:
            conn.close()
            return
        _PEERS[transport] = peer

    def _shed(self) -> bool:
        """Out of descriptors: let the spare go, accept the waiting connection and close it
        at once (its caller learns at once instead of waiting in the backlog)."""
        if self._spare is None:
            return False
        os.close(self._spare)
        self._spare = None
        try:
            conn, _ = self._sock.accept()
            conn.close()
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return True

    def _pause(self) -> None:
        """Stop accepting for a second (asyncio does the same on these errors)."""
        if self._paused:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._sock.fileno())
        self._paused = True

        def resume() -> None:
            self._paused = False
            with contextlib.suppress(ValueError, OSError):
                loop.add_reader(self._sock.fileno(), self._accept)

        loop.call_later(1.0, resume)


def fd_limit(raise_soft: bool = False) -> int:
    """The soft limit of open file descriptors, raised to the hard limit first if asked."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_soft and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("fd_limit_not_raised", soft=soft, hard=hard, error=str(exc))
        else:
            log.info("fd_limit_raised", soft=soft, to=hard)
            soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(configured: int, admin_reserve: int) -> int:
    """The cap of open connections: the configured one, lowered (with a warning) when the
    file-descriptor limit would not leave `FD_RESERVE` and the admins' reserve free."""
    room = fd_limit() - FD_RESERVE - admin_reserve
    if room < configured:
        log.warning("max_connections_lowered", configured=configured, to=max(room, 1))
        return max(room, 1)
    return configured


def group_id(group: str | None) -> int | None:
    """A group name or number as a gid."""
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    return grp.getgrnam(group).gr_gid


def listen(settings: Settings) -> tuple[socket.socket, int]:
    """The service's listening socket, with its mode, group and backlog, and the file's
    inode; or the socket systemd passed (its file is systemd's: inode -1, never removed)."""
    if (inherited := systemd.inherited_socket()) is not None:
        return inherited, -1
    return bind_unix(
        settings.socket,
        settings.socket_mode,
        group_id(settings.socket_group),
        backlog=settings.listen_backlog,
    )
