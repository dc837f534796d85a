"""A finished invocation as its two wire records, encoded on the export thread.

This is the agent's work per invocation off the calling thread, so it builds the JSON
straight from the ended span: no :class:`schemas.Span` or :class:`schemas.CostEvent`
is constructed (a frozen dataclass of twenty fields costs microseconds to build). The
bytes are exactly :func:`schemas.encode` of the events they decode to — the dicts
follow the classes' field order, types and defaults, and a test holds every shape of
invocation to that. What does not change between calls of a function (its resource
attributes) is encoded once, as an :class:`orjson.Fragment`.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import orjson
from opentelemetry.trace import StatusCode as OtelStatus

from schemas import SCHEMA_VERSION, SpanKind, StatusCode
from schemas.events import MAX_USD

TRACE_STATE_CHARS = 512
"""Longest ``tracestate`` a span carries (the contract's): members past it are dropped
from the right, as W3C Trace Context lets a vendor do."""
STATUS_CHARS = 4096
"""Longest status message a span carries (the contract's): a caller's input quoted
in an exception must not make the span invalid."""

SCOPE_NAME, SCOPE_VERSION = "faas-governor", "0.1.0"
_STATUS = {OtelStatus.UNSET: StatusCode.UNSET.value, OtelStatus.OK: StatusCode.OK.value,
           OtelStatus.ERROR: StatusCode.ERROR.value}
_SERVER = SpanKind.SERVER.value
_dumps = orjson.dumps


class Wire(NamedTuple):
    """One encoded event: its type (``span`` or ``cost``), its key and its value."""

    type: str
    function: str
    value: bytes


def resource_fragment(resource: dict[str, Any]) -> orjson.Fragment:
    """A function's resource attributes, encoded once for all its spans."""
    return orjson.Fragment(_dumps(resource))


def encode_invocation(record: tuple[Any, ...]) -> tuple[Wire, Wire]:
    """The span and cost event of a finished invocation, priced and encoded.

    ``record`` is what the decorator queues: the bound function, the ended
    :class:`~agents._span.InvocationSpan`, the invocation id, cold start, trigger,
    outcome, billed duration (the agent's flush included), custom costs, egress bytes
    and the AWS X-Ray trace header (linked from the span).
    """
    (bound, span, invocation_id, cold, trigger, outcome, duration_ms, custom, egress,
     xray) = record
    function = bound.function
    bill = bound.price.invocation(duration_ms=duration_ms, memory_mb=bound.memory_mb,
                                  egress_bytes=egress)
    total = min(bill.compute_usd + bill.request_usd + bill.egress_usd + sum(custom.values()),
                MAX_USD)
    trace_id, span_id = f"{span.trace_id:032x}", f"{span.span_id:016x}"
    parent, trace_state, status = span.parent_span_id, span.trace_state, span.status
    attributes = _attributes(span.attributes) if span.attributes else {}
    message = status.description or ""
    events = [(name, at, _attributes(a)) for name, at, a in span.events]
    redactor = bound.runtime.redactor
    if redactor is not None:  # before anything leaves the function
        attributes, message = redactor.attributes(attributes), redactor.text(message)
        events = [(name, at, redactor.attributes(a)) for name, at, a in events]
    message = message[:STATUS_CHARS]
    attributes["faas.invocation_id"] = invocation_id
    attributes["faas.coldstart"] = cold
    attributes["faas.trigger"] = trigger
    attributes["governor.cost.usd"] = total
    attributes["governor.egress.bytes"] = egress
    end = span.end_time
    event_id = trace_id + span_id
    span_value = _dumps({
        "function": function, "event_id": event_id, "time_unix_nano": end,
        "schema_version": SCHEMA_VERSION, "type": "span", "trace_id": trace_id,
        "span_id": span_id, "parent_span_id": f"{parent:016x}" if parent else "",
        "trace_state": _trace_state(trace_state.to_header()) if trace_state else "",
        "name": span.name,
        "kind": _SERVER, "start_time_unix_nano": span.start_time, "end_time_unix_nano": end,
        "status_code": _STATUS[status.status_code], "status_message": message,
        "attributes": attributes, "resource": bound.resource_json,
        "scope_name": SCOPE_NAME, "scope_version": SCOPE_VERSION,
        "events": [{"name": name, "time_unix_nano": at, "attributes": a}
                   for name, at, a in events],
        "links": _xray_link(xray) if xray else []})
    cost_value = _dumps({
        "function": function, "event_id": event_id + "c", "time_unix_nano": end,
        "schema_version": SCHEMA_VERSION, "type": "cost", "invocation_id": invocation_id,
        "trace_id": trace_id, "span_id": span_id, "provider": bound.provider,
        "version": bound.version, "team": bound.team, "memory_mb": bound.memory_mb,
        "duration_ms": duration_ms, "billed_duration_ms": bill.billed_duration_ms,
        "cold_start": cold, "outcome": outcome, "egress_bytes": egress, "cost_usd": total,
        "compute_usd": bill.compute_usd, "request_usd": bill.request_usd,
        "egress_usd": bill.egress_usd, "custom_usd": custom})
    return Wire("span", function, span_value), Wire("cost", function, cost_value)


def _trace_state(header: str) -> str:
    """``header`` whole if it fits :data:`TRACE_STATE_CHARS`, else its leading members
    that do."""
    if len(header) <= TRACE_STATE_CHARS:
        return header
    kept: list[str] = []
    for member in header.split(","):
        if len(",".join([*kept, member])) > TRACE_STATE_CHARS:
            break
        kept.append(member)
    return ",".join(kept)


def _xray_link(header: str) -> list[dict[str, Any]]:
    """The AWS X-Ray trace of the call (``Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;…``) as
    a span link; none when the header is malformed."""
    fields = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
    root, parent = fields.get("Root", "").split("-"), fields.get("Parent", "").lower()
    trace_id = "".join(root[1:]).lower() if len(root) == 3 and root[0] == "1" else ""
    if len(trace_id) != 32 or len(parent) != 16 or not _is_hex(trace_id + parent):
        return []
    return [{"trace_id": trace_id, "span_id": parent, "trace_state": "",
             "attributes": {"link.source": "aws.xray",
                            "aws.xray.sampled": fields.get("Sampled", "") == "1"}}]


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _attributes(attrs: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """Attribute values as the contract takes them: sequences as a JSON array string."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in attrs.items():
        out[key] = value if isinstance(value, str | int | float | bool) else json.dumps(
            list(value), default=str)
    return out
