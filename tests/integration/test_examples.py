"""Every example of the OpenRPC document is true against the simulator, in the state it
declares: on a fresh service and an empty hero_proc, after the examples it follows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hero_codescalers.examples import POLICIES, Example, steps, taken
from hero_codescalers.methods import registry
from hero_codescalers.models import NoParams
from hero_codescalers.registry import CallContext, MethodDef, Registry
from hero_codescalers.settings import Settings

from ..conftest import Caller, Service
from ..example_results import same

DOCUMENT = json.loads((Path(__file__).parents[2] / "openrpc" / "openrpc.json").read_text())
DOCUMENTED = {
    f"{m['name']}/{ex['name']}": ex for m in DOCUMENT["methods"] for ex in m.get("examples", [])
}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test's settings, serving the policies file the examples declare."""
    path = tmp_path / "policies.toml"
    path.write_text(POLICIES)
    return settings.model_copy(update={"policies": path})


def test_every_method_has_an_example() -> None:
    """No method without at least one example pairing."""
    assert all(m.get("examples") for m in DOCUMENT["methods"])
    assert len(DOCUMENTED) == sum(len(m.examples) for m in registry.methods.values())


@pytest.mark.parametrize("ref", sorted(DOCUMENTED))
async def test_each_example_is_true_in_the_state_it_declares(
    service: Service, caller: Caller, ref: str
) -> None:
    """Replayed from an empty hero_proc (what it follows first, each step once the run it
    started has ended), each call sends the params the document lists, by name (those it
    takes from an earlier answer as answered), and gets the result the document shows."""
    results: dict[str, Any] = {}
    for method, example in steps(registry, ref):
        documented = DOCUMENTED[f"{method}/{example.name}"]
        params = {p["name"]: p["value"] for p in documented["params"]}
        result = await caller.call(method, {**params, **taken(example, results)})
        results[f"{method}/{example.name}"] = result
        same(
            documented["result"]["value"],
            result,
            partial=example.partial,
            where=f"{method} {example.name}",
        )
        await service.engine.idle()


def fake_registry(**examples: tuple[Example, ...]) -> Registry:
    """A registry whose method `m` (as a keyword) has the examples given."""

    async def handler(ctx: CallContext, params: Any) -> None: ...

    reg = Registry()
    for name, exs in examples.items():
        reg.methods[name] = MethodDef(
            name, "", "", handler, NoParams, None, (), admin=False, examples=exs
        )
    return reg


def test_steps_run_what_an_example_follows_first_and_each_once() -> None:
    """A shared prerequisite runs once, before both examples that follow it."""
    reg = fake_registry(
        a=(Example("one", {}, None), Example("two", {}, None, given=("a/one",))),
        b=(Example("three", {}, None, given=("a/one", "a/two")),),
    )
    assert [(m, ex.name) for m, ex in steps(reg, "b/three")] == [
        ("a", "one"),
        ("a", "two"),
        ("b", "three"),
    ]


def test_steps_do_not_depend_on_the_order_of_methods() -> None:
    """A method added before the others leaves every other example's steps unchanged."""
    story = {"a": (Example("one", {}, None), Example("two", {}, None, given=("a/one",)))}
    before = [(m, e.name) for m, e in steps(fake_registry(**story), "a/two")]
    added = fake_registry(new=(Example("first", {}, None),), **story)
    assert [(m, e.name) for m, e in steps(added, "a/two")] == before


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        pytest.param(
            {"a": (Example("one", {}, None, given=("a/none",)),)},
            "no example 'a/none'",
            id="unknown-example",
        ),
        pytest.param(
            {"a": (Example("one", {}, None, given=("one",)),)},
            "no example 'one'",
            id="no-method-named",
        ),
        pytest.param(
            {
                "a": (
                    Example("one", {}, None, given=("a/two",)),
                    Example("two", {}, None, given=("a/one",)),
                )
            },
            "cycle: a/one -> a/two -> a/one",
            id="cycle",
        ),
        pytest.param(
            {"a": (Example("zero", {}, None), Example("one", {}, None, takes=(("p", "a/zero"),)))},
            "a/one takes p from a/zero, which it does not follow",
            id="takes-from-an-example-not-followed",
        ),
    ],
)
def test_a_broken_reference_is_an_error(
    examples: dict[str, tuple[Example, ...]], message: str
) -> None:
    """A `given` that names no example, or a cycle, is refused (so `make openrpc` fails)."""
    with pytest.raises(ValueError, match=message):
        steps(fake_registry(**examples), "a/one")
