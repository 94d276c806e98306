"""All configuration, read once from the environment (and the CLI) in `main()`.

| variable                            | default                                     |
|-------------------------------------|---------------------------------------------|
| HERO_SOCKET_DIR                     | ~/hero/var/sockets                          |
| HERO_CODESCALERS_SOCKET             | $HERO_SOCKET_DIR/hero_codescalers/rpc.sock  |
| HERO_CODESCALERS_HERO_PROC_SOCKET   | $HERO_SOCKET_DIR/hero_proc/rpc.sock         |
| HERO_CODESCALERS_ADMIN_UIDS         | (none; uid 0 is always admin)               |
| HERO_CODESCALERS_ADMIN_GIDS         | (none)                                      |
| HERO_CODESCALERS_SOCKET_MODE        | 0660                                        |
| HERO_CODESCALERS_SOCKET_GROUP       | (unchanged) group name or gid of the socket |
| HERO_CODESCALERS_TOKEN_FILE         | (none) file with the relay bearer token     |
| HERO_CODESCALERS_TOKEN              | (none) the token itself (prefer the file)   |
| HERO_CODESCALERS_HERO_PROC_TIMEOUT  | 10 (seconds, per hero_proc call)            |
| HERO_CODESCALERS_HERO_PROC_ATTEMPTS | 3 (tries of an idempotent hero_proc call)   |
| HERO_CODESCALERS_CLEANUP_DEADLINE   | 900 (seconds; then it stops, partial)       |
| HERO_CODESCALERS_REQUEST_TIMEOUT    | 15 (seconds to send a whole request)        |
| HERO_CODESCALERS_MAX_INFLIGHT       | 256 (calls handled at once; then -32012)    |
| HERO_CODESCALERS_ADMIN_RESERVE      | 16 (of those calls and of the connections,  |
|                                     | kept for admins)                            |
| HERO_CODESCALERS_PEER_CONCURRENCY   | 4 (calls of one non-admin uid running at    |
|                                     | once; its other calls wait their turn)      |
| HERO_CODESCALERS_MAX_CONNECTIONS    | 4096 (open at once; more are closed at once)|
| HERO_CODESCALERS_LISTEN_BACKLOG     | 1024 (connections waiting to be accepted)   |
| HERO_CODESCALERS_STATS_REUSE        | 2 (seconds a `stats` result is reused; 0 no)|
| HERO_CODESCALERS_MAX_BATCH          | 100 (requests in one JSON-RPC batch)        |
| HERO_CODESCALERS_SHUTDOWN_GRACE     | 30 (seconds to finish work on SIGTERM)      |
| HERO_CODESCALERS_STATE_DIR          | ~/hero/var/hero_codescalers (state.db there)|
| HERO_CODESCALERS_HISTORY_DAYS       | 90 (days a run and its tombstones are kept) |
| HERO_CODESCALERS_POLICIES           | (none: no scheduler) retention policies file|
| HERO_CODESCALERS_POLICIES_DRY_RUN   | false (true: every policy run is a dry run) |
| HERO_CODESCALERS_LOG_LEVEL          | info                                        |
| HERO_CODESCALERS_LOG_FORMAT         | auto (console on a tty, JSON otherwise)     |
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SOCKET_DIR = Path("~/hero/var/sockets")
DEFAULT_STATE_DIR = Path("~/hero/var/hero_codescalers")
SERVICE_SOCKET = Path("hero_codescalers/rpc.sock")
HERO_PROC_SOCKET = Path("hero_proc/rpc.sock")

IdSet = Annotated[frozenset[int], NoDecode]


def _ids(value: Any) -> Any:
    """Accept "0,1000", "1000 1001", a single int, or a list."""
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
        if not all(part.isdigit() for part in parts):
            raise ValueError(f"{value!r} is not a list of numeric ids")
        return [int(part) for part in parts]
    if isinstance(value, int):
        return [value]
    return value


class Settings(BaseSettings):
    """The service's settings; tests build one with keyword arguments."""

    model_config = SettingsConfigDict(
        env_prefix="HERO_CODESCALERS_", extra="forbid", frozen=True, populate_by_name=True
    )

    socket_dir: Path = Field(
        default=DEFAULT_SOCKET_DIR,
        validation_alias=AliasChoices("socket_dir", "HERO_SOCKET_DIR"),
        description="Directory of hero services' sockets",
    )
    socket: Path = Field(description="This service's socket")
    hero_proc_socket: Path = Field(description="hero_proc's socket")
    admin_uids: IdSet = Field(default=frozenset(), description="uids allowed admin methods")
    admin_gids: IdSet = Field(default=frozenset(), description="gids allowed admin methods")
    socket_mode: int = Field(default=0o660, ge=0, le=0o777, description="mode of the socket file")
    socket_group: str | None = Field(default=None, description="group of the socket file")
    token: SecretStr | None = Field(default=None, description="bearer token for relayed admins")
    token_file: Path | None = Field(default=None, description="file holding the bearer token")
    hero_proc_timeout: float = Field(default=10.0, gt=0, le=3600, description="seconds per call")
    hero_proc_attempts: int = Field(default=3, ge=1, le=10, description="tries per idempotent call")
    cleanup_deadline: float = Field(default=900.0, gt=0, description="seconds a cleanup may take")
    request_timeout: float = Field(default=15.0, gt=0, description="seconds to send a request")
    max_inflight: int = Field(default=256, ge=1, description="calls handled at once")
    admin_reserve: int = Field(
        default=16, ge=0, description="calls in flight and connections kept for admins"
    )
    peer_concurrency: int = Field(
        default=4, ge=1, le=1024, description="calls of one non-admin uid running at once"
    )
    max_connections: int = Field(default=4096, ge=1, description="connections open at once")
    listen_backlog: int = Field(default=1024, ge=1, le=65535, description="accept queue length")
    stats_reuse: float = Field(
        default=2.0, ge=0, le=60, description="seconds a `stats` result may be reused"
    )
    max_batch: int = Field(default=100, ge=1, le=10_000, description="requests in one batch")
    shutdown_grace: float = Field(default=30.0, ge=0, description="seconds to finish on SIGTERM")
    state_dir: Path = Field(
        default=DEFAULT_STATE_DIR, description="Directory of the state database (state.db)"
    )
    history_days: int = Field(
        default=90,
        ge=1,
        le=36_500,
        description="days a finished run stays in the history, with its tombstones",
    )
    policies: Path | None = Field(
        default=None, description="Retention policies file (TOML); none: no scheduler"
    )
    policies_dry_run: bool = Field(
        default=False, description="Make every retention policy's run a dry run"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    def bearer_token(self) -> str | None:
        """The token from `token`, else from `token_file` (read now), else None."""
        if self.token is not None:
            return self.token.get_secret_value() or None
        if self.token_file is not None:
            return self.token_file.read_text().strip() or None
        return None

    @field_validator("admin_uids", "admin_gids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        return _ids(value)

    @field_validator("admin_uids", "admin_gids")
    @classmethod
    def _non_negative(cls, value: frozenset[int]) -> frozenset[int]:
        if any(i < 0 for i in value):
            raise ValueError("ids must be >= 0")
        return value

    @field_validator("socket_mode", mode="before")
    @classmethod
    def _octal(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return int(value, 8)
            except ValueError:
                raise ValueError(f"{value!r} is not an octal number") from None
        return value

    @model_validator(mode="after")
    def _reserve_fits(self) -> Settings:
        if self.admin_reserve >= self.max_inflight:
            raise ValueError("admin_reserve must be smaller than max_inflight")
        return self

    @model_validator(mode="before")
    @classmethod
    def _socket_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            base = Path(data.get("socket_dir") or data.get("HERO_SOCKET_DIR") or DEFAULT_SOCKET_DIR)
            data.setdefault("socket", base / SERVICE_SOCKET)
            data.setdefault("hero_proc_socket", base / HERO_PROC_SOCKET)
        return data

    @field_validator("socket_dir", "socket", "hero_proc_socket", "state_dir", "policies")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()
