"""The admin policy: who may call admin methods.

A peer's identity is the one the kernel reports for its end of the Unix socket
(SO_PEERCRED: pid, uid, gid, plus its supplementary groups where SO_PEERGROUPS
is available). Admin = uid 0, a uid on the allowlist, or a primary or
supplementary gid on the allowlist; or, for callers behind a relay, a request
bearing the configured token (compared in constant time, never logged). A
presented token that is wrong is refused whoever the peer is. A refusal raises
`AdminRequired`, logged with the peer's uid and pid and the reason.

Only the `Bearer` scheme carries a token (`Authorization: Bearer <token>`). The
scheme is matched without regard to case, as RFC 7235 says schemes are; the
token itself is compared exactly, byte for byte. Any other `Authorization`
header (another scheme, no token, bytes that are not printable ASCII) is a
credential that does not match: refused with "invalid bearer token".
"""

from __future__ import annotations

import hmac
import os
import socket
import stat
import struct
from dataclasses import dataclass, field
from typing import Any

import structlog

from .errors import AdminRequired

log = structlog.get_logger(__name__)

_UCRED = struct.Struct("3i")
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13
_MAX_GROUPS = 256


@dataclass(frozen=True, slots=True)
class Peer:
    """The process at the other end of a connection (None where unknown)."""

    pid: int | None
    uid: int | None
    gid: int | None
    groups: frozenset[int] = frozenset()

    @classmethod
    def unknown(cls) -> Peer:
        return cls(None, None, None)

    @classmethod
    def of_socket(cls, sock: Any) -> Peer:
        """The credentials of the peer of a connected AF_UNIX socket."""
        if sock is None or getattr(sock, "family", None) != socket.AF_UNIX:
            return cls.unknown()
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        except OSError:
            return cls.unknown()
        pid, uid, gid = _UCRED.unpack(raw)
        return cls(pid, uid, gid, _peer_groups(sock))


def _peer_groups(sock: Any) -> frozenset[int]:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * _MAX_GROUPS)
    except OSError:
        return frozenset()
    return frozenset(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization` header: None without a header, "" (never a
    match) when the header is not `Bearer <token>` in printable ASCII."""
    if header is None:
        return None
    if not header.isascii() or not header.isprintable():
        return ""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return ""
    return token


def token_file_problem(path: os.PathLike[str] | None) -> str | None:
    """Why the token file is unsafe (readable by others than its owner), or None."""
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"readable by others than its owner (mode {stat.S_IMODE(mode):04o})"
    return None


@dataclass(slots=True)
class AdminPolicy:
    """uid 0 is always admin; these uids and gids are too; and, for callers behind a
    relay, whoever presents the configured bearer token (read again on SIGHUP)."""

    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()
    token: str | None = field(default=None, repr=False)

    def is_admin(self, peer: Peer) -> bool:
        if peer.uid is None:
            return False
        if peer.uid == 0 or peer.uid in self.uids:
            return True
        return (peer.gid is not None and peer.gid in self.gids) or not self.gids.isdisjoint(
            peer.groups
        )

    def token_matches(self, bearer: str) -> bool:
        """Constant-time comparison with the configured token (False when none is)."""
        if self.token is None or not bearer.isascii():
            return False
        return hmac.compare_digest(bearer.encode(), self.token.encode())

    def grants(self, peer: Peer, bearer: str | None) -> bool:
        """Whether the call is an admin's, as `require_admin` decides, without logging."""
        if bearer is not None:
            return self.token_matches(bearer)
        return self.is_admin(peer)

    def require_admin(self, peer: Peer, method: str, bearer: str | None = None) -> None:
        """Raise AdminRequired (and log the refusal) unless the caller is an admin.

        A presented bearer token decides alone: right, admin; wrong, refused,
        whoever the peer is. Without one, the peer's uid and gids decide.
        """
        if bearer is not None:
            if self.token_matches(bearer):
                return
            reason = "invalid bearer token"
        elif self.is_admin(peer):
            return
        else:
            reason = "not an admin uid or gid"
        log.warning(
            "admin_refused", method=method, reason=reason, peer_uid=peer.uid, peer_pid=peer.pid
        )
        raise AdminRequired(data={"method": method, "uid": peer.uid, "reason": reason})
