"""Configuration mistakes, each told in one line before the service starts.

A mistake in a flag, an environment variable or a file the settings name is a
`ConfigError`: the setting as the operator wrote it (`--socket-group` or
`HERO_CODESCALERS_SOCKET_GROUP`), the value, what is wrong and what would be
valid. `serve` prints it and exits 2, without a traceback. `check()` finds the
mistakes that only show when the settings are used (a group that does not
exist, a token file that cannot be read, a socket directory that cannot be
created); `describe()` turns pydantic's validation errors into the same lines;
`unknown_variables()` names the `HERO_CODESCALERS_*` variables nothing reads,
with the closest known name.
"""

from __future__ import annotations

import difflib
import grp
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

ENV_PREFIX = "HERO_CODESCALERS_"
# The flag of `serve` that sets each setting; the others come from the environment only.
FLAGS = {
    "socket": "--socket",
    "hero_proc_socket": "--hero-proc-socket",
    "admin_uids": "--admin-uid",
    "admin_gids": "--admin-gid",
    "socket_mode": "--socket-mode",
    "socket_group": "--socket-group",
    "token_file": "--token-file",
    "log_level": "--log-level",
    "log_format": "--log-format",
    "state_dir": "--state-dir",
    "policies": "--policies",
}
# Variables with the prefix that are read elsewhere than in Settings (none today).
OTHER_VARIABLES: frozenset[str] = frozenset()


class ConfigError(Exception):
    """A setting whose value cannot work: which one, the value, why, what would."""

    def __init__(self, setting: str, value: object, problem: str, expected: str) -> None:
        self.setting = setting
        self.value = value
        self.problem = problem
        self.expected = expected
        shown = setting if value is None else f"{setting}={_show(value)}"
        super().__init__(f"{shown}: {problem}; expected {expected}")


def _show(value: object) -> str:
    if isinstance(value, str | Path):
        text = os.fspath(value)
        return text if text and text.isprintable() and " " not in text else repr(text)
    if isinstance(value, Collection):
        return ",".join(map(str, value))
    return str(value)


def setting_name(field: str, from_flags: Collection[str] = ()) -> str:
    """How the operator wrote the setting: the flag when it came from one, else the variable."""
    if field in from_flags and field in FLAGS:
        return FLAGS[field]
    if field == "socket_dir":
        return "HERO_SOCKET_DIR"
    return ENV_PREFIX + field.upper()


# What a valid value looks like, per setting (pydantic's message says what was wrong).
_EXPECTED = {
    "socket_mode": "an octal file mode from 0000 to 0777, such as 0660",
    "admin_uids": "numeric uids separated by commas, such as 1000,1001",
    "admin_gids": "numeric gids separated by commas, such as 27,1000",
    "hero_proc_timeout": "seconds, a number above 0 and at most 3600",
    "hero_proc_attempts": "a whole number from 1 to 10",
    "cleanup_deadline": "seconds, a number above 0",
    "request_timeout": "seconds, a number above 0",
    "max_inflight": "a whole number of at least 1",
    "max_batch": "a whole number from 1 to 10000",
    "shutdown_grace": "seconds, a number of at least 0",
    "history_days": "a whole number of days from 1 to 36500",
    "log_level": "one of debug, info, warning, error",
    "log_format": "one of auto, json, console",
}


def describe(exc: ValidationError, from_flags: Collection[str] = ()) -> list[ConfigError]:
    """One ConfigError per problem pydantic found in the settings."""
    found = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        problem = message[:1].lower() + message[1:]
        if not error["loc"]:  # a rule between settings: no one value is to blame
            found.append(ConfigError("settings", None, problem, "settings that fit together"))
            continue
        field = str(error["loc"][0])
        found.append(
            ConfigError(
                setting_name(field, from_flags),
                error.get("input", ""),
                problem,
                _EXPECTED.get(field, "a valid value (see `hero_codescalers serve --help`)"),
            )
        )
    return found


def check(settings: Any, from_flags: Collection[str] = ()) -> None:
    """Raise ConfigError for the first setting that cannot work as given.

    `settings` is the service's Settings (typed loosely so that this module does
    not import it): its socket group, token file and socket directory are tried.
    """
    group = settings.socket_group
    if group is not None and not group.isdigit():
        try:
            grp.getgrnam(group)
        except KeyError:
            raise ConfigError(
                setting_name("socket_group", from_flags),
                group,
                "no such group",
                "a group name from the group database (getent group) or a numeric gid",
            ) from None
    _check_token_file(settings, from_flags)
    _check_socket_dir(settings.socket.parent, setting_name("socket", from_flags), settings.socket)


def _check_token_file(settings: Any, from_flags: Collection[str]) -> None:
    path = settings.token_file
    if path is None or settings.token is not None:
        return
    name = setting_name("token_file", from_flags)
    expected = "a readable file holding the bearer token (mode 0600)"
    try:
        token = Path(path).read_text().strip()
    except FileNotFoundError:
        raise ConfigError(name, path, "no such file", expected) from None
    except IsADirectoryError:
        raise ConfigError(name, path, "is a directory", expected) from None
    except PermissionError:
        problem = f"not readable by uid {os.geteuid()}"
        raise ConfigError(name, path, problem, expected) from None
    except (OSError, UnicodeDecodeError) as exc:
        problem = getattr(exc, "strerror", None) or "not a text file"
        raise ConfigError(name, path, problem, expected) from None
    if not token:
        raise ConfigError(name, path, "the file is empty", expected)


def _check_socket_dir(directory: Path, name: str, value: Path) -> None:
    """The socket's directory exists or can be created (the service creates it at start)."""
    if directory.is_dir():
        return
    missing = directory
    while not missing.parent.exists() and missing.parent != missing:
        missing = missing.parent
    parent = missing.parent
    if not parent.is_dir():
        problem = f"{parent} is not a directory"
    elif not os.access(parent, os.W_OK | os.X_OK):
        problem = f"cannot create {missing}: {parent} is not writable by uid {os.geteuid()}"
    else:
        return
    raise ConfigError(
        name,
        value,
        problem,
        "a path whose directory exists or can be created by this user (or set HERO_SOCKET_DIR)",
    )


def unknown_variables(
    environ: Mapping[str, str], known_fields: Iterable[str]
) -> list[tuple[str, str | None]]:
    """The `HERO_CODESCALERS_*` variables that no setting reads, each with the closest
    known name (None when nothing is close). Names are compared without regard to case,
    as the settings read them."""
    known = sorted({ENV_PREFIX + f.upper() for f in known_fields} | OTHER_VARIABLES)
    unknown = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
            unknown.append((name, close[0] if close else None))
    return unknown
