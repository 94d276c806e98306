"""Pydantic's validation errors as one-line configuration errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from hero_codescalers.config_errors import describe, setting_name
from hero_codescalers.settings import Settings


def errors_of(**values: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    return [str(e) for e in describe(caught.value, from_flags={"socket_mode"})]


def test_a_flag_is_named_as_a_flag_and_a_variable_as_a_variable() -> None:
    """The same mistake names --socket-mode when given as a flag, the variable otherwise."""
    assert errors_of(socket_mode="8") == [
        "--socket-mode=8: '8' is not an octal number; "
        "expected an octal file mode from 0000 to 0777, such as 0660"
    ]
    assert errors_of(max_batch=0) == [
        "HERO_CODESCALERS_MAX_BATCH=0: input should be greater than or equal to 1; "
        "expected a whole number from 1 to 10000"
    ]
    assert setting_name("socket_dir") == "HERO_SOCKET_DIR"


def test_a_rule_between_settings_names_no_single_value() -> None:
    """A model-level rule (two settings that do not fit) is one line without a value."""

    class Pair(BaseModel):
        low: int
        high: int

        @model_validator(mode="after")
        def _ordered(self) -> Pair:
            if self.low >= self.high:
                raise ValueError("low must be smaller than high")
            return self

    with pytest.raises(ValidationError) as caught:
        Pair(low=2, high=1)
    assert [str(e) for e in describe(caught.value)] == [
        "settings: low must be smaller than high; expected settings that fit together"
    ]
