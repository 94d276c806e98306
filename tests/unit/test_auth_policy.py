"""The admin policy on its own: who is an admin, the token compare, a refusal and its log line.

Written from the rules in DESIGN.md and the auth module's documentation: admin is
uid 0, a uid on the allowlist, or a primary or supplementary gid on the allowlist;
behind a relay, the configured bearer token, compared exactly. A uid is never
looked up in the gid list, nor a gid in the uid list, so the peers below have
uid != gid.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.auth import SO_PEERGROUPS, AdminPolicy, Peer
from hero_codescalers.errors import AdminRequired

TOKEN = "Relay-Token-0123456789"  # noqa: S105 -- a test token, the point of the test
POLICY = AdminPolicy(uids=frozenset({1000}), gids=frozenset({27}), token=TOKEN)


@pytest.mark.parametrize(
    "peer",
    [
        pytest.param(Peer(10, 0, 5000), id="uid-0"),
        pytest.param(Peer(10, 1000, 5000), id="allowed-uid"),
        pytest.param(Peer(10, 5000, 27), id="allowed-primary-gid"),
        pytest.param(Peer(10, 5000, 5001, frozenset({4, 27})), id="allowed-supplementary-gid"),
    ],
)
def test_admins(peer: Peer) -> None:
    """uid 0, an allowed uid, an allowed primary or supplementary gid: each alone suffices."""
    assert POLICY.is_admin(peer)


@pytest.mark.parametrize(
    "peer",
    [
        pytest.param(Peer(10, 27, 5000), id="uid-equal-to-an-allowed-gid"),
        pytest.param(Peer(10, 5000, 1000), id="gid-equal-to-an-allowed-uid"),
        pytest.param(Peer(10, 5000, 5001, frozenset({1000})), id="group-equal-to-an-allowed-uid"),
        pytest.param(Peer(10, 5000, 0), id="gid-0"),
        pytest.param(Peer(10, 5000, 5001, frozenset({0})), id="supplementary-gid-0"),
        pytest.param(Peer(10, 5000, None, frozenset({5001})), id="gid-unknown"),
        pytest.param(Peer.unknown(), id="unknown"),
        pytest.param(Peer(None, None, 27, frozenset({27})), id="uid-unknown"),
    ],
)
def test_not_admins(peer: Peer) -> None:
    """A uid is checked against the uid list only, a gid against the gid list only; gid 0 is
    no one's privilege; a peer whose uid is unknown is never an admin."""
    assert not POLICY.is_admin(peer)


def test_no_allowlist_leaves_root_alone() -> None:
    """With empty allowlists only uid 0 is an admin, whatever the peer's groups."""
    policy = AdminPolicy()
    assert policy.is_admin(Peer(1, 0, 0))
    assert not policy.is_admin(Peer(1, 1, 1, frozenset({0, 1, 27})))


@pytest.mark.parametrize(
    "bearer",
    [
        pytest.param(TOKEN.lower(), id="other-case"),
        pytest.param(TOKEN.upper(), id="upper-case"),
        pytest.param(TOKEN[:-1], id="prefix"),
        pytest.param(TOKEN + "x", id="longer"),
        pytest.param(f" {TOKEN}", id="leading-space"),
        pytest.param("", id="empty"),
    ],
)
def test_the_token_compare_is_exact(bearer: str) -> None:
    """Only the token itself matches: not another case, not a prefix, not a longer string."""
    assert POLICY.token_matches(TOKEN)
    assert not POLICY.token_matches(bearer)


@pytest.mark.parametrize("bearer", ["", "None", TOKEN])
def test_without_a_configured_token_nothing_matches(bearer: str) -> None:
    """No token configured: no bearer is ever an admin."""
    assert not AdminPolicy(uids=frozenset({1000})).token_matches(bearer)


def refusal(policy: AdminPolicy, peer: Peer, bearer: str | None) -> tuple[Any, list[Any]]:
    with capture_logs() as logs, pytest.raises(AdminRequired) as refused:
        policy.require_admin(peer, "jobs.cleanup", bearer)
    return refused.value, logs


def test_a_non_admin_is_refused_with_the_reason_and_a_log_line() -> None:
    """-32010 "Admin required" naming the method, the uid and why; one warning with uid and pid."""
    error, logs = refusal(POLICY, Peer(4321, 5000, 5001), None)
    assert error.code == -32010
    assert error.message == "Admin required"
    assert error.data == {
        "method": "jobs.cleanup",
        "uid": 5000,
        "reason": "not an admin uid or gid",
    }
    assert logs == [
        {
            "event": "admin_refused",
            "log_level": "warning",
            "method": "jobs.cleanup",
            "reason": "not an admin uid or gid",
            "peer_uid": 5000,
            "peer_pid": 4321,
        }
    ]


def test_a_wrong_token_is_refused_even_from_root() -> None:
    """A presented token decides alone: a wrong one is refused for uid 0 too, and not logged."""
    error, logs = refusal(POLICY, Peer(1, 0, 0), "guess")
    assert error.code == -32010
    assert error.data == {"method": "jobs.cleanup", "uid": 0, "reason": "invalid bearer token"}
    assert [(e["event"], e["reason"], e["peer_uid"]) for e in logs] == [
        ("admin_refused", "invalid bearer token", 0)
    ]
    assert "guess" not in repr(logs)
    assert TOKEN not in repr(logs)


def test_a_token_when_none_is_configured_is_refused() -> None:
    """A bearer sent to a service without a token is a wrong token, whoever sends it."""
    error, _ = refusal(AdminPolicy(), Peer(1, 0, 0), "anything")
    assert error.data["reason"] == "invalid bearer token"


def test_the_right_token_or_an_admin_peer_passes_silently() -> None:
    """The right token makes any peer an admin; without a token an admin peer passes; no log."""
    with capture_logs() as logs:
        POLICY.require_admin(Peer(1, 5000, 5001), "jobs.cleanup", TOKEN)
        POLICY.require_admin(Peer.unknown(), "jobs.cleanup", TOKEN)
        POLICY.require_admin(Peer(1, 1000, 5001), "jobs.cleanup")
        POLICY.require_admin(Peer(1, 5000, 27), "jobs.cleanup", None)
    assert logs == []


def test_the_token_is_not_shown_by_repr() -> None:
    """The policy can be printed or logged without its token."""
    assert TOKEN not in repr(POLICY)


def test_the_peer_of_a_unix_socket_is_this_process() -> None:
    """SO_PEERCRED (and SO_PEERGROUPS) on one end of a socketpair give this process's identity."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        peer = Peer.of_socket(left)
    assert peer == Peer(os.getpid(), os.getuid(), os.getgid(), frozenset(os.getgroups()))


def test_no_socket_or_another_family_is_an_unknown_peer() -> None:
    """No socket, anything else that is not an AF_UNIX socket: the peer is unknown."""
    assert Peer.of_socket(None) == Peer.unknown()
    assert Peer.of_socket(object()) == Peer.unknown()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        assert Peer.of_socket(tcp) == Peer.unknown()
    assert Peer.unknown() == Peer(None, None, None, frozenset())


class FakeUnixSocket:
    """A Unix socket whose credential options answer as given (an OSError is raised)."""

    family = socket.AF_UNIX

    def __init__(self, cred: bytes | OSError, groups: bytes | OSError) -> None:
        self.answers = {socket.SO_PEERCRED: cred, SO_PEERGROUPS: groups}
        self.asked: list[tuple[int, int, int]] = []

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        self.asked.append((level, option, size))
        answer = self.answers[option]
        if isinstance(answer, OSError):
            raise answer
        return answer


CRED = struct.pack("3i", 77, 5000, 5001)


def test_credentials_that_cannot_be_read_make_an_unknown_peer() -> None:
    """SO_PEERCRED failing: unknown peer, never an admin."""
    peer = Peer.of_socket(FakeUnixSocket(OSError("no"), struct.pack("I", 0)))
    assert peer == Peer.unknown()


def test_groups_that_cannot_be_read_leave_uid_and_gid() -> None:
    """SO_PEERGROUPS failing (an old kernel): the peer keeps its uid and gid, without groups."""
    sock = FakeUnixSocket(CRED, OSError("no"))
    assert Peer.of_socket(sock) == Peer(77, 5000, 5001, frozenset())
    assert sock.asked == [
        (socket.SOL_SOCKET, socket.SO_PEERCRED, 12),
        (socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 256),
    ]


def test_supplementary_groups_are_read_whole() -> None:
    """Every group the kernel lists is read, as unsigned ids; a trailing partial entry is not."""
    groups = struct.pack("4I", 4, 27, 100, 4_000_000_000) + b"\x01\x02"
    peer = Peer.of_socket(FakeUnixSocket(CRED, groups))
    assert peer.groups == frozenset({4, 27, 100, 4_000_000_000})
    assert Peer.of_socket(FakeUnixSocket(CRED, b"")).groups == frozenset()
