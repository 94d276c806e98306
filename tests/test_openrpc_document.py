"""The committed OpenRPC document, the handlers and rpc.discover cannot drift apart."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import pytest
from pydantic import Field
from referencing import Registry
from referencing.jsonschema import DRAFT7

from hero_codescalers.auth import AdminPolicy
from hero_codescalers.examples import Example
from hero_codescalers.methods import registry
from hero_codescalers.models import Params
from hero_codescalers.openrpc import build_document, default_document, render
from hero_codescalers.registry import Registry as MethodRegistry
from hero_codescalers.rpc import Dispatcher

from .conftest import Caller
from .deploy.units import SOCKET_UNIT, unit

COMMITTED = Path(__file__).parent.parent / "openrpc" / "openrpc.json"
META = Path(__file__).parent.parent / "openrpc" / "meta-schema"


def meta_validator() -> jsonschema.Draft7Validator:
    """The official OpenRPC meta-schema, with the JSON Schema meta-schema it refers to."""
    openrpc = json.loads((META / "open-rpc-1.14.9.json").read_text())
    json_schema = DRAFT7.create_resource(
        json.loads((META / "json-schema-tools-1.8.0.json").read_text())
    )
    registry = Registry().with_resources(
        [
            ("https://meta.json-schema.tools/", json_schema),
            ("https://meta.json-schema.tools", json_schema),
        ]
    )
    return jsonschema.Draft7Validator(openrpc, registry=registry)


def test_document_validates_against_the_openrpc_meta_schema() -> None:
    """openrpc/openrpc.json is a valid OpenRPC document."""
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in meta_validator().iter_errors(json.loads(COMMITTED.read_text()))
    ]
    assert errors == []


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda d: d.pop("info"), id="no-info"),
        pytest.param(lambda d: d["methods"][0].update(params="x"), id="params-not-a-list"),
        pytest.param(lambda d: d["methods"][0].update(unknown=1), id="unknown-member"),
        pytest.param(
            lambda d: next(m for m in d["methods"] if m["params"])["params"][0].update(
                schema={"type": 5}
            ),
            id="bad-json-schema",
        ),
    ],
)
def test_the_meta_schema_check_can_fail(breakage: object) -> None:
    """A broken document does not pass: the validation is not vacuous."""
    document = json.loads(COMMITTED.read_text())
    breakage(document)  # type: ignore[operator]
    assert list(meta_validator().iter_errors(document))


def test_committed_document_is_what_the_code_generates() -> None:
    """`make openrpc` output is committed: regenerating changes nothing."""
    assert COMMITTED.read_text() == render(default_document()), "run `make openrpc`"


def test_every_handler_is_declared_and_every_declared_method_has_a_handler() -> None:
    """The document's methods and the registry's handlers are the same set."""
    declared = [m["name"] for m in json.loads(COMMITTED.read_text())["methods"]]
    assert declared == list(registry.methods)
    assert {
        "rpc.discover",
        "system.health",
        "jobs.submit",
        "jobs.list",
        "stats",
        "jobs.cleanup",
    } <= set(declared)


def test_a_dispatcher_refuses_a_document_that_differs_from_the_handlers() -> None:
    """A handler missing from the document (or the reverse) stops the service from starting."""
    document = copy.deepcopy(default_document())
    document["methods"] = [m for m in document["methods"] if m["name"] != "stats"]
    with pytest.raises(RuntimeError, match=r"not in the document: \['stats'\]"):
        Dispatcher(document, registry, services=None, policy=AdminPolicy())


def test_each_method_documents_params_result_and_errors() -> None:
    """Admin methods document -32010; methods reaching hero_proc document -32020."""
    document = json.loads(COMMITTED.read_text())
    methods = {m["name"]: m for m in document["methods"]}
    errors = document["components"]["errors"]

    def codes(method: dict[str, Any]) -> set[int]:
        return {errors[e["$ref"].rsplit("/", 1)[1]]["code"] for e in method["errors"]}

    submit = methods["jobs.submit"]
    assert [(p["name"], p["required"]) for p in submit["params"]] == [
        ("kind", True),
        ("actor", True),
        ("script", True),
        ("target", False),
        ("input", False),
    ]
    cleanup = methods["jobs.cleanup"]
    assert [p["name"] for p in cleanup["params"]] == [
        "kind",
        "target",
        "actor",
        "older_than_ms",
        "dry_run",
        "reason",
        "statuses",
        "finished_older_than_ms",
        "keep_last",
        "include_kept",
        "plan_id",
        "max_jobs",
        "ids",
    ]
    assert not any(p["required"] for p in cleanup["params"])
    listing = methods["jobs.list"]
    assert [p["name"] for p in listing["params"]] == [
        "kind",
        "target",
        "actor",
        "older_than_ms",
        "status",
        "limit",
        "cursor",
        "statuses",
        "finished_older_than_ms",
        "include_kept",
    ]
    assert {-32010, -32011, -32013, -32014, -32020, -32602} <= codes(cleanup)
    assert cleanup["x-admin"] is True
    for name in ("jobs.submit", "jobs.list", "stats"):
        assert -32020 in codes(methods[name])
    assert all("result" in m and m["summary"] and m["description"] for m in methods.values())


async def test_rpc_discover_serves_the_committed_document(caller: Caller) -> None:
    """rpc.discover answers exactly the committed file."""
    assert await caller.call("rpc.discover") == json.loads(COMMITTED.read_text())


async def test_a_function_not_in_the_document_cannot_be_called(caller: Caller) -> None:
    """Only declared names dispatch: a module-level helper is not a method."""
    for name in ("selector", "_services", "jobs.delete", "sim.reset"):
        assert (await caller.error(name, {}))["code"] == -32601


def test_the_server_default_is_the_socket_of_the_systemd_units() -> None:
    """The `socket` variable's default is an absolute path (never `~`, which no client
    expands in a URL): the one hero_codescalers.socket listens on."""
    (server,) = json.loads(COMMITTED.read_text())["servers"]
    default = server["variables"]["socket"]["default"]
    assert "/" not in default  # percent-encoded, so that it stays one URL host
    path = unquote(default)
    assert path.startswith("/")
    assert "~" not in path
    assert [path] == unit(SOCKET_UNIT)["Socket"]["ListenStream"]


class Late(Params):
    """Optional `a` before required `b`."""

    a: int | None = None
    b: int


def one_method(params: type[Params], *examples: Example) -> MethodRegistry:
    """A registry of one method `m` with these params and examples."""
    reg = MethodRegistry()

    @reg.method("m", summary="m", examples=examples)
    async def m(ctx: object, params: Late) -> None:
        """m"""

    reg.methods["m"] = dataclasses.replace(reg.methods["m"], params=params)
    return reg


def test_a_required_param_after_an_optional_one_is_refused() -> None:
    """The OpenRPC specification puts required params first: `make openrpc` refuses otherwise."""
    with pytest.raises(ValueError, match=r"m: required params must come first: \['a', 'b'\]"):
        build_document(one_method(Late))


@pytest.mark.parametrize(
    ("example", "message"),
    [
        pytest.param(Example("bad", {"limit": 0}, {}), "m example 'bad'", id="invalid-params"),
        pytest.param(Example("bad", {"sort": 1}, {}), "m example 'bad'", id="unknown-param"),
        pytest.param(
            Example("bad", {}, {}, given=("m/gone",)), "no example 'm/gone'", id="given-nothing"
        ),
    ],
)
def test_an_example_the_method_would_refuse_is_refused(example: Example, message: str) -> None:
    """Examples are checked against the method's params model, and what they follow exists."""

    class Limited(Params):
        limit: int = Field(default=100, ge=1)

    with pytest.raises(ValueError, match=message):
        build_document(one_method(Limited, example))
