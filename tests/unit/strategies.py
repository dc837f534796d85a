"""Hypothesis strategies that build valid instances of every event class.

Each class gets an explicit strategy for every field it declares (except ``type`` and
``schema_version``, which keep their defaults), so that a field or event type added
without a strategy makes ``test_codec`` fail instead of silently going untested.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from schemas.events import (
    MAX_BYTES,
    MAX_DURATION_MS,
    MAX_MEMORY_MB,
    MAX_TIME_NS,
    MAX_USD,
    Action,
    Anomaly,
    ControlKind,
    ControlUpdate,
    CostEvent,
    DeadLetter,
    Decision,
    Driver,
    Event,
    Feedback,
    Hold,
    Incident,
    IncidentStatus,
    Judgement,
    Outcome,
    PolicyDecision,
    Severity,
    Span,
    SpanEvent,
    SpanKind,
    SpanLink,
    StatusCode,
    ThresholdChange,
    Verdict,
)

INT64_MAX = 2**63 - 1
DEFAULTED = frozenset({"type", "schema_version"})
"""Fields the strategies leave to their defaults."""

Strategy = st.SearchStrategy[Any]


def text(min_size: int = 0, max_size: int = 40) -> Strategy:
    """Unicode text (no surrogates: they cannot be encoded as UTF-8)."""
    return st.text(min_size=min_size, max_size=max_size)


def hex_id(length: int) -> Strategy:
    return st.text(alphabet="0123456789abcdef", min_size=length, max_size=length)


unix_ns: Strategy = st.integers(min_value=0, max_value=MAX_TIME_NS)
any_int: Strategy = st.integers(min_value=-INT64_MAX - 1, max_value=INT64_MAX)
finite: Strategy = st.floats(allow_nan=False, allow_infinity=False)
non_negative: Strategy = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
duration: Strategy = st.floats(min_value=0.0, max_value=MAX_DURATION_MS)
usd: Strategy = st.floats(min_value=0.0, max_value=MAX_USD)
function_name: Strategy = text(1, 256)
event_id: Strategy = text(1, 64)
attribute_value: Strategy = st.one_of(text(), any_int, finite, st.booleans())
attributes: Strategy = st.dictionaries(text(max_size=20), attribute_value, max_size=5)
float_map: Strategy = st.dictionaries(text(max_size=20), finite, max_size=5)


def common() -> dict[str, Strategy]:
    """Strategies for the fields every event carries."""
    return {"function": function_name, "event_id": event_id, "time_unix_nano": unix_ns}


span_events: Strategy = st.lists(
    st.builds(
        SpanEvent,
        name=text(1, 256),
        time_unix_nano=unix_ns,
        attributes=attributes,
    ),
    max_size=3,
)

span_links: Strategy = st.lists(
    st.builds(
        SpanLink,
        trace_id=hex_id(32),
        span_id=hex_id(16),
        trace_state=text(max_size=512),
        attributes=attributes,
    ),
    max_size=2,
)

FIELD_STRATEGIES: dict[type[Event], dict[str, Strategy]] = {
    Span: {
        **common(),
        "trace_id": hex_id(32),
        "span_id": hex_id(16),
        "parent_span_id": st.one_of(st.just(""), hex_id(16)),
        "trace_state": text(max_size=512),
        "name": text(1, 256),
        "kind": st.sampled_from(SpanKind),
        "start_time_unix_nano": unix_ns,
        "end_time_unix_nano": unix_ns,
        "status_code": st.sampled_from(StatusCode),
        "status_message": text(max_size=200),
        "attributes": attributes,
        "resource": attributes,
        "scope_name": text(),
        "scope_version": text(),
        "events": span_events,
        "links": span_links,
    },
    CostEvent: {
        **common(),
        "invocation_id": text(1, 256),
        "trace_id": st.one_of(st.just(""), hex_id(32)),
        "span_id": st.one_of(st.just(""), hex_id(16)),
        "provider": text(max_size=64),
        "version": text(max_size=128),
        "team": text(max_size=128),
        "memory_mb": st.integers(min_value=0, max_value=MAX_MEMORY_MB),
        "duration_ms": duration,
        "billed_duration_ms": duration,
        "cold_start": st.booleans(),
        "outcome": st.sampled_from(Outcome),
        "egress_bytes": st.integers(min_value=0, max_value=MAX_BYTES),
        "cost_usd": usd,
        "compute_usd": usd,
        "request_usd": usd,
        "egress_usd": usd,
        "custom_usd": float_map,
    },
    Anomaly: {
        **common(),
        "detector": text(1, 128),
        "score": finite,
        "threshold": finite,
        "severity": st.sampled_from(Severity),
        "window_start_unix_nano": unix_ns,
        "window_end_unix_nano": unix_ns,
        "features": float_map,
        "baseline": float_map,
        "explanation": text(max_size=200),
        "cost_impact_usd_per_hour": finite,
        "version": text(max_size=128),
        "driver": st.sampled_from(Driver),
        "held": st.sampled_from(Hold),
    },
    Verdict: {
        **common(),
        "action": st.sampled_from(Action),
        "rate_rps": st.none() | non_negative,
        "issued_at_unix_nano": unix_ns,
        "expires_at_unix_nano": unix_ns,
        "sequence": st.integers(min_value=0, max_value=INT64_MAX),
        "reason": text(max_size=200),
        "anomaly_id": text(),
        "issuer": text(),
        "egress_allow": st.none() | st.lists(text(max_size=64), max_size=4),
        "signature": st.one_of(st.just(""), hex_id(64).map("hmac-sha256:".__add__)),
    },
    ControlUpdate: {
        **common(),
        "kind": st.sampled_from(ControlKind),
        "values": attributes,
        "actor": text(max_size=256),
        "reason": text(max_size=200),
        "signature": st.one_of(st.just(""), hex_id(64).map("hmac-sha256:".__add__)),
    },
    PolicyDecision: {
        **common(),
        "policy": text(1, 256),
        "decision": st.sampled_from(Decision),
        "rate_rps": st.none() | non_negative,
        "reason": text(max_size=200),
        "severity": st.sampled_from(Severity),
        "team": text(max_size=128),
        "version": text(max_size=128),
        "window_start_unix_nano": unix_ns,
        "anomaly_id": text(),
        "bundle": text(max_size=128),
        "inputs": attributes,
        "stage": st.sampled_from(["runtime", "pre-deploy", "pre-commit"]) | text(max_size=32),
        "revision": text(max_size=128),
    },
    Incident: {
        **common(),
        "incident_id": text(1, 128),
        "status": st.sampled_from(IncidentStatus),
        "severity": st.sampled_from(Severity),
        "team": text(max_size=128),
        "title": text(1, 200),
        "summary": text(max_size=200),
        "driver": text(max_size=200),
        "cost_impact_usd_per_hour": finite,
        "actions": st.lists(text(max_size=64), max_size=4),
        "runbook_url": text(max_size=200),
        "opened_at_unix_nano": unix_ns,
        "resolved_at_unix_nano": unix_ns,
        "updates": st.integers(min_value=0, max_value=INT64_MAX),
        "kind": text(max_size=64),
        "folded_into": text(max_size=64),
    },
    ThresholdChange: {
        **common(),
        "key": text(1, 128),
        "old": text(),
        "new": text(),
        "actor": text(max_size=256),
        "reason": text(max_size=200),
        "change_id": text(1, 64),
        "undo_of": text(),
    },
    Feedback: {
        **common(),
        "incident_id": text(1, 64),
        "judgement": st.sampled_from(Judgement),
        "detector": text(max_size=128),
        "kind": text(max_size=64),
        "ratio": non_negative,
        "actor": text(max_size=256),
        "reason": text(max_size=200),
        "change_id": text(max_size=64),
    },
    DeadLetter: {
        **common(),
        "source_topic": text(),
        "partition": any_int,
        "offset": any_int,
        "key": text(),
        "reason": text(1, 200),
        "payload": text(max_size=200),
        "payload_size": st.integers(min_value=0, max_value=INT64_MAX),
    },
}
"""An explicit strategy for every field of every event class."""

EVENT_STRATEGIES: dict[type[Event], st.SearchStrategy[Event]] = {
    cls: st.builds(cls, **fields).filter(lambda e: e.invalid() is None)
    for cls, fields in FIELD_STRATEGIES.items()
}
"""A strategy of valid instances for every event class."""

any_event: st.SearchStrategy[Event] = st.one_of(*EVENT_STRATEGIES.values())
"""A valid event of any type."""
