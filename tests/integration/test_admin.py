"""The admin check uses the peer's credentials from the socket (SO_PEERCRED)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.auth import AdminPolicy, Peer
from hero_codescalers.logs import merge_call
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator

from ..conftest import Caller, Service, start_service
from .peers import IS_ROOT, NOBODY, post_as
from .population import add_job

needs_root = pytest.mark.skipif(not IS_ROOT, reason="starting a peer under another uid needs root")

CLEANUP = {"jsonrpc": "2.0", "id": 1, "method": "jobs.cleanup", "params": {}}


async def running(settings: Settings) -> AsyncIterator[Service]:
    svc, runner, sock, _ = await start_service(settings)
    try:
        yield svc
    finally:
        await runner.cleanup()
        sock.close()


@pytest.fixture
async def open_service(
    sock_dir: Path, simulator: Simulator, request: pytest.FixtureRequest
) -> AsyncIterator[Service]:
    """A service whose socket any uid may open; admin allowlists from the test's parameters."""
    extra: dict[str, Any] = getattr(request, "param", {})
    settings = Settings(
        socket=sock_dir / "svc.sock",
        hero_proc_socket=sock_dir / "hero_proc.sock",
        socket_mode=0o666,
        **extra,
    )
    async for svc in running(settings):
        yield svc


@needs_root
async def test_a_non_admin_uid_is_refused_and_nothing_is_deleted(
    simulator: Simulator, open_service: Service
) -> None:
    """uid 65534 gets -32010; the refusal is logged with its uid and pid; the jobs stay."""
    job = add_job(simulator.store)
    with capture_logs(processors=[merge_call]) as logs:
        status, answer = await post_as(NOBODY, NOBODY, open_service.socket, CLEANUP)
    assert status == 200
    assert answer["error"]["code"] == -32010
    assert answer["error"]["message"] == "Admin required"
    assert answer["error"]["data"] == {
        "method": "jobs.cleanup",
        "uid": NOBODY,
        "reason": "not an admin uid or gid",
    }
    assert set(simulator.store.jobs) == {job}
    assert simulator.calls["job.list"] == 0  # nothing reached the engine
    refusal = next(e for e in logs if e["event"] == "admin_refused")
    assert refusal["peer_uid"] == NOBODY
    assert isinstance(refusal["peer_pid"], int)
    assert refusal["peer_pid"] != os.getpid()
    assert refusal["log_level"] == "warning"


@needs_root
async def test_a_non_admin_may_still_read(simulator: Simulator, open_service: Service) -> None:
    """Non-admin methods answer any peer that can open the socket."""
    add_job(simulator.store)
    status, answer = await post_as(
        NOBODY, NOBODY, open_service.socket, {"jsonrpc": "2.0", "id": 1, "method": "stats"}
    )
    assert status == 200
    assert answer["result"]["codescaler"]["jobs"] == 1


@needs_root
@pytest.mark.parametrize(
    "open_service",
    [
        pytest.param({"admin_uids": [NOBODY]}, id="uid-allowlist"),
        pytest.param({"admin_gids": [NOBODY]}, id="gid-allowlist"),
    ],
    indirect=True,
)
async def test_an_allowed_non_root_peer_may_clean_up(
    simulator: Simulator, open_service: Service
) -> None:
    """A uid (or primary gid) on the allowlist is an admin."""
    add_job(simulator.store)
    status, answer = await post_as(NOBODY, NOBODY, open_service.socket, CLEANUP)
    assert status == 200
    assert answer["result"]["jobs_deleted"] == 1
    assert not simulator.store.jobs


@needs_root
async def test_uid_zero_is_admin(simulator: Simulator, open_service: Service) -> None:
    """root is always an admin."""
    add_job(simulator.store)
    assert (await Caller(open_service.socket).call("jobs.cleanup", {}))["jobs_deleted"] == 1


@needs_root
async def test_admin_methods_in_a_batch_are_refused_item_by_item(
    simulator: Simulator, open_service: Service
) -> None:
    """In a batch from a non-admin, admin items get -32010 and the others their results."""
    batch = [
        CLEANUP,
        {"jsonrpc": "2.0", "id": 2, "method": "system.health"},
        {"jsonrpc": "2.0", "id": 3, "method": "jobs.cleanup_history"},
    ]
    _, answer = await post_as(NOBODY, NOBODY, open_service.socket, batch)
    by_id = {a["id"]: a for a in answer}
    assert by_id[1]["error"]["code"] == -32010
    assert by_id[3]["error"]["code"] == -32010
    assert by_id[2]["result"]["status"] == "ok"


@pytest.mark.skipif(IS_ROOT, reason="as root the test process is itself an admin")
async def test_this_unprivileged_process_is_refused(
    simulator: Simulator, open_service: Service
) -> None:
    """Run as a non-root user, the test process itself is a non-admin peer."""
    add_job(simulator.store)
    assert (await Caller(open_service.socket).error("jobs.cleanup", {}))["code"] == -32010
    assert simulator.store.jobs


def test_policy_rules() -> None:
    """uid 0, allowed uids, allowed primary or supplementary gids; unknown peers never."""
    policy = AdminPolicy(uids=frozenset({1000}), gids=frozenset({27}))
    assert policy.is_admin(Peer(1, 0, 0))
    assert policy.is_admin(Peer(1, 1000, 1000))
    assert policy.is_admin(Peer(1, 1001, 27))
    assert policy.is_admin(Peer(1, 1001, 1001, frozenset({27})))
    assert not policy.is_admin(Peer(1, 1001, 1001, frozenset({28})))
    assert not policy.is_admin(Peer.unknown())


OTHER_GID = 4242  # a gid that differs from every uid used here


@pytest.mark.parametrize(
    ("policy", "peer", "admin"),
    [
        pytest.param({"uids": {OTHER_GID}}, Peer(1, NOBODY, OTHER_GID), False, id="gid-not-a-uid"),
        pytest.param({"gids": {NOBODY}}, Peer(1, NOBODY, OTHER_GID), False, id="uid-not-a-gid"),
        pytest.param({"uids": {NOBODY}}, Peer(1, NOBODY, OTHER_GID), True, id="uid-allowed"),
        pytest.param({"gids": {OTHER_GID}}, Peer(1, NOBODY, OTHER_GID), True, id="gid-allowed"),
        pytest.param(
            {"gids": {OTHER_GID}},
            Peer(1, NOBODY, NOBODY, frozenset({OTHER_GID})),
            True,
            id="supplementary-gid-allowed",
        ),
        pytest.param(
            {"uids": {OTHER_GID}},
            Peer(1, NOBODY, NOBODY, frozenset({OTHER_GID})),
            False,
            id="supplementary-gid-not-a-uid",
        ),
        pytest.param({}, Peer(1, NOBODY, 0), False, id="gid-0-is-not-admin"),
        pytest.param({}, Peer(1, NOBODY, NOBODY, frozenset({0})), False, id="group-0-is-not-admin"),
        pytest.param({"gids": {0}}, Peer(1, NOBODY, 0), True, id="gid-0-when-configured"),
        pytest.param({}, Peer(1, 0, NOBODY), True, id="uid-0"),
        pytest.param({"uids": {NOBODY}, "gids": {0}}, Peer.unknown(), False, id="unknown"),
    ],
)
def test_uids_and_gids_are_never_confused(
    policy: dict[str, set[int]], peer: Peer, admin: bool
) -> None:
    """With uid != gid, a uid matches only the uid list and a gid only the gid list; gid 0
    is an admin only when configured."""
    rules = AdminPolicy(**{k: frozenset(v) for k, v in policy.items()})  # type: ignore[arg-type]
    assert rules.is_admin(peer) is admin


@needs_root
@pytest.mark.parametrize(
    ("open_service", "uid", "gid", "admin"),
    [
        pytest.param({"admin_uids": [OTHER_GID]}, NOBODY, OTHER_GID, False, id="gid-on-uid-list"),
        pytest.param({"admin_gids": [NOBODY]}, NOBODY, OTHER_GID, False, id="uid-on-gid-list"),
        pytest.param({"admin_gids": [OTHER_GID]}, NOBODY, OTHER_GID, True, id="gid-on-gid-list"),
        pytest.param({"admin_uids": [NOBODY]}, NOBODY, OTHER_GID, True, id="uid-on-uid-list"),
        pytest.param({}, NOBODY, 0, False, id="gid-0"),
    ],
    indirect=["open_service"],
)
async def test_peers_whose_uid_and_gid_differ(
    simulator: Simulator, open_service: Service, uid: int, gid: int, admin: bool
) -> None:
    """A real peer process with uid != gid: each id is checked against its own list only."""
    add_job(simulator.store)
    _, answer = await post_as(uid, gid, open_service.socket, CLEANUP)
    if admin:
        assert answer["result"]["jobs_deleted"] == 1
    else:
        assert answer["error"]["code"] == -32010
        assert answer["error"]["data"]["uid"] == uid
        assert len(simulator.store.jobs) == 1


@pytest.mark.skipif(IS_ROOT, reason="as root the test process is itself an admin")
@pytest.mark.parametrize(
    "open_service",
    [
        pytest.param({"admin_uids": [os.getgid()]}, id="own-gid-on-uid-list"),
        pytest.param({"admin_gids": [os.getuid()]}, id="own-uid-on-gid-list"),
    ],
    indirect=True,
)
async def test_this_process_is_not_admitted_by_the_wrong_list(
    simulator: Simulator, open_service: Service
) -> None:
    """Run as a non-root user: its gid on the uid list (or uid on the gid list) admits
    nothing (meaningful when this user's uid and gid differ)."""
    if os.getuid() == os.getgid():
        pytest.skip("this user's uid and gid are equal")
    add_job(simulator.store)
    assert (await Caller(open_service.socket).error("jobs.cleanup", {}))["code"] == -32010
