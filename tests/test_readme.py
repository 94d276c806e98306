"""The README's curl lines work verbatim against a running service; its tables are whole."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from hero_codescalers.config_errors import setting_name
from hero_codescalers.errors import DOCUMENTED
from hero_codescalers.examples import POLICIES
from hero_codescalers.settings import Settings
from hero_codescalers.simulator import Simulator, seed_population

from .conftest import run_ids, start_service

README = Path(__file__).parent.parent / "README.md"
CURL_LINES = [line for line in README.read_text().splitlines() if line.startswith("curl ")]


def test_the_readme_has_a_curl_line_for_every_method() -> None:
    """Every RPC method of the service has its curl line."""
    from hero_codescalers.methods import registry  # noqa: PLC0415

    shown = {m for line in CURL_LINES for m in re.findall(r'"method":"([^"]+)"', line)}
    assert shown == set(registry.methods)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_each_curl_line_answers_a_result(sock_dir: Path) -> None:
    """Run with HERO_SOCKET_DIR set (the caller an admin, as under `hero_codescalers dev`),
    each line gets a result, not an error."""
    sim = Simulator()
    seed_population(sim.store, 200, 20, 20)
    policies = sock_dir / "policies.toml"
    policies.write_text(POLICIES)
    # as `dev` does: the caller an admin, the examples' one policy
    settings = Settings(socket_dir=sock_dir, admin_uids={os.getuid()}, policies=policies)
    async with sim.serve(settings.hero_proc_socket):
        svc, runner, sock, _ = await start_service(settings)
        # The first run (the jobs.cleanup_start line's) gets the id the next lines name.
        [named] = {m for line in CURL_LINES for m in re.findall(r'"run_id":"(\w+)"', line)}
        svc.engine.run_ids = run_ids(named)
        try:
            env = {**os.environ, "HERO_SOCKET_DIR": str(sock_dir)}
            for line in CURL_LINES:
                proc = await asyncio.create_subprocess_exec(
                    "bash", "-c", line, env=env, stdout=asyncio.subprocess.PIPE
                )
                out, _ = await proc.communicate()
                assert proc.returncode == 0, line
                url = line.split()[4]
                if url.endswith("/metrics"):
                    assert b"hero_codescalers_rpc_calls_total" in out
                elif url.endswith("/health"):
                    assert json.loads(out)["status"] == "ok"
                else:
                    assert "result" in json.loads(out), (line, out)
        finally:
            await runner.cleanup()
            sock.close()


def test_every_command_the_readme_shows_exists() -> None:
    """Each `hero_codescalers <command>` line of the README names a real command, and its
    flags parse (the command is not run: `--help` is appended)."""
    from click.testing import CliRunner  # noqa: PLC0415

    from hero_codescalers.cli import main  # noqa: PLC0415

    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    lines = [
        line.split("#")[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith("hero_codescalers ")
    ]
    assert any(line.startswith("hero_codescalers dev") for line in lines)
    for line in lines:
        args = shlex.split(line.replace('"$(id -u)"', "1000"))[1:]
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (line, result.output)


def test_the_readme_lists_every_setting_error_and_last_run_metric() -> None:
    """Its configuration table names each setting's variable, its error table each
    documented code, and it names the last-run metrics."""
    text = README.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for field in Settings.model_fields:
        name = setting_name(field)
        assert any(row.startswith(f"| `{name}`") for row in rows), name
    for code in DOCUMENTED:
        assert any(row.startswith(f"| {code} |") for row in rows), code
    for name in ("timestamp_seconds", "duration_seconds", "success"):
        assert f"hero_codescalers_cleanup_last_run_{name}" in text
