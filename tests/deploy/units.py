"""Reading the deploy/ files as systemd reads them (enough of the syntax for ours)."""

from __future__ import annotations

from pathlib import Path

DEPLOY = Path(__file__).parent.parent.parent / "deploy"
SERVICE_UNIT = DEPLOY / "hero_codescalers.service"
SOCKET_UNIT = DEPLOY / "hero_codescalers.socket"
ENV_FILE = DEPLOY / "hero_codescalers.env"


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (a key may repeat, as SystemCallFilter= does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def environment(path: Path = ENV_FILE) -> dict[str, str]:
    """The variables an EnvironmentFile= sets (KEY=VALUE lines, comments skipped)."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env
