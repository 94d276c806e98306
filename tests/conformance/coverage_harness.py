"""Run @open-rpc/test-coverage against the live service, each call in its example's state.

The tool calls every example of the document, in the document's order, by HTTP
over TCP, while the service listens on a Unix socket. For the run, a small relay
listens on 127.0.0.1 (an ephemeral port) and the tool gets a copy of the document
whose `servers` point at it. Each example declares the state it needs (the
examples it follows, from an empty hero_proc): for each call of the tool, the
relay starts a fresh simulator and service, replays what the example follows,
then forwards the tool's request and answers the service's answer. The request
goes as it is, but for a param the example takes from an earlier answer (a
plan's id, new on every run): that one is sent as the replay answered it.

The tool sends an example's param values by position and ignores their names;
the document's examples name only the params they give. So the tool's copy lists
each example's params in the method's order, with the documented default in the
place of an optional param the example leaves out, or null when it has none (the
service reads a null optional param as absent); the relay checks that each
request is one of those calls.

    python -m tests.conformance.coverage_harness     # console report (make openrpc-coverage)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from hero_codescalers.engine import Engine
from hero_codescalers.examples import POLICIES, steps, taken
from hero_codescalers.methods import registry
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator
from hero_codescalers.transport import ENGINE, create_app, runner_for
from hero_codescalers.unixsock import bind_unix, remove_socket

from ..conftest import serve_tcp

ROOT = Path(__file__).parents[2]
TOOL = ROOT / "openrpc" / "node_modules" / ".bin" / "open-rpc-test-coverage"
DOCUMENT = ROOT / "openrpc" / "openrpc.json"


@contextlib.asynccontextmanager
async def live_service() -> AsyncIterator[tuple[Path, Engine]]:
    """A fresh simulator and the service in front of it (a fresh state database too); the
    service's socket and engine."""
    scratch = Path(tempfile.mkdtemp(prefix="hc-cov-", dir="/tmp"))
    policies = scratch / "policies.toml"
    policies.write_text(POLICIES)  # the policies the examples declare
    settings = Settings(
        socket_dir=scratch, state_dir=scratch / "state", admin_uids={os.getuid()}, policies=policies
    )  # any user runs it
    try:
        async with Simulator().serve(settings.hero_proc_socket):
            sock, inode = bind_unix(settings.socket, 0o600)
            runner = runner_for(create_app(settings))
            await runner.setup()
            try:
                await web.SockSite(runner, sock).start()
                yield settings.socket, runner.app[ENGINE]
            finally:
                await runner.cleanup()
                sock.close()
                remove_socket(settings.socket, inode)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def by_position(method: dict[str, Any], example: dict[str, Any]) -> list[Any]:
    """An example's param values in the method's order, up to the last it gives, with the
    documented default (or null) for one it leaves out: what a caller by position sends."""
    params = method["params"]
    given = {p["name"]: p["value"] for p in example["params"]}
    last = max((i for i, p in enumerate(params) if p["name"] in given), default=-1)
    return [given.get(p["name"], p["schema"].get("default")) for p in params[: last + 1]]


def tool_document(document: dict[str, Any], url: str) -> dict[str, Any]:
    """The document as the tool gets it: its server the relay, examples by position."""
    copied = copy.deepcopy(document)
    copied["servers"] = [{"name": "relay", "url": url}]
    for method in copied["methods"]:
        names = [p["name"] for p in method["params"]]
        for example in method.get("examples", []):
            values = by_position(method, example)
            example["params"] = [
                {"name": n, "value": v} for n, v in zip(names, values, strict=False)
            ]
    return copied


class Relay:
    """Answers each call of the tool from a fresh service in its example's state."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.pending = [
            (method["name"], example["name"], by_position(method, example))
            for method in document["methods"]
            for example in method.get("examples", [])
        ]
        self.document = document
        self.problems: list[str] = []

    def example_of(self, call: dict[str, Any]) -> str:
        """The example ("method/example") the tool's call is, each matched once."""
        for i, (method, name, params) in enumerate(self.pending):
            if call.get("method") == method and call.get("params") == params:
                del self.pending[i]
                return f"{method}/{name}"
        raise AssertionError(f"the tool sent a call of no example: {call}")

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            return await self.answer(body)
        except AssertionError as exc:  # told to the test, not only to the tool
            self.problems.append(str(exc))
            return web.Response(status=500, text=str(exc))

    async def answer(self, body: bytes) -> web.Response:
        call = json.loads(body)
        ref = self.example_of(call)
        *before, (method, this) = steps(registry, ref)
        results: dict[str, Any] = {}
        async with live_service() as (socket, engine), session_for(socket) as session:
            for earlier, example in before:
                request = self.request(earlier, example.name)
                request["params"].update(taken(example, results))
                answer = await post(session, json.dumps(request))
                assert "result" in answer, f"{ref}: {earlier} {example.name} answered {answer}"
                results[f"{earlier}/{example.name}"] = answer["result"]
                await engine.idle()  # the run it started has ended
            if replaced := taken(this, results):
                names = [p["name"] for p in self.spec(method)["params"]]
                for name, value in replaced.items():
                    call["params"][names.index(name)] = value
                body = json.dumps(call).encode()
            async with session.post("http://localhost/rpc", data=body) as response:
                return web.Response(
                    status=response.status,
                    body=await response.read(),
                    content_type=response.content_type,
                )

    def spec(self, method: str) -> dict[str, Any]:
        """The document's entry of `method`."""
        found: dict[str, Any] = next(m for m in self.document["methods"] if m["name"] == method)
        return found

    def request(self, method: str, name: str) -> dict[str, Any]:
        """The call of example `name` of `method`, its params by name."""
        example = next(e for e in self.spec(method)["examples"] if e["name"] == name)
        params = {p["name"]: p["value"] for p in example["params"]}
        return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def session_for(socket: Path) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(socket)),
        headers={"Content-Type": "application/json"},
    )


async def post(session: aiohttp.ClientSession, body: str) -> Any:
    async with session.post("http://localhost/rpc", data=body) as response:
        return await response.json()


@contextlib.asynccontextmanager
async def relay(document: dict[str, Any]) -> AsyncIterator[tuple[str, Relay]]:
    """The relay, listening on 127.0.0.1; its URL and itself."""
    state = Relay(document)
    app = web.Application()
    app.router.add_post("/rpc", state.handle)
    async with serve_tcp(app) as url:
        yield url, state


async def run_tool(reporter: str) -> tuple[int, str, str]:
    """Run the tool with `reporter`, each call in its example's state; exit code, stdout,
    stderr. Every example is called exactly once."""
    if not TOOL.exists():
        raise RuntimeError(f"{TOOL} is missing: run `make install` (npm ci in openrpc/)")
    document = json.loads(DOCUMENT.read_text())
    scratch = Path(tempfile.mkdtemp(prefix="hc-cov-", dir="/tmp"))
    try:
        async with relay(document) as (url, state):
            copied = tool_document(document, url)
            (scratch / "openrpc.json").write_text(json.dumps(copied))
            proc = await asyncio.create_subprocess_exec(
                str(TOOL),
                "-s",
                str(scratch / "openrpc.json"),
                "-r",
                reporter,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
        assert state.problems == []
        assert state.pending == [], f"examples the tool did not call: {state.pending}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def summary(calls: list[dict[str, Any]]) -> str:
    valid = sum(1 for c in calls if c.get("valid"))
    methods = len({c["methodName"] for c in calls})
    return f"{valid}/{len(calls)} calls valid over {methods} methods"


def main() -> int:
    code, out, err = asyncio.run(run_tool("console"))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
