"""Calling the service as another user: a forked child that drops to a uid before connecting."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

NOBODY = 65534
IS_ROOT = os.geteuid() == 0


def _http_post(path: Path, body: bytes, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(os.fspath(path))
        s.sendall(
            b"POST /rpc HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + extra
            + b"Connection: close\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class PeerCannotConnect(Exception):
    """The child process could not open the socket."""


async def post_as(
    uid: int, gid: int, path: Path, request: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST `request` from a child process running as uid/gid; its HTTP status and JSON answer.

    The child is forked (nothing to exec), drops its groups, gid and uid, connects,
    and hands the raw response back through a pipe that this loop reads.
    """
    assert IS_ROOT, "only root can start a peer under another uid"
    assert threading.active_count() == 1, "fork() with threads running is unsafe"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no event loop, no cleanup, just a socket
        code = 0
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                raw = _http_post(path, json.dumps(request).encode(), headers or {})
            except (PermissionError, ConnectionRefusedError, FileNotFoundError) as exc:
                raw = f"CANNOT-CONNECT {type(exc).__name__}".encode()
        except BaseException as exc:
            raw = f"CHILD-ERROR {type(exc).__name__}: {exc}".encode()
            code = 1
        with os.fdopen(write_fd, "wb") as out:
            out.write(raw)
        os._exit(code)
    os.close(write_fd)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(read_fd, "rb")
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        raw = await reader.read()
    finally:
        transport.close()
    _, status = os.waitpid(pid, 0)  # noqa: ASYNC222 -- the child closed its pipe: it is exiting
    assert os.waitstatus_to_exitcode(status) == 0, raw.decode(errors="replace")
    if raw.startswith(b"CANNOT-CONNECT "):
        raise PeerCannotConnect(raw.decode().split(" ", 1)[1])
    head, _, body = raw.partition(b"\r\n\r\n")
    http_status = int(head.split(b" ", 2)[1])
    return http_status, (json.loads(body) if body else None)
