"""The container image, without a Docker engine: hadolint's verdict, the build context that
.dockerignore leaves, and the build stage reproduced (exactly the files the Dockerfile
copies, the wheel built from them, installed alone in a fresh venv, then run: `--help`,
`serve` in front of a simulator, `health` and the image's HEALTHCHECK, ok and degraded)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from hero_codescalers.simulator import Simulator

from ..integration.test_processes import Proc

ROOT = Path(__file__).parent.parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MAX_CONTEXT_BYTES = 5 * 1024 * 1024


def instructions() -> list[dict[str, Any]]:
    return [i for i in DockerfileParser(path=os.fspath(DOCKERFILE)).structure]


def stages() -> list[list[dict[str, Any]]]:
    """The instructions of each stage, in order."""
    found: list[list[dict[str, Any]]] = []
    for instruction in instructions():
        if instruction["instruction"] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker matches it (Go's filepath.Match, plus **)."""
    out = ""
    i = 0
    while i < len(text):
        if text.startswith("**", i):
            out += ".*"
            i += 2
            if text.startswith("/", i):
                out += "/?"
                i += 1
            continue
        char = text[i]
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out)


def context_files() -> list[Path]:
    """The files `docker build .` sends: the last matching .dockerignore rule decides, a
    rule matching a parent directory matches what is inside it."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append(
                (negated, line.lstrip("!").strip("/"), _pattern(line.lstrip("!").strip("/")))
            )

    def excluded(relative: str) -> bool:
        parts = relative.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        verdict = False
        for negated, _, pattern in rules:
            if any(pattern.fullmatch(prefix) for prefix in prefixes):
                verdict = not negated
        return verdict

    def may_hold_kept(relative: str) -> bool:
        """An excluded directory is still walked when a ! rule may let something in it back."""
        return any(negated and text.startswith(relative + "/") for negated, text, _ in rules)

    kept = []
    for top, dirs, files in os.walk(ROOT):
        here = Path(top).relative_to(ROOT).as_posix()
        prefix = "" if here == "." else here + "/"
        dirs[:] = [d for d in dirs if not excluded(prefix + d) or may_hold_kept(prefix + d)]
        kept += [Path(top) / f for f in sorted(files) if not excluded(prefix + f)]
    return kept


def test_hadolint_finds_nothing() -> None:
    """The Dockerfile is clean for hadolint (also run by `make lint`)."""
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [hadolint, "--no-color", DOCKERFILE], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_state_directory_is_a_volume_the_service_user_owns() -> None:
    """HERO_CODESCALERS_STATE_DIR is a VOLUME (the history survives a new container),
    created for uid 10001 (the USER), mode 0700."""
    state_dir = DockerfileParser(path=os.fspath(DOCKERFILE)).envs["HERO_CODESCALERS_STATE_DIR"]
    final = stages()[-1]
    [volume] = [i["value"] for i in final if i["instruction"] == "VOLUME"]
    assert state_dir in json.loads(volume)
    [user] = [i["value"] for i in final if i["instruction"] == "USER"]
    assert user.split(":")[0] == "10001"
    runs = " ".join(i["value"] for i in final if i["instruction"] == "RUN")
    assert f"install -d -o hero -g hero -m 0700 {state_dir}" in runs


def test_the_build_context_is_small_and_holds_what_is_copied() -> None:
    """.dockerignore keeps .venv, node_modules, .git and caches out; every source the
    build stage copies is in the context."""
    files = context_files()
    names = {p.relative_to(ROOT).as_posix() for p in files}
    assert sum(p.stat().st_size for p in files) < MAX_CONTEXT_BYTES
    assert not [n for n in names if re.search(r"(^|/)(\.venv|node_modules|\.git|__pycache__)/", n)]
    for source in copied_sources():
        assert any(n == source or n.startswith(source + "/") for n in names), source


def copied_sources() -> list[str]:
    """Each source path of the build stage's COPY instructions (relative to the context)."""
    sources = []
    for instruction in stages()[0]:
        if instruction["instruction"] == "COPY":
            *paths, _ = shlex.split(instruction["value"])
            sources += [p.rstrip("/") for p in paths if not p.startswith("--")]
    return sources


def build_tree(dest: Path) -> None:
    """The build stage's /src, from the context, as its WORKDIR and COPY lines say."""
    workdir = Path("/")
    context = {p.relative_to(ROOT).as_posix(): p for p in context_files()}
    for instruction in stages()[0]:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "WORKDIR":
            workdir = workdir / value
        elif kind == "COPY":
            *sources, target = shlex.split(value)
            assert not any(s.startswith("--") for s in sources), "the build stage copies files"
            base = dest / (workdir / target).relative_to("/")
            for given in sources:
                source = given.rstrip("/")
                for name, path in context.items():
                    if name == source:
                        to = base / path.name if target.endswith("/") else base
                    elif name.startswith(source + "/"):
                        to = base / name.removeprefix(source + "/")
                    else:
                        continue
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, to)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel built from the copied files (its dependencies
    come from this test's environment, on sys.path but without the project itself)."""
    tmp = tmp_path_factory.mktemp("image")
    build_tree(tmp / "root")
    src = tmp / "root" / "src"
    run_line = next(i["value"] for i in stages()[0] if i["instruction"] == "RUN")
    assert run_line.startswith("pip wheel"), run_line
    assert run_line.endswith(" ."), run_line
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            tmp / "wheels",
            src,
        ],
        check=True,
        cwd=src,
    )
    wheel = next((tmp / "wheels").glob("hero_codescalers-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            wheel,
        ],
        check=True,
    )
    # The dependencies (aiohttp, pydantic, ...): this environment's site-packages as a
    # plain path, so that its .pth files (the project's editable install) are not read.
    site = Path(
        subprocess.run(
            [
                venv / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


def image_env(bin_dir: Path, sock_dir: Path) -> dict[str, str]:
    """The image's ENV, its socket and state directories moved to the test's, the venv first
    on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERO_", "PYTHON"))}
    env.update(DockerfileParser(path=os.fspath(DOCKERFILE)).envs)
    env["HERO_SOCKET_DIR"] = os.fspath(sock_dir)
    env["HERO_CODESCALERS_STATE_DIR"] = os.fspath(sock_dir / "state")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_wheel_holds_the_service_and_the_sdk(installed: Path, tmp_path: Path) -> None:
    """Both packages the CLI imports come from the wheel, not from the source tree."""
    out = subprocess.run(
        [
            installed / "python",
            "-c",
            "import hero_codescalers.cli, hero_codescalers_sdk; "
            "print(hero_codescalers.cli.__file__); print(hero_codescalers_sdk.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
    ).stdout.split()
    venv = installed.parent
    assert all(Path(f).is_relative_to(venv) for f in out), out


def healthcheck() -> list[str]:
    """The HEALTHCHECK's command (exec form)."""
    value = next(i["value"] for i in stages()[-1] if i["instruction"] == "HEALTHCHECK")
    command = json.loads(value.split("CMD", 1)[1])
    assert isinstance(command, list)
    return command


async def run(env: dict[str, str], *command: str | Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_installed_command_serves_and_reports_health(
    installed: Path, sock_dir: Path
) -> None:
    """`--help`, then `serve` (the image's ENTRYPOINT and CMD) in front of a simulator:
    `health` exits 0 and the HEALTHCHECK 0; hero_proc gone, 4 and 1."""
    env = image_env(installed, sock_dir)
    code, out = await run(env, installed / "hero_codescalers", "--help")
    assert code == 0
    assert "serve" in out
    entrypoint = json.loads(
        next(i["value"] for i in stages()[-1] if i["instruction"] == "ENTRYPOINT")
    )
    cmd = json.loads(next(i["value"] for i in stages()[-1] if i["instruction"] == "CMD"))
    sim = Simulator()
    async with sim.serve(sock_dir / "hero_proc" / "rpc.sock"):
        process = await asyncio.create_subprocess_exec(
            *entrypoint,
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        service = Proc(process)
        try:
            await service.wait_for("service_started")
            code, out = await run(env, "hero_codescalers", "health")
            assert (code, json.loads(out)["status"]) == (0, "ok")
            assert (await run(env, *healthcheck()))[0] == 0
        except BaseException:
            process.kill()
            await process.wait()
            raise
    try:
        code, out = await run(env, "hero_codescalers", "health")
        assert code == 4
        assert json.loads(out)["status"] == "degraded"
        assert await run(env, *healthcheck()) == (1, "")
        assert await service.stop() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert [line for line in service.lines if line.get("level") == "warning"] == []
