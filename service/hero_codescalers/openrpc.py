"""The OpenRPC document, generated from the method registry and its pydantic models.

`openrpc/openrpc.json` is this module's output, committed; a test regenerates it
and fails on any difference, and `rpc.discover` serves the same document.
Regenerate with `make openrpc`.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

from pydantic import ValidationError

from . import __version__
from .errors import DOCUMENTED, INTERNAL_ERROR, INVALID_PARAMS
from .examples import given, steps
from .registry import Example, MethodDef, Registry

REF = "#/components/schemas/{model}"
# The socket where the systemd units put it (deploy/hero_codescalers.socket):
# $HERO_SOCKET_DIR/hero_codescalers/rpc.sock with HERO_SOCKET_DIR=/run/hero.
DEFAULT_SOCKET = "/run/hero/hero_codescalers/rpc.sock"


def _hoist(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    return schema


def _unwrap_optional(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, null]` with default null reads as plain X for an optional param."""
    branches = schema.get("anyOf")
    if not branches or schema.get("default", 0) is not None:
        return schema
    rest = [b for b in branches if b != {"type": "null"}]
    if len(rest) != 1:
        return schema
    out = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**rest[0], **out}


def _params(method: MethodDef, components: dict[str, Any]) -> list[dict[str, Any]]:
    """The params' content descriptors, in the model's order: required ones first, as
    the OpenRPC specification asks (an optional param before a required one is an error)."""
    schema = _hoist(method.params.model_json_schema(ref_template=REF), components)
    required = set(schema.get("required", []))
    out = []
    for name, raw in schema.get("properties", {}).items():
        prop = _unwrap_optional(dict(raw))
        prop.pop("title", None)
        descriptor: dict[str, Any] = {"name": name}
        if "description" in prop:
            descriptor["description"] = prop.pop("description")
        descriptor["required"] = name in required
        descriptor["schema"] = prop
        out.append(descriptor)
    flags = [p["required"] for p in out]
    if flags != sorted(flags, reverse=True):
        names = [p["name"] for p in out]
        raise ValueError(f"{method.name}: required params must come first: {names}")
    return out


def _result(method: MethodDef, components: dict[str, Any]) -> dict[str, Any]:
    if method.result is None:
        return {
            "name": "document",
            "schema": {"type": "object", "description": "An OpenRPC document"},
        }
    schema = _hoist(
        method.result.model_json_schema(ref_template=REF, mode="serialization"), components
    )
    name = method.result.__name__
    components[name] = schema
    return {"name": name, "schema": {"$ref": REF.format(model=name)}}


def _describe(ex: Example) -> str:
    """What a reader needs besides params and result: the state the example runs in."""
    lines = []
    if refs := given(ex):
        follows = ", ".join(f'{m} "{n}"' for m, _, n in (r.rpartition("/") for r in refs))
        them, they = ("it", "it follows") if len(refs) == 1 else ("them", "they follow")
        lines.append(
            f"Follows {follows}: runs after {them} (and after what {they}), "
            "on a fresh service and an empty hero_proc."
        )
    if ex.partial:
        lines.append("The result is abbreviated: it holds these members and more.")
    return " ".join(lines)


def _example(method: MethodDef, ex: Example) -> dict[str, Any]:
    """An example pairing: the params it gives, by name and in the method's order, and
    none it leaves out (no null where the param's schema has none)."""
    try:
        method.params.model_validate(ex.params)
    except ValidationError as exc:
        raise ValueError(f"{method.name} example {ex.name!r}: {exc}") from None
    out: dict[str, Any] = {"name": ex.name}
    if ex.summary:
        out["summary"] = ex.summary
    if description := _describe(ex):
        out["description"] = description
    names = [n for n in method.params.model_fields if n in ex.params]
    out["params"] = [{"name": n, "value": ex.params[n]} for n in names]
    out["result"] = {"name": "result", "value": ex.result}
    return out


def _method(method: MethodDef, components: dict[str, Any]) -> dict[str, Any]:
    description = method.description
    if method.admin:
        description += "\n\nAdmin only: uid 0, or an allowed uid or gid."
    doc: dict[str, Any] = {
        "name": method.name,
        "summary": method.summary,
        "description": description,
        "paramStructure": "either",
        "params": _params(method, components),
        "result": _result(method, components),
    }
    # Any method can meet -32602 (unknown or ill-typed params) and -32603 (a fault).
    codes = dict.fromkeys((INVALID_PARAMS, *method.errors, INTERNAL_ERROR))
    doc["errors"] = [{"$ref": f"#/components/errors/{DOCUMENTED[code][0]}"} for code in codes]
    if method.examples:
        doc["examples"] = [_example(method, ex) for ex in method.examples]
    doc["x-admin"] = method.admin
    return doc


def build_document(registry: Registry) -> dict[str, Any]:
    """The OpenRPC document of every method in `registry`."""
    components: dict[str, Any] = {}
    methods = [_method(m, components) for m in registry.methods.values()]
    for spec in registry.methods.values():  # every example's `given` names examples
        for ex in spec.examples:
            steps(registry, f"{spec.name}/{ex.name}")
    return {
        "openrpc": "1.3.2",
        "info": {
            "title": "hero_codescalers",
            "version": __version__,
            "description": (
                "Tags the jobs and actions hero_codescalers enqueues in hero_proc and "
                "cleans them up: JSON-RPC 2.0 over HTTP on a Unix socket (POST /rpc)."
            ),
        },
        "servers": [
            {
                "name": "unix-socket",
                "url": "http+unix://{socket}/rpc",
                "summary": "HTTP/1.1 on the service's Unix socket, path percent-encoded",
                "variables": {
                    "socket": {
                        "default": DEFAULT_SOCKET.replace("/", "%2F"),
                        "description": "The socket's absolute path, '/' written as %2F "
                        "(the default is where the systemd units put it)",
                    }
                },
            }
        ],
        "methods": methods,
        "components": {
            "schemas": dict(sorted(components.items())),
            "errors": {
                name: {"code": code, "message": message, "data": when}
                for code, (name, message, when) in DOCUMENTED.items()
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    """The document as committed: sorted-free, two-space indented, trailing newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def default_document() -> dict[str, Any]:
    from .methods import registry  # noqa: PLC0415 -- methods import this module's siblings

    return build_document(registry)


def main() -> None:
    sys.stdout.write(render(copy.deepcopy(default_document())))


if __name__ == "__main__":
    main()
