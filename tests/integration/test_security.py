"""Who may do what: admin methods, the relay token, the socket's mode and group, hostile names."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hero_codescalers.logs import merge_call
from hero_codescalers.methods import registry
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator

from ..conftest import Caller, ServiceFactory
from ..names import ACTOR_ONLY, HOSTILE_NAMES
from .peers import IS_ROOT, NOBODY, PeerCannotConnect, post_as
from .population import add_job

needs_root = pytest.mark.skipif(not IS_ROOT, reason="starting a peer under another uid needs root")
ADMIN_METHODS = sorted(name for name, m in registry.methods.items() if m.admin)
SECRET = "s3cr3t-relay-token-0123456789"  # noqa: S105 -- a test token, the point of the test


def request(method: str, params: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}


@needs_root
@pytest.mark.parametrize("method", ADMIN_METHODS)
async def test_every_admin_method_refuses_a_non_admin(
    simulator: Simulator, make_service: ServiceFactory, method: str
) -> None:
    """Each admin method, called alone by uid 65534, answers -32010 and touches nothing."""
    add_job(simulator.store)
    svc = await make_service()
    _, answer = await post_as(NOBODY, NOBODY, svc.socket, request(method))
    assert answer["error"]["code"] == -32010
    assert simulator.calls["job.list"] == 0
    assert len(simulator.store.jobs) == 1


def test_admin_methods_are_the_destructive_ones() -> None:
    """jobs.cleanup and its history are admin-only; reads and submissions are open."""
    assert ADMIN_METHODS == ["jobs.cleanup", "jobs.cleanup_history"]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


@needs_root
async def test_the_relay_token_makes_a_non_admin_peer_an_admin(
    simulator: Simulator, make_service: ServiceFactory, token_file: Path
) -> None:
    """Behind a relay (here uid 65534), the right bearer token is admin; wrong or none is not."""
    svc = await make_service(token_file=token_file)
    add_job(simulator.store)
    with capture_logs(processors=[merge_call]) as logs:
        _, missing = await post_as(NOBODY, NOBODY, svc.socket, request("jobs.cleanup"))
        _, wrong = await post_as(
            NOBODY, NOBODY, svc.socket, request("jobs.cleanup"), {"Authorization": "Bearer nope"}
        )
        _, malformed = await post_as(
            NOBODY, NOBODY, svc.socket, request("jobs.cleanup"), {"Authorization": SECRET}
        )
        _, right = await post_as(
            NOBODY,
            NOBODY,
            svc.socket,
            request("jobs.cleanup"),
            {"Authorization": f"Bearer {SECRET}"},
        )
    assert missing["error"]["data"]["reason"] == "not an admin uid or gid"
    assert wrong["error"]["data"]["reason"] == "invalid bearer token"
    assert malformed["error"]["code"] == -32010
    assert right["result"]["jobs_deleted"] == 1
    assert [e["reason"] for e in logs if e["event"] == "admin_refused"] == [
        "not an admin uid or gid",
        "invalid bearer token",
        "invalid bearer token",
    ]
    assert SECRET not in repr(logs), "the token reached the log"


async def test_a_wrong_token_is_refused_even_from_root(
    simulator: Simulator, make_service: ServiceFactory, token_file: Path
) -> None:
    """A presented token decides: a wrong one is refused whoever the peer is."""
    svc = await make_service(token_file=token_file)
    caller = Caller(svc.socket)
    body = '{"jsonrpc": "2.0", "id": 1, "method": "jobs.cleanup", "params": {}}'
    headers = {"Content-Type": "application/json", "Authorization": "Bearer guess"}
    _, answer = await caller.post(body, headers)
    assert answer["error"]["code"] == -32010
    _, answer = await caller.post(body, {**headers, "Authorization": f"Bearer {SECRET}"})
    assert "result" in answer


def test_the_token_is_never_printed(token_file: Path) -> None:
    """Settings hide a token given directly; a token file's content is read only when used."""
    direct = Settings(token=SECRET)
    from_file = Settings(token_file=token_file)
    assert SECRET not in repr(direct)
    assert SECRET not in str(direct.model_dump())
    assert SECRET not in repr(from_file)
    assert direct.bearer_token() == from_file.bearer_token() == SECRET


async def test_the_socket_is_created_with_its_mode(make_service: ServiceFactory) -> None:
    """0660 by default (owner and group only); configurable."""
    default = await make_service(socket_mode=0o660)
    assert stat.S_IMODE(default.socket.stat().st_mode) == 0o660
    assert stat.S_ISSOCK(default.socket.stat().st_mode)
    tight = await make_service(socket_mode=0o600)
    assert stat.S_IMODE(tight.socket.stat().st_mode) == 0o600


@needs_root
async def test_a_peer_outside_the_mode_cannot_connect(make_service: ServiceFactory) -> None:
    """Socket 0660 root:root: uid 65534 is refused by the kernel before any request."""
    svc = await make_service(socket_mode=0o660)
    with pytest.raises(PeerCannotConnect, match="PermissionError"):
        await post_as(NOBODY, NOBODY, svc.socket, request("system.health"))


@needs_root
async def test_a_socket_group_lets_its_members_in(make_service: ServiceFactory) -> None:
    """With socket_group set, the group's members connect (and stay non-admin)."""
    svc = await make_service(socket_mode=0o660, socket_group=str(NOBODY))
    assert svc.socket.stat().st_gid == NOBODY
    _, health = await post_as(NOBODY, NOBODY, svc.socket, request("system.health"))
    assert health["result"]["status"] == "ok"
    _, cleanup = await post_as(NOBODY, NOBODY, svc.socket, request("jobs.cleanup"))
    assert cleanup["error"]["code"] == -32010


@pytest.mark.parametrize("field", ["kind", "target", "actor"])
async def test_hostile_names_never_reach_hero_proc(
    simulator: Simulator, caller: Caller, field: str
) -> None:
    """Wildcards, %, .., empty, long, unicode look-alikes: -32602 naming the field, no listing."""
    add_job(simulator.store)
    names = [*HOSTILE_NAMES.values(), *(ACTOR_ONLY.values() if field == "actor" else ())]
    for name in names:
        err = await caller.error("jobs.cleanup", {field: name})
        assert err["code"] == -32602, name
        assert err["data"].startswith(f"{field}: "), name
    assert simulator.calls["job.list"] == 0
    assert len(simulator.store.jobs) == 1


async def test_the_service_runs_without_root(make_service: ServiceFactory) -> None:
    """Nothing in the service needs privileges: its files are its own (owner = this uid)."""
    svc = await make_service()
    assert svc.socket.stat().st_uid == os.geteuid()
