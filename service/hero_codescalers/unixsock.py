"""Unix socket files: bind with a mode, replace a stale file, refuse a live one.

The socket's own directory is the service's: created writable by its owner only
(0755; 0750 and the socket's group when a group is given, so that the group
can still reach the socket). An existing one is accepted when it belongs to this
user or root and nobody else may write in it (or it has the sticky bit, as
/tmp): otherwise another user could replace the socket with a listener of their
own, and the service refuses to start (`UnsafeSocketDir`). The directories
above it (`$HERO_SOCKET_DIR`, maybe a volume owned by someone else) are not
judged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from pathlib import Path

SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, NUL included


class SocketInUse(RuntimeError):
    """Another process answers on the socket path, or the path is not a socket."""


class UnsafeSocketDir(SocketInUse):
    """The socket's directory could let another user replace the socket."""


def socket_dir(path: Path, group: int | None = None) -> None:
    """Create the socket's directory `path` (owner-writable only), or check the existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        _check_dir(path)
        return
    if group is not None:
        os.chown(path, -1, group)
    os.chmod(path, 0o750 if group is not None else 0o755)


def _check_dir(path: Path) -> None:
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeSocketDir(f"socket directory {path} is not a directory")
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafeSocketDir(
            f"socket directory {path} belongs to uid {st.st_uid}, not to this user or root"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise UnsafeSocketDir(
            f"socket directory {path} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}) without the sticky bit"
        )


def bind_unix(
    path: Path, mode: int, group: int | None = None, *, backlog: int = 1024
) -> tuple[socket.socket, int]:
    """A listening socket at `path` with `mode` (and `group`), and the file's inode.

    The mode is in place before anyone can connect.

    Creates the socket's directory (see `socket_dir`). A socket file nobody listens
    on (left by a crash) is replaced; a live one, or a path that is not a socket,
    raises SocketInUse.
    """
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise SocketInUse(f"socket path is longer than {SOCKET_PATH_MAX} bytes: {path}")
    socket_dir(path.parent, group)
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Bind under a umask that leaves no access at all, then open up to `mode`:
        # nobody can connect between bind() and chmod().
        old_umask = os.umask(0o777)
        try:
            sock.bind(os.fspath(path))
        finally:
            os.umask(old_umask)
        if group is not None:
            os.chown(path, -1, group)
        os.chmod(path, mode)
        sock.listen(backlog)
        sock.setblocking(False)
        inode = path.lstat().st_ino
    except BaseException:
        sock.close()
        raise
    return sock, inode


def _remove_stale(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUse(f"{path} exists and is not a socket; refusing to replace it")
    if is_live(path):
        raise SocketInUse(f"another instance is already listening on {path}")
    path.unlink()


def is_live(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        if exc.errno in (errno.EAGAIN, errno.ETIMEDOUT):
            return True  # a full backlog is still a live listener
        raise
    else:
        return True
    finally:
        probe.close()


def remove_socket(path: Path, inode: int | None = None) -> None:
    """Remove the socket file, unless it has been replaced by another one since `inode`."""
    with contextlib.suppress(FileNotFoundError):
        if inode is not None and path.lstat().st_ino != inode:
            return
        path.unlink()
