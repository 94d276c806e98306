"""Configuration mistakes: one line naming the setting, the value and what would be valid,
exit 2, no traceback; unknown variables and an unreachable hero_proc are warned about."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hero_codescalers.config_errors import unknown_variables
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator

from ..conftest import Caller
from .peers import IS_ROOT
from .test_processes import command, command_env, service_env

PREFIX = "hero_codescalers: configuration error: "


def mistakes(tmp: Path) -> list[object]:
    """(flags, environment, the line expected to start with) per mistake."""
    plain = tmp / "plain-file"
    plain.write_text("x")
    open_dir = tmp / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # anyone could swap the socket in it
    return [
        pytest.param(
            ["--token-file", str(tmp / "missing")],
            {},
            f"--token-file={tmp / 'missing'}: no such file; expected a readable file",
            id="missing-token-file",
        ),
        pytest.param(
            [],
            {"HERO_CODESCALERS_TOKEN_FILE": str(tmp)},
            f"HERO_CODESCALERS_TOKEN_FILE={tmp}: is a directory; expected a readable file",
            id="token-file-is-a-directory",
        ),
        pytest.param(
            ["--socket-group", "no-such-group-hc"],
            {},
            "--socket-group=no-such-group-hc: no such group; expected a group name",
            id="unknown-group",
        ),
        pytest.param(
            ["--socket", str(plain / "sub" / "rpc.sock")],
            {},
            f"--socket={plain / 'sub' / 'rpc.sock'}: {plain} is not a directory; expected a path",
            id="uncreatable-socket-dir",
        ),
        pytest.param(
            ["--socket", str(open_dir / "rpc.sock")],
            {},
            f"--socket={open_dir / 'rpc.sock'}: socket directory {open_dir} is writable by "
            "group or others (mode 0777) without the sticky bit; expected a directory owned",
            id="unsafe-socket-dir",
        ),
        pytest.param(
            ["--socket-mode", "999"],
            {},
            "--socket-mode=999: '999' is not an octal number; expected an octal file mode",
            id="bad-mode",
        ),
        pytest.param(
            [],
            {"HERO_CODESCALERS_MAX_INFLIGHT": "lots"},
            "HERO_CODESCALERS_MAX_INFLIGHT=lots: input should be a valid integer",
            id="bad-number",
        ),
        pytest.param(
            [],
            {"HERO_CODESCALERS_HERO_PROC_TIMEOUT": "0"},
            "HERO_CODESCALERS_HERO_PROC_TIMEOUT=0: input should be greater than 0; expected",
            id="zero-timeout",
        ),
        pytest.param(
            [],
            {"HERO_CODESCALERS_ADMIN_UIDS": "alice"},
            "HERO_CODESCALERS_ADMIN_UIDS=alice: 'alice' is not a list of numeric ids; expected",
            id="uid-name",
        ),
    ]


CASES = [
    "missing-token-file",
    "token-file-is-a-directory",
    "unknown-group",
    "uncreatable-socket-dir",
    "unsafe-socket-dir",
    "bad-mode",
    "bad-number",
    "zero-timeout",
    "uid-name",
]


@pytest.mark.parametrize("case", range(len(CASES)), ids=CASES)
async def test_a_mistake_is_one_line_and_exit_2(sock_dir: Path, tmp_path: Path, case: int) -> None:
    """Each mistake: exit 2, one line on stderr naming setting, value and what is valid."""
    param = mistakes(tmp_path)[case]
    assert param.id == CASES[case]  # type: ignore[attr-defined]
    args, env, expected = param.values  # type: ignore[attr-defined]
    async with command("serve", *args, env=command_env(sock_dir, **env)) as svc:
        out, err = await svc.process.communicate()
    text = err.decode()
    assert svc.process.returncode == 2, text
    assert text.count("\n") == 1, text
    assert text.startswith(PREFIX + expected), text
    assert out == b""


@pytest.mark.skipif(IS_ROOT, reason="root reads any file")
async def test_an_unreadable_token_file(sock_dir: Path, tmp_path: Path) -> None:
    """A token file this user may not read is named with the uid that tried."""
    token = tmp_path / "token"
    token.write_text("secret")
    token.chmod(0)
    async with command("serve", "--token-file", str(token), env=command_env(sock_dir)) as svc:
        _, err = await svc.process.communicate()
    assert svc.process.returncode == 2
    assert err.decode() == (
        f"{PREFIX}--token-file={token}: not readable by uid {os.geteuid()}; "
        "expected a readable file holding the bearer token (mode 0600)\n"
    )


async def test_a_bad_flag_value_is_one_line(sock_dir: Path) -> None:
    """click's own usage errors are one line too, naming the command, flag and value."""
    async with command("serve", "--admin-uid", "root", env=command_env(sock_dir)) as svc:
        _, err = await svc.process.communicate()
    assert svc.process.returncode == 2
    assert err.decode() == (
        "hero_codescalers serve: Invalid value for '--admin-uid': 'root' is not a valid "
        "integer. (see hero_codescalers serve --help)\n"
    )


async def test_a_misspelled_variable_is_named_with_the_closest_name(
    sock_dir: Path, simulator: Simulator
) -> None:
    """HERO_CODESCALERS_ADMIN_UID (no S) is warned about at start; the service still starts."""
    env = service_env(sock_dir, simulator, HERO_CODESCALERS_ADMIN_UID="1000")
    async with command("serve", env=env) as svc:
        warning = await svc.wait_for("unknown_variable")
        await svc.wait_for("service_started")
        assert await svc.stop() == 0
    assert warning["variable"] == "HERO_CODESCALERS_ADMIN_UID"
    assert warning["closest"] == "HERO_CODESCALERS_ADMIN_UIDS"
    assert warning["level"] == "warning"


def test_unknown_variables_are_found_without_regard_to_case() -> None:
    """Known names (any case) pass; unknown ones get the closest name or None."""
    environ = {
        "HERO_CODESCALERS_SOCKET": "x",
        "hero_codescalers_log_level": "info",
        "HERO_CODESCALERS_MAX_INFLIHGT": "1",
        "HERO_CODESCALERS_STATE_DIR": "/var/lib/x",
        "HERO_CODESCALERS_ZZZZZZZZZZZZZZZZZZZ": "1",
        "HERO_SOCKET_DIR": "/run/hero",
    }
    assert unknown_variables(environ, Settings.model_fields) == [
        ("HERO_CODESCALERS_MAX_INFLIHGT", "HERO_CODESCALERS_MAX_INFLIGHT"),
        ("HERO_CODESCALERS_ZZZZZZZZZZZZZZZZZZZ", None),
    ]


async def test_an_unreachable_hero_proc_is_one_warning_and_the_service_starts(
    sock_dir: Path,
) -> None:
    """No hero_proc at start: one warning line naming its socket; health answers degraded."""
    path = sock_dir / "hero_codescalers" / "rpc.sock"
    async with command("serve", env=command_env(sock_dir)) as svc:
        await svc.wait_for("service_started")
        warning = await svc.wait_for("hero_proc_unreachable")
        assert (await Caller(path).call("system.health"))["status"] == "degraded"
        assert await svc.stop() == 0
    assert warning["level"] == "warning"
    assert warning["socket"] == str(sock_dir / "hero_proc" / "rpc.sock")
    assert "socket not found" in warning["reason"]
    assert [line["event"] for line in svc.lines].count("hero_proc_unreachable") == 1


async def test_a_reachable_hero_proc_gives_no_warning(sock_dir: Path, simulator: Simulator) -> None:
    """With hero_proc answering, the start logs no warning at all."""
    async with command("serve", env=service_env(sock_dir, simulator)) as svc:
        await svc.wait_for("service_started")
        await Caller(sock_dir / "hero_codescalers" / "rpc.sock").call("system.health")
        assert await svc.stop() == 0
    assert [line for line in svc.lines if line.get("level") == "warning"] == []
