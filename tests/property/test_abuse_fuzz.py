"""Whatever a caller sends, the answer is a documented JSON-RPC error or a result, never a fault."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hero_codescalers.errors import DOCUMENTED, INTERNAL_ERROR
from hero_codescalers.methods import registry
from hero_codescalers.simulator import Faults

from .conftest import Stack

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
PARAM_NAMES = sorted({name for m in registry.methods.values() for name in m.params.model_fields})
params_strategy = st.one_of(
    st.dictionaries(st.sampled_from(PARAM_NAMES) | st.text(max_size=10), json_values, max_size=6),
    st.lists(json_values, max_size=7),
)
FAULT_TEXT = ("Traceback", 'File "', "Exception", "Error(")


def assert_documented(answer: dict[str, Any]) -> None:
    assert answer["jsonrpc"] == "2.0"
    assert ("result" in answer) != ("error" in answer)
    if "error" in answer:
        code = answer["error"]["code"]
        assert code in DOCUMENTED, answer
        assert code != INTERNAL_ERROR, answer
        assert answer["error"]["message"] == DOCUMENTED[code][1]
        text = json.dumps(answer["error"].get("data"))
        assert not any(t in text for t in FAULT_TEXT), answer


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(sorted(registry.methods)), params=params_strategy)
def test_any_params_get_a_result_or_a_documented_error(
    stack: Stack, method: str, params: Any
) -> None:
    """Wrong types, unknown names, arrays for objects: -32602 (or a result), never -32603."""
    stack.sim.store.reset()
    stack.sim.store.faults = Faults()
    assert_documented(stack.answer(method, params))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_body_gets_a_json_rpc_answer(stack: Stack, body: bytes) -> None:
    """Random bytes: a parse error or an invalid request, answered as JSON-RPC (or nothing)."""
    status, answer = stack.post_raw(body)
    assert status in (200, 204)
    for item in answer if isinstance(answer, list) else [answer] if answer else []:
        assert_documented(item)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(
        st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "jsonrpc": st.just("2.0"),
                    "method": st.sampled_from(sorted(registry.methods)) | st.text(max_size=8),
                },
                optional={
                    "id": st.integers() | st.text(max_size=5) | st.none(),
                    "params": params_strategy,
                },
            ),
        ),
        max_size=8,
    )
)
def test_any_batch_gets_one_documented_answer_per_request(stack: Stack, items: list[Any]) -> None:
    """Batches of anything: one answer per non-notification item, each documented."""
    stack.sim.store.reset()
    status, answer = stack.post(items)
    assert status in (200, 204)
    if not items:
        assert answer["error"]["code"] == -32600
        return
    expected = sum(
        1 for i in items if not (isinstance(i, dict) and "id" not in i and _well_formed(i))
    )
    answers = answer or []
    assert len(answers) == expected
    for item in answers:
        assert_documented(item)


def _well_formed(item: dict[str, Any]) -> bool:
    """A notification gets no answer only if it is a valid request object."""
    return (
        item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and ("params" not in item or isinstance(item["params"], dict | list))
    )
