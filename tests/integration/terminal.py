"""The CLI on a pseudo-terminal, as a person at a terminal runs it.

`Terminal` starts `python -m hero_codescalers ...` with a pty as its controlling
terminal (stdin, stdout and stderr), reads what it prints as it comes, waits for a
given text before the test goes on (no sleeps), types into it and presses Ctrl-C
(the terminal's ^C, which the kernel turns into SIGINT for the command).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import struct
import sys
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
COLUMNS = 200


def plain(text: str) -> str:
    """What a person reads: colours and cursor moves left out, lines ended by \\n."""
    return ANSI.sub("", text).replace("\r\n", "\n")


class Terminal:
    """A running command on a pty, and everything it printed so far."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.raw = b""
        self.closed = False
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the command and every copy of its terminal are gone
            data = b""
        if not data:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.master)
        self.raw += data
        self._changed.set()

    @property
    def text(self) -> str:
        return plain(self.raw.decode(errors="replace"))

    async def expect(self, text: str) -> str:
        """Wait until `text` is on the screen; all that was printed by then."""
        while text not in self.text:
            if self.closed:
                raise AssertionError(f"the command ended without printing {text!r}: {self.text}")
            self._changed.clear()
            await self._changed.wait()
        return self.text

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def ctrl_c(self) -> None:
        """^C, as typed: the terminal sends SIGINT to the command."""
        self.type("\x03")

    async def finish(self) -> tuple[int, str]:
        """The exit status and all that was printed."""
        code = await self.process.wait()
        while not self.closed:
            self._changed.clear()
            await self._changed.wait()
        return code, self.text


def _take_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is its stdin."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@asynccontextmanager
async def terminal(
    *args: str, env: dict[str, str] | None = None, columns: int = COLUMNS
) -> AsyncIterator[Terminal]:
    """`hero_codescalers *args` on a pty `columns` wide (the width the kernel tells, not
    a COLUMNS variable of the test's own environment)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES"}}
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hero_codescalers",
            *args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            preexec_fn=_take_terminal,
        )
    finally:
        os.close(slave)
    term = Terminal(process, master)
    try:
        yield term
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if not term.closed:
            asyncio.get_running_loop().remove_reader(master)
        with contextlib.suppress(OSError):
            os.close(master)


async def on_terminal(*args: str, keys: str = "", columns: int = COLUMNS) -> tuple[int, str]:
    """Run the command on a terminal, typing `keys` first; its status and screen."""
    async with terminal(*args, columns=columns) as term:
        if keys:
            term.type(keys)
        return await term.finish()
