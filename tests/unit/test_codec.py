"""The codec round-trips every valid event and rejects bad input with one precise error."""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    EVENT_TYPES,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    Action,
    Anomaly,
    ControlKind,
    ControlUpdate,
    CostEvent,
    Event,
    SchemaError,
    Span,
    SpanEvent,
    SpanKind,
    Verdict,
    decode,
    decode_event,
    encode,
)
from schemas.codec import reference_decode
from tests.unit.strategies import DEFAULTED, EVENT_STRATEGIES, FIELD_STRATEGIES, any_event

ALL_TYPES = sorted(EVENT_TYPES.values(), key=lambda cls: cls.TYPE)
TRACE_ID = "0123456789abcdef0123456789abcdef"
SPAN_ID = "0123456789abcdef"


def cost_event() -> CostEvent:
    return CostEvent(function="checkout", invocation_id="r-1", cost_usd=0.0000021)


def span_event() -> Span:
    return Span(
        function="checkout",
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        name="POST /checkout",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes={"faas.coldstart": True, "http.status_code": 200},
        events=[SpanEvent(name="exception", time_unix_nano=2, attributes={"a": "b"})],
    )


def verdict_event() -> Verdict:
    return Verdict(
        function="checkout",
        action=Action.THROTTLE,
        rate_rps=2.5,
        expires_at_unix_nano=10,
        sequence=1,
    )


def payload(event: Event, **changes: Any) -> dict[str, Any]:
    """The JSON object of ``event`` with fields replaced (or removed when set to ``...``)."""
    raw: dict[str, Any] = orjson.loads(encode(event))
    for name, value in changes.items():
        if value is ...:
            del raw[name]
        else:
            raw[name] = value
    return raw


def rejected(data: bytes | str, cls: type[Event] | None = None) -> SchemaError:
    """The SchemaError that decoding ``data`` raises (as ``cls`` or by its type field)."""
    with pytest.raises(SchemaError) as info:
        if cls is None:
            decode_event(data)
        else:
            decode(data, cls)
    return info.value


def assert_rejected(raw: Any, cls: type[Event], field: str, word: str) -> SchemaError:
    """Both ``decode(.., cls)`` and ``decode_event`` reject ``raw`` at ``field``."""
    data = orjson.dumps(raw)
    for error in (rejected(data, cls), rejected(data)):
        assert error.field == field, str(error)
        assert word in error.problem, str(error)
        assert error.event_type == cls.TYPE
        assert str(error).startswith(f"{cls.TYPE}.{field}" if field else cls.TYPE)
    return error


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
@given(data=st.data())
def test_round_trip(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(EVENT_STRATEGIES[cls])
    encoded = encode(event)
    assert isinstance(encoded, bytes)
    assert decode(encoded, cls) == event
    assert decode_event(encoded) == event
    assert type(decode_event(encoded)) is cls
    assert encode(decode(encoded, cls)) == encoded


@given(event=any_event)
def test_round_trip_accepts_str_and_buffers(event: Event) -> None:
    encoded = encode(event)
    for data in (encoded.decode(), bytearray(encoded), memoryview(encoded)):
        assert decode_event(data) == event


def test_round_trip_preserves_python_types() -> None:
    span = decode(encode(span_event()), Span)
    assert span.attributes == {"faas.coldstart": True, "http.status_code": 200}
    assert type(span.attributes["faas.coldstart"]) is bool
    assert type(span.attributes["http.status_code"]) is int
    assert type(span.events[0]) is SpanEvent
    assert span.kind is SpanKind.SERVER
    verdict = decode(encode(verdict_event()), Verdict)
    assert verdict.action is Action.THROTTLE
    assert decode(encode(dataclasses.replace(verdict, rate_rps=None)), Verdict).rate_rps is None


def test_strategies_cover_every_event_type() -> None:
    assert set(EVENT_STRATEGIES) == set(EVENT_TYPES.values())


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_strategies_cover_every_field(cls: type[Event]) -> None:
    declared = {f.name for f in dataclasses.fields(cls)} - DEFAULTED
    assert set(FIELD_STRATEGIES[cls]) == declared


@given(event=any_event)
def test_type_and_version_are_written(event: Event) -> None:
    raw = orjson.loads(encode(event))
    assert raw["type"] == type(event).TYPE
    assert raw["schema_version"] == SCHEMA_VERSION


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "word"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"type": "cost",', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"NaN", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'"cost"', "expected a JSON object"),
        (b"null", "expected a JSON object"),
        (b"42", "expected a JSON object"),
    ],
)
def test_payload_that_is_not_a_json_object(data: bytes, word: str) -> None:
    for error, event_type in ((rejected(data, CostEvent), "cost"), (rejected(data), "event")):
        assert error.field == ""
        assert word in error.problem
        assert error.event_type == event_type


def test_missing_required_field() -> None:
    assert_rejected(payload(cost_event(), invocation_id=...), CostEvent, "invocation_id", "missing")
    assert_rejected(payload(cost_event(), function=...), CostEvent, "function", "missing")
    assert_rejected(payload(verdict_event(), sequence=...), Verdict, "sequence", "missing")


def test_fields_with_defaults_may_be_omitted() -> None:
    raw = {"type": "cost", "function": "f", "invocation_id": "i"}
    event = decode(orjson.dumps(raw), CostEvent)
    assert event.memory_mb == 128
    assert event.schema_version == SCHEMA_VERSION
    assert len(event.event_id) == 32


def test_unknown_field() -> None:
    error = assert_rejected(payload(cost_event(), colour="red"), CostEvent, "colour", "unknown")
    assert "invocation_id" in error.problem  # says what is expected


@pytest.mark.parametrize(
    ("field", "value", "path", "word"),
    [
        ("function", 1, "function", "expected a string"),
        ("function", None, "function", "expected a string"),
        ("function", ["f"], "function", "expected a string"),
        ("memory_mb", "128", "memory_mb", "expected an integer"),
        ("memory_mb", True, "memory_mb", "expected an integer"),
        ("memory_mb", 128.5, "memory_mb", "expected an integer"),
        ("memory_mb", None, "memory_mb", "expected an integer"),
        ("cost_usd", "0.1", "cost_usd", "expected a number"),
        ("cost_usd", False, "cost_usd", "expected a number"),
        ("cost_usd", None, "cost_usd", "expected a number"),
        ("cold_start", 1, "cold_start", "expected a boolean"),
        ("cold_start", "true", "cold_start", "expected a boolean"),
        ("custom_usd", [], "custom_usd", "expected an object"),
        ("custom_usd", {"llm": "1"}, "custom_usd['llm']", "expected a number"),
        ("custom_usd", {"llm": True}, "custom_usd['llm']", "expected a number"),
    ],
)
def test_wrong_type(field: str, value: Any, path: str, word: str) -> None:
    error = assert_rejected(payload(cost_event(), **{field: value}), CostEvent, path, word)
    assert error.problem.endswith(
        ("null", "a string", "an integer", "a number", "a boolean", "an array", "an object")
    )


def test_int_passes_as_float() -> None:
    raw = payload(cost_event(), cost_usd=3, custom_usd={"llm_tokens": 2})
    event = decode(orjson.dumps(raw), CostEvent)
    assert event.cost_usd == 3.0
    assert type(event.cost_usd) is float
    assert type(event.custom_usd["llm_tokens"]) is float


@pytest.mark.parametrize(
    ("field", "value"),
    [("cost_usd", -0.01), ("memory_mb", -1), ("time_unix_nano", -1), ("egress_bytes", -5)],
)
def test_negative_value_where_ge_zero(field: str, value: float) -> None:
    assert_rejected(payload(cost_event(), **{field: value}), CostEvent, field, ">= 0")


def test_negative_rate_and_zero_schema_version() -> None:
    assert_rejected(payload(verdict_event(), rate_rps=-1), Verdict, "rate_rps", ">= 0")
    assert_rejected(payload(verdict_event(), schema_version=0), Verdict, "schema_version", ">= 1")


def test_zero_is_allowed_where_ge_zero() -> None:
    raw = payload(cost_event(), cost_usd=0, memory_mb=0, time_unix_nano=0)
    assert decode(orjson.dumps(raw), CostEvent).cost_usd == 0.0


def test_enum_value_not_allowed() -> None:
    error = assert_rejected(
        payload(cost_event(), outcome="exploded"), CostEvent, "outcome", "expected one of"
    )
    assert "throttled" in error.problem
    assert "exploded" in error.problem
    assert_rejected(payload(cost_event(), outcome="OK"), CostEvent, "outcome", "expected one of")
    assert_rejected(payload(cost_event(), outcome=1), CostEvent, "outcome", "expected one of")
    assert_rejected(payload(verdict_event(), action="kill"), Verdict, "action", "expected one of")
    assert_rejected(payload(span_event(), kind="server"), Span, "kind", "expected one of")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trace_id", "not-a-trace-id"),
        ("trace_id", TRACE_ID.upper()),
        ("trace_id", TRACE_ID[:-1]),
        ("trace_id", TRACE_ID + "0"),
        ("span_id", "0123456789abcdeg"),
        ("span_id", ""),
    ],
)
def test_pattern_mismatch(field: str, value: str) -> None:
    assert_rejected(payload(span_event(), **{field: value}), Span, field, "does not match")


def test_too_long_and_empty_strings() -> None:
    assert decode(orjson.dumps(payload(cost_event(), function="f" * 256)), CostEvent)
    assert_rejected(
        payload(cost_event(), function="f" * 257), CostEvent, "function", "over the limit of 256"
    )
    assert_rejected(payload(cost_event(), function=""), CostEvent, "function", "empty")
    assert_rejected(
        payload(span_event(), parent_span_id="0" * 17),
        Span,
        "parent_span_id",
        "over the limit of 16",
    )


def test_newer_schema_version_asks_for_upgrade() -> None:
    raw = payload(cost_event(), schema_version=SCHEMA_VERSION + 1)
    error = assert_rejected(raw, CostEvent, "schema_version", "upgrade")
    assert str(SCHEMA_VERSION + 1) in error.problem
    # The version check comes first, so a newer event with new fields still says "upgrade".
    raw["field_from_the_future"] = 1
    assert_rejected(raw, CostEvent, "schema_version", "upgrade")
    for written in (SCHEMA_VERSION + 1.0, 99.0):  # JSON has no integer type: 2.0 is 2
        assert_rejected(payload(cost_event(), schema_version=written), CostEvent,
                        "schema_version", "upgrade")


def test_unknown_type_in_decode_event() -> None:
    for kind in ("bogus", None, 1, ["cost"], ""):
        error = rejected(orjson.dumps(payload(cost_event(), type=kind)))
        assert error.field == "type"
        assert "unknown event type" in error.problem
        assert error.event_type == "event"
        assert "verdict" in error.problem  # lists the known types
    error = rejected(orjson.dumps(payload(cost_event(), type=...)))
    assert (error.field, error.event_type) == ("type", "event")


def test_type_mismatch_in_decode() -> None:
    error = rejected(encode(cost_event()), Verdict)
    assert error.field == "type"
    assert "expected 'verdict'" in error.problem
    assert "'cost'" in error.problem
    assert error.event_type == "verdict"
    error = rejected(orjson.dumps(payload(cost_event(), type=...)), CostEvent)
    assert error.field == "type"


def test_payload_bigger_than_limit() -> None:
    encoded = encode(cost_event())
    at_limit = encoded + b" " * (MAX_PAYLOAD_BYTES - len(encoded))
    assert len(at_limit) == MAX_PAYLOAD_BYTES
    assert decode_event(at_limit) == decode_event(encoded)
    over = at_limit + b" "
    for data in (over, over.decode()):
        for error in (rejected(data, CostEvent), rejected(data)):
            assert error.field == ""
            assert "limit" in error.problem
            assert str(MAX_PAYLOAD_BYTES + 1) in error.problem


def test_payload_limit_counts_utf8_bytes_of_str() -> None:
    text = '{"type": "cost", "reason": "' + "é" * (MAX_PAYLOAD_BYTES // 2) + '"}'
    assert len(text) < MAX_PAYLOAD_BYTES < len(text.encode())
    assert "limit" in rejected(text).problem


def test_nested_error_in_span_events() -> None:
    good = {"name": "exception", "time_unix_nano": 1, "attributes": {}}
    cases: list[tuple[list[Any], str, str]] = [
        ([{**good, "name": ""}], "events[0].name", "empty"),
        ([good, {**good, "name": 7}], "events[1].name", "expected a string"),
        ([{"name": "x"}], "events[0].time_unix_nano", "missing"),
        ([{**good, "time_unix_nano": -1}], "events[0].time_unix_nano", ">= 0"),
        ([{**good, "colour": "red"}], "events[0].colour", "unknown"),
        ([{**good, "attributes": {"k": None}}], "events[0].attributes['k']", "expected a string"),
        (["exception"], "events[0]", "expected an object"),
    ]
    for events, field, word in cases:
        assert_rejected(payload(span_event(), events=events), Span, field, word)
    assert_rejected(payload(span_event(), events={"0": good}), Span, "events", "expected an array")


@pytest.mark.parametrize("value", [[1, 2], {"nested": 1}, None])
@pytest.mark.parametrize("field", ["attributes", "resource"])
def test_attribute_value_must_be_primitive(field: str, value: Any) -> None:
    raw = payload(span_event(), **{field: {"ok": 1, "bad": value}})
    error = assert_rejected(raw, Span, f"{field}['bad']", "expected a string, number or boolean")
    assert "bad" in error.field


def test_control_values_must_be_primitive() -> None:
    event = ControlUpdate(function="*", kind=ControlKind.THRESHOLDS, values={"z": 3.0})
    assert_rejected(
        payload(event, values={"z": [3]}),
        ControlUpdate,
        "values['z']",
        "expected a string, number or boolean",
    )


# --------------------------------------------------------------------------- fuzzing

INT_RANGE = {"min_value": -(2**63), "max_value": 2**64 - 1}  # what orjson can write
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(**INT_RANGE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = sorted(
    {f.name for cls in (*EVENT_TYPES.values(), SpanEvent) for f in dataclasses.fields(cls)}
)


def decodes_or_schema_error(data: bytes) -> None:
    """``decode_event`` either raises SchemaError or returns an event that re-encodes stably."""
    try:
        event = decode_event(data)
    except SchemaError as error:
        assert isinstance(error.field, str)
        assert error.problem
        return
    assert type(event) in EVENT_TYPES.values()
    assert decode_event(encode(event)) == event


@given(value=json_values)
def test_fuzz_arbitrary_json(value: Any) -> None:
    decodes_or_schema_error(orjson.dumps(value))


@given(data=st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    decodes_or_schema_error(data)


@given(
    kind=st.sampled_from(sorted(EVENT_TYPES)),
    fields=st.dictionaries(
        st.sampled_from(FIELD_NAMES) | st.text(max_size=8), json_values, max_size=12
    ),
)
def test_fuzz_event_shaped_objects(kind: str, fields: dict[str, Any]) -> None:
    decodes_or_schema_error(orjson.dumps({**fields, "type": kind}))


@given(
    event=any_event,
    field=st.sampled_from(FIELD_NAMES),
    value=json_values | st.just(...),
)
def test_fuzz_one_field_of_a_valid_event(event: Event, field: str, value: Any) -> None:
    raw = orjson.loads(encode(event))
    if value is ...:
        raw.pop(field, None)
    else:
        raw[field] = value
    decodes_or_schema_error(orjson.dumps(raw))


def _outcome(decoder: Any, data: bytes, cls: type[Event]) -> Any:
    try:
        return decoder(data, cls)
    except SchemaError as error:
        return ("rejected", error.field, error.problem)


@given(
    event=any_event,
    field=st.sampled_from(FIELD_NAMES) | st.text(max_size=8),
    value=json_values | st.just(...),
    data=st.data(),
)
def test_the_fast_path_decides_as_the_reference_does(
        event: Event, field: str, value: Any, data: st.DataObject) -> None:
    """The C fast path (:mod:`schemas._fast`) takes only what the reference path takes
    and builds the same event: on valid events, and on each with one field replaced
    (by any JSON value, or a boundary value of the contract), added or removed."""
    cls = type(event)
    raw = orjson.loads(encode(event))
    if value is ...:
        raw.pop(field, None)
    else:
        raw[field] = data.draw(st.sampled_from(
            [value, 0, -1, 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 1e308, 128.0, 0.5,
             "", "x" * 257, "0" * 32, "0" * 16, "ok", True, None, [], {}]))
    for given_fields, encoded in ((set(raw) | {field}, encode(event)),
                                  (set(raw), orjson.dumps(raw))):
        fast, reference = _outcome(decode, encoded, cls), _outcome(reference_decode, encoded, cls)
        if not isinstance(fast, tuple) and not isinstance(reference, tuple):
            generated = {f.name: getattr(reference, f.name) for f in dataclasses.fields(cls)
                         if f.default_factory is not dataclasses.MISSING
                         and f.name not in given_fields}  # a fresh id or time: any will do
            fast = dataclasses.replace(fast, **generated)
            assert type(fast) is type(reference) and encode(fast) == encode(reference)
        assert fast == reference


# --------------------------------------------------------------------------- regressions


def test_pattern_rejects_trailing_newline() -> None:
    raw = payload(span_event(), trace_id=TRACE_ID + "\n")
    try:
        event = decode(orjson.dumps(raw), Span)
    except SchemaError as error:
        assert error.field == "trace_id"
    else:
        raise AssertionError(f"accepted trace_id {event.trace_id!r}")


def test_str_with_lone_surrogate_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        decode_event('{"type": "cost", "function": "\ud800"}')


def test_integral_floats_are_integers_as_in_json_schema() -> None:
    raw = orjson.loads(encode(CostEvent(function="f", invocation_id="i")))
    raw["memory_mb"] = 256.0
    event = decode(orjson.dumps(raw), CostEvent)
    assert event.memory_mb == 256 and type(event.memory_mb) is int


@pytest.mark.parametrize(("cls", "changes", "field", "problem"), [
    (CostEvent, {"memory_mb": 2**32}, "memory_mb", "must be <="),
    (CostEvent, {}, "egress_bytes", "64-bit"),
    (CostEvent, {"time_unix_nano": 2**63}, "time_unix_nano", "64-bit"),
    (CostEvent, {"cost_usd": 1e300}, "cost_usd", "must be <="),
    (CostEvent, {"duration_ms": 1e12}, "duration_ms", "must be <="),
    (Span, {"start_time_unix_nano": 20, "end_time_unix_nano": 10}, "end_time_unix_nano",
     "ends (10) before it starts (20)"),
    (Span, {"start_time_unix_nano": 2**63}, "start_time_unix_nano", "64-bit"),
    (Span, {"start_time_unix_nano": 5_000_000_000 * 10**9}, "start_time_unix_nano",
     "must be <="),
])
def test_physically_impossible_values_are_refused_with_the_field_named(
        cls: type[Event], changes: dict[str, Any], field: str, problem: str) -> None:
    """Each of these once halted ingest for good or poisoned a function's models."""
    base: dict[str, Any] = {
        CostEvent: {"type": "cost", "function": "f", "invocation_id": "i",
                    "time_unix_nano": 10**18},
        Span: {"type": "span", "function": "f", "trace_id": "a" * 32, "span_id": "b" * 16,
               "name": "f", "start_time_unix_nano": 1, "end_time_unix_nano": 2,
               "time_unix_nano": 10**18}}[cls]
    if field == "egress_bytes":  # a float literal above 2**64, as a hostile producer sends
        payload = orjson.dumps(base)[:-1] + b',"egress_bytes":184467440737095516160}'
    else:
        payload = orjson.dumps({**base, **changes})
    with pytest.raises(SchemaError) as refused:
        decode(payload, cls)
    assert refused.value.field == field and problem in refused.value.problem


def test_an_anomaly_with_an_infinite_score_still_round_trips() -> None:
    anomaly = Anomaly(function="f", detector="d", score=math.inf,
                      features={"x": math.nan, "y": 2.0}, baseline={"x": -math.inf})
    back = decode(encode(anomaly), Anomaly)
    assert back.score == sys.float_info.max and back.features == {"x": 0.0, "y": 2.0}
    assert back.baseline == {"x": -sys.float_info.max}
