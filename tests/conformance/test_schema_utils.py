"""A second validator of the document, independent of ours: @open-rpc/schema-utils-js.

`validate_openrpc.js` (node) checks the document against the OpenRPC meta-schema, the
specification's rules on a method's params (required ones first), and every example's
params with schema-utils-js's MethodCallValidator.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]
SCRIPT = Path(__file__).with_name("validate_openrpc.js")
COMMITTED = ROOT / "openrpc" / "openrpc.json"
LIBRARY = ROOT / "openrpc" / "node_modules" / "@open-rpc" / "schema-utils-js"


def problems(documents: dict[str, dict[str, Any]], scratch: Path) -> dict[str, list[str]]:
    """name -> the problems the validator finds in that document (one node run for all)."""
    node = shutil.which("node")
    if node is None or not LIBRARY.exists():
        raise RuntimeError("node and openrpc/node_modules are needed: run `make test`")
    files = {}
    for name, document in documents.items():
        files[name] = scratch / f"{name}.json"
        files[name].write_text(json.dumps(document))
    done = subprocess.run(
        [node, str(SCRIPT), *map(str, files.values())],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert (done.returncode == 1) == any(report.values())
    return {name: report[str(path)] for name, path in files.items()}


def method(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in document["methods"] if m["name"] == name)


def example_params(document: dict[str, Any], name: str) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = method(document, name)["examples"][0]["params"]
    return params


def script_after_target(document: dict[str, Any]) -> None:
    params = method(document, "jobs.submit")["params"]
    params.append(params.pop(2))  # kind, actor, target, input, script


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "null-where-the-schema-has-none": (
        lambda d: example_params(d, "jobs.list").insert(0, {"name": "kind", "value": None}),
        "jobs.list example one-actor: kind = null: should be string",
    ),
    "required-after-optional": (
        script_after_target,
        "jobs.submit: required param script after optional target",
    ),
    "ill-typed": (
        lambda d: example_params(d, "jobs.cleanup_history")[0].update(value="2"),
        'jobs.cleanup_history example last-two-runs: limit = "2": should be integer',
    ),
    "out-of-range": (
        lambda d: example_params(d, "jobs.cleanup_history")[0].update(value=0),
        "jobs.cleanup_history example last-two-runs: limit = 0: should be >= 1",
    ),
    "not-a-param": (
        lambda d: example_params(d, "jobs.list").append({"name": "sort", "value": "id"}),
        "jobs.list example one-actor: sort is not a param",
    ),
    "not-openrpc": (lambda d: d.pop("info"), "not a valid OpenRPC document"),
}


def test_the_document_passes_and_each_breakage_is_found(tmp_path: Path) -> None:
    """The committed document has no problem; each broken copy has exactly the one it was
    given (so the validator neither misses nor invents)."""
    committed = json.loads(COMMITTED.read_text())
    documents = {"committed": committed}
    for name, (breakage, _) in BREAKAGES.items():
        documents[name] = copy.deepcopy(committed)
        breakage(documents[name])
    found = problems(documents, tmp_path)
    assert found.pop("committed") == []
    for name, (_, problem) in BREAKAGES.items():
        assert len(found[name]) == 1, (name, found[name])
        assert found[name][0].startswith(problem), (name, found[name])
