"""One SQLite connection, used off the event loop, one statement batch at a time.

Each operation is a plain function of the connection run on a thread of its
own that ends with it (`Database.read`, `Database.write`): the event loop only
waits for its answer, and an idle service has no extra thread (a test may fork).
Operations never overlap: a thread holds the connection for the whole of one. A write is one
`BEGIN IMMEDIATE … COMMIT` transaction, so that it is whole or absent, and the
lock it takes is waited for at most `BUSY_TIMEOUT_MS` (another process sharing
the state directory may be writing).

Opening checks the file before the service serves: a file that cannot be
opened, that is not a SQLite database or is damaged, or whose schema is newer
than this code is `StateUnusable`, told in one line with what to do. A database
that opens but cannot be written (read-only file, full disk) is served
read-only: writes raise `StateUnavailable` (-32013), reads go on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ..errors import StateUnavailable
from .schema import LATEST, MIGRATIONS

FILE_NAME = "state.db"
BUSY_TIMEOUT_MS = 5_000

T = TypeVar("T")
P = ParamSpec("P")


class StateUnusable(Exception):
    """The state database cannot serve at all: the file, what is wrong, what to do."""

    def __init__(self, path: Path, problem: str, todo: str) -> None:
        super().__init__(f"state database {path}: {problem}; {todo}")
        self.path = path


_MOVE_ASIDE = (
    "move it aside (the history it holds is then lost to the service) or restore a backup, "
    "then start again"
)


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args)` on a thread of its own; the thread has ended when this returns."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def hand_over(value: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)  # type: ignore[arg-type] # T when there is no error

    def work() -> None:
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the waiting coroutine
            loop.call_soon_threadsafe(hand_over, None, exc)
        else:
            loop.call_soon_threadsafe(hand_over, value, None)

    thread = threading.Thread(target=work, name="hero_codescalers-state", daemon=True)
    thread.start()
    # Left behind by a cancelled caller, the work goes on: its failure is not reported.
    done.add_done_callback(lambda f: f.cancelled() or f.exception())
    value = await asyncio.shield(done)
    thread.join()  # it has handed over its answer: only its return is left
    return value


class Database:
    """The state database of one service process."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection = connection
        # Held by the thread using the connection: a caller cancelled meanwhile does not
        # let the next operation in before the last one has ended.
        self._turn = threading.Lock()

    def _serial(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._turn:
            return fn(*args, **kwargs)

    @classmethod
    async def open(cls, directory: Path) -> Database:
        """Open (creating if need be) and migrate `directory`/state.db; StateUnusable
        when it cannot serve."""
        path = directory / FILE_NAME
        return cls(path, await _in_thread(_connect, directory, path))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` on the connection; StateUnavailable when the database cannot be read."""
        return await _in_thread(self._serial, _read, self.path, self._connection, fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` in one transaction; StateUnavailable when the database cannot be written."""
        return await _in_thread(self._serial, _transaction, self.path, self._connection, fn)

    async def vacuum(self) -> None:
        """Give the free pages back to the file system (auto_vacuum = INCREMENTAL)."""
        await _in_thread(self._serial, _vacuum, self.path, self._connection)

    async def close(self) -> None:
        await _in_thread(self._serial, self._connection.close)


def _read(path: Path, connection: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    try:
        return fn(connection)
    except sqlite3.Error as exc:
        raise StateUnavailable(str(path), str(exc), "read") from None


def _transaction(
    path: Path, connection: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]
) -> T:
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            value = fn(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise StateUnavailable(str(path), str(exc)) from None
    return value


def _vacuum(path: Path, connection: sqlite3.Connection) -> None:
    try:
        # executescript steps the pragma to its end (execute would free one page).
        connection.executescript("PRAGMA incremental_vacuum;")
    except sqlite3.Error as exc:
        raise StateUnavailable(str(path), str(exc)) from None


def _connect(directory: Path, path: Path) -> sqlite3.Connection:
    """The connection to `path`, configured, checked and migrated."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateUnusable(
            path,
            f"cannot create its directory {directory}: {exc.strerror or exc}",
            "set HERO_CODESCALERS_STATE_DIR (or --state-dir) to a directory this user may "
            "create or write",
        ) from None
    try:
        connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.Error as exc:
        raise StateUnusable(
            path, f"cannot be opened ({exc})", "check the file's and its directory's owner and mode"
        ) from None
    try:
        _prepare(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _usable_version(connection: sqlite3.Connection, path: Path) -> int:
    """The schema version of a database this service can use, or StateUnusable saying why
    not (not SQLite, damaged, newer, or another program's)."""
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        damage = [row[0] for row in connection.execute("PRAGMA quick_check")]
        # One statement, one snapshot: another process starting on a new file may commit
        # its first migration between two reads (tables, and then the version).
        version, tables = connection.execute(
            "SELECT user_version, (SELECT count(*) FROM sqlite_master) FROM pragma_user_version"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise StateUnusable(path, f"not a usable SQLite database ({exc})", _MOVE_ASIDE) from None
    if damage != ["ok"]:
        raise StateUnusable(path, f"damaged ({'; '.join(damage[:3])})", _MOVE_ASIDE)
    if version > LATEST:
        raise StateUnusable(
            path,
            f"its schema is version {version}, newer than this hero_codescalers knows ({LATEST})",
            "run the newer hero_codescalers that wrote it, or move the file aside",
        )
    if version == 0 and tables:
        raise StateUnusable(path, "a SQLite database, but not hero_codescalers' state", _MOVE_ASIDE)
    return int(version)


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    version = _usable_version(connection, path)
    try:
        if version == 0:
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        for number in range(version + 1, LATEST + 1):
            _migrate(connection, number)
    except sqlite3.Error as exc:
        if version == LATEST:
            return  # read-only, say: served so, writes refused one by one
        raise StateUnusable(
            path,
            f"cannot be migrated from schema version {version} to {LATEST} ({exc})",
            "make the file and its directory writable by this user, then start again",
        ) from None


def _migrate(connection: sqlite3.Connection, number: int) -> None:
    """Migration `number`, unless another process starting on the same file has made it
    meanwhile (the version is read again under the write lock)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        if connection.execute("PRAGMA user_version").fetchone()[0] < number:
            for statement in MIGRATIONS[number - 1]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """The rows of `cursor` as dicts by column name."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]
