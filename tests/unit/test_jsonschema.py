"""The committed JSON Schema files match the event classes and agree with the codec."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from jsonschema import Draft202012Validator

from schemas import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Action,
    CostEvent,
    Event,
    SchemaError,
    Span,
    SpanEvent,
    Verdict,
    decode,
    decode_event,
    encode,
)
from schemas.jsonschema import SCHEMA_DIR, build_schema, render, schema_path
from tests.unit.strategies import any_event

ALL_TYPES = sorted(EVENT_TYPES.values(), key=lambda cls: cls.TYPE)
REGENERATE = "run `python -m schemas.jsonschema` and commit schemas/json/"


def validator(cls: type[Event]) -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(schema_path(cls).read_bytes()))


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_committed_schema_is_up_to_date(cls: type[Event]) -> None:
    path = schema_path(cls)
    assert path.is_file(), f"{path} is missing; {REGENERATE}"
    assert path.read_bytes() == render(cls), f"{path} is out of date; {REGENERATE}"


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_schema_is_a_valid_draft_2020_12_schema(cls: type[Event]) -> None:
    schema = build_schema(cls)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["type"]["const"] == cls.TYPE
    assert "type" in schema["required"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["schema_version"]["maximum"] == SCHEMA_VERSION


def test_no_stale_schema_files() -> None:
    expected = {schema_path(cls).name for cls in EVENT_TYPES.values()}
    committed = {path.name for path in SCHEMA_DIR.iterdir()}
    stale = committed - expected
    assert not stale, f"schemas/json/ has files for no event class: {sorted(stale)}; {REGENERATE}"
    assert committed == expected, REGENERATE


@given(event=any_event)
def test_encoded_events_validate_against_their_schema(event: Event) -> None:
    instance = orjson.loads(encode(event))
    errors = [error.message for error in validator(type(event)).iter_errors(instance)]
    assert not errors


def cost() -> dict[str, Any]:
    raw: dict[str, Any] = orjson.loads(encode(CostEvent(function="f", invocation_id="r-1")))
    return raw


def verdict() -> dict[str, Any]:
    event = Verdict(function="f", action=Action.RELEASE, expires_at_unix_nano=5, sequence=3)
    raw: dict[str, Any] = orjson.loads(encode(event))
    return raw


def span(**changes: Any) -> dict[str, Any]:
    event = Span(
        function="f",
        trace_id="a" * 32,
        span_id="b" * 16,
        name="n",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        events=[SpanEvent(name="e", time_unix_nano=1)],
    )
    raw: dict[str, Any] = orjson.loads(encode(event))
    return {**raw, **changes}


def without(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key != name}


INVALID: dict[str, tuple[type[Event], dict[str, Any]]] = {
    "missing field": (CostEvent, without(cost(), "invocation_id")),
    "missing type": (CostEvent, without(cost(), "type")),
    "missing nested field": (Span, span(events=[{"name": "e"}])),
    "wrong type str": (CostEvent, {**cost(), "function": 7}),
    "wrong type int": (CostEvent, {**cost(), "memory_mb": "128"}),
    "bool as int": (CostEvent, {**cost(), "memory_mb": True}),
    "fractional int": (CostEvent, {**cost(), "memory_mb": 1.5}),
    "wrong type float": (CostEvent, {**cost(), "cost_usd": "0.1"}),
    "wrong type bool": (CostEvent, {**cost(), "cold_start": 0}),
    "null for required": (Verdict, {**verdict(), "sequence": None}),
    "unknown field": (CostEvent, {**cost(), "colour": "red"}),
    "unknown nested field": (Span, span(events=[{"name": "e", "time_unix_nano": 1, "x": 1}])),
    "negative cost": (CostEvent, {**cost(), "cost_usd": -0.5}),
    "negative rate": (Verdict, {**verdict(), "rate_rps": -1}),
    "bad enum": (CostEvent, {**cost(), "outcome": "exploded"}),
    "bad action": (Verdict, {**verdict(), "action": "kill"}),
    "pattern mismatch": (Span, span(trace_id="A" * 32)),
    "too long": (CostEvent, {**cost(), "function": "f" * 257}),
    "empty": (CostEvent, {**cost(), "function": ""}),
    "newer version": (CostEvent, {**cost(), "schema_version": SCHEMA_VERSION + 1}),
    "version zero": (CostEvent, {**cost(), "schema_version": 0}),
    "wrong type value": (Verdict, {**cost(), "type": "verdict"}),
    "list attribute": (Span, span(attributes={"k": [1]})),
    "null attribute": (Span, span(resource={"k": None})),
}


@pytest.mark.parametrize(("cls", "raw"), INVALID.values(), ids=list(INVALID))
def test_schema_and_codec_both_reject(cls: type[Event], raw: dict[str, Any]) -> None:
    assert list(validator(cls).iter_errors(raw)), "JSON Schema accepted it"
    data = orjson.dumps(raw)
    with pytest.raises(SchemaError):
        decode(data, cls)
    with pytest.raises(SchemaError):
        decode_event(data)


@pytest.mark.parametrize(
    ("cls", "raw"),
    [
        (CostEvent, cost()),
        (CostEvent, {**cost(), "cost_usd": 1}),  # an integer is a number
        (Verdict, {**verdict(), "rate_rps": None}),
        (Span, span(attributes={"s": "x", "i": 1, "f": 1.5, "b": True})),
    ],
)
def test_schema_and_codec_both_accept(cls: type[Event], raw: dict[str, Any]) -> None:
    assert not list(validator(cls).iter_errors(raw))
    assert isinstance(decode(orjson.dumps(raw), cls), cls)
