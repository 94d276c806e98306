"""Settings come from the environment once, with documented names."""

from __future__ import annotations

from pathlib import Path

import pytest

from hero_codescalers.settings import Settings


def test_defaults_follow_hero_socket_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both sockets default under $HERO_SOCKET_DIR, the hero convention."""
    monkeypatch.setenv("HERO_SOCKET_DIR", "/run/hero")
    s = Settings()
    assert s.socket == Path("/run/hero/hero_codescalers/rpc.sock")
    assert s.hero_proc_socket == Path("/run/hero/hero_proc/rpc.sock")
    assert s.socket_mode == 0o660
    assert s.admin_uids == frozenset()


def test_the_state_directory_defaults_under_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """~/hero/var/hero_codescalers unless HERO_CODESCALERS_STATE_DIR says otherwise;
    history kept 90 days."""
    monkeypatch.delenv("HERO_CODESCALERS_STATE_DIR")
    monkeypatch.setenv("HOME", "/home/ops")
    s = Settings()
    assert s.state_dir == Path("/home/ops/hero/var/hero_codescalers")
    assert s.history_days == 90
    monkeypatch.setenv("HERO_CODESCALERS_STATE_DIR", "/var/lib/hero_codescalers")
    monkeypatch.setenv("HERO_CODESCALERS_HISTORY_DAYS", "7")
    s = Settings()
    assert s.state_dir == Path("/var/lib/hero_codescalers")
    assert s.history_days == 7


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every setting has a HERO_CODESCALERS_ variable; id lists are comma separated."""
    monkeypatch.setenv("HERO_CODESCALERS_SOCKET", "/tmp/a.sock")
    monkeypatch.setenv("HERO_CODESCALERS_HERO_PROC_SOCKET", "/tmp/b.sock")
    monkeypatch.setenv("HERO_CODESCALERS_ADMIN_UIDS", "1000, 1001")
    monkeypatch.setenv("HERO_CODESCALERS_ADMIN_GIDS", "27")
    monkeypatch.setenv("HERO_CODESCALERS_SOCKET_MODE", "0600")
    monkeypatch.setenv("HERO_CODESCALERS_HERO_PROC_TIMEOUT", "2.5")
    s = Settings()
    assert s.socket == Path("/tmp/a.sock")
    assert s.hero_proc_socket == Path("/tmp/b.sock")
    assert s.admin_uids == {1000, 1001}
    assert s.admin_gids == {27}
    assert s.socket_mode == 0o600
    assert s.hero_proc_timeout == 2.5


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the CLI passes wins over the environment."""
    monkeypatch.setenv("HERO_CODESCALERS_ADMIN_UIDS", "1000")
    assert Settings(admin_uids=[5]).admin_uids == {5}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HERO_CODESCALERS_ADMIN_UIDS", "-1"),
        ("HERO_CODESCALERS_ADMIN_UIDS", "root"),
        ("HERO_CODESCALERS_SOCKET_MODE", "0999"),
        ("HERO_CODESCALERS_HERO_PROC_TIMEOUT", "0"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """A bad value stops the start instead of being guessed at."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):  # noqa: PT011 -- pydantic's ValidationError is a ValueError
        Settings()
