"""The two systemd protocols the service speaks, both without systemd's library.

Socket activation (sd_listen_fds(3)): a `.socket` unit binds the socket with
its own mode and group, and starts the service with the listening socket as
file descriptor 3, `LISTEN_FDS=1` and `LISTEN_PID` set to the service's pid.
The service then serves on that socket, leaves its file alone and never
removes it. Without these variables (or when they name another process) the
service binds its own socket.

Readiness (sd_notify(3)): with `Type=notify`, the service sends `READY=1` once
it accepts calls and `STOPPING=1` when it begins to shut down, each a datagram
to the socket named by `$NOTIFY_SOCKET` (an `@` first means Linux's abstract
namespace). Without `$NOTIFY_SOCKET` nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

import structlog

from .config_errors import ConfigError

log = structlog.get_logger(__name__)

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START
_ACTIVATION_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def inherited_socket(
    environ: MutableMapping[str, str] | None = None, pid: int | None = None
) -> socket.socket | None:
    """The listening socket passed by socket activation, or None when not activated.

    The variables are removed from `environ` once read, as sd_listen_fds(1)
    does, so that a child process never takes them for its own. More than one
    socket, or one that is not a listening Unix stream socket, is a ConfigError.
    """
    variables = _take_activation_variables(os.environ if environ is None else environ)
    if variables is None:
        return None
    listen_pid, listen_fds = variables
    if listen_pid.strip() != str(os.getpid() if pid is None else pid):
        return None  # meant for another process (the variables leaked to a child)
    if listen_fds.strip() != "1":
        raise ConfigError(
            "LISTEN_FDS",
            listen_fds,
            "the service takes exactly one socket",
            "1 (one ListenStream= in the .socket unit)",
        )
    sock = _listening_socket_at_fd3(listen_fds)
    log.info("socket_activated", socket=sock.getsockname(), fd=LISTEN_FDS_START)
    return sock


def _take_activation_variables(env: MutableMapping[str, str]) -> tuple[str, str] | None:
    """LISTEN_PID and LISTEN_FDS, all three variables then removed from `env`; None (and
    `env` left alone) when either is missing."""
    listen_pid = env.get("LISTEN_PID")
    listen_fds = env.get("LISTEN_FDS")
    if listen_pid is None or listen_fds is None:
        return None
    for name in _ACTIVATION_VARS:
        env.pop(name, None)
    return listen_pid, listen_fds


def _listening_socket_at_fd3(listen_fds: str) -> socket.socket:
    """File descriptor 3 as a non-blocking, non-inheritable socket; a ConfigError on
    LISTEN_FDS when it is not a listening Unix stream socket (the fd is then left open)."""
    try:
        sock = socket.socket(fileno=LISTEN_FDS_START)
    except OSError as exc:
        raise ConfigError(
            "LISTEN_FDS", listen_fds, f"file descriptor 3: {exc.strerror}", "a socket at fd 3"
        ) from None
    if not _is_listening_unix_stream(sock):
        sock.detach()  # not ours to close
        raise ConfigError(
            "LISTEN_FDS",
            listen_fds,
            "file descriptor 3 is not a listening Unix stream socket",
            "ListenStream=/path/of/the.sock and Accept=no in the .socket unit",
        )
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def _is_listening_unix_stream(sock: socket.socket) -> bool:
    """A Unix stream socket that listen() was called on (SO_ACCEPTCONN)."""
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    return sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM and bool(listening)


def notify(state: str, environ: MutableMapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to the service manager; False when none listens."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError:
            return False  # the manager went away; the service itself is unaffected
    return True
