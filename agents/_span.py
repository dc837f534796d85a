"""The invocation span: an OpenTelemetry API span that records into plain fields.

The handler sees it as the current span (``trace.get_current_span()``), so it can add
attributes and events, and spans that the function's own OpenTelemetry SDK starts nest
under it. It is built and ended without the SDK's span pipeline (sampler, id generator,
bounded attribute maps with locks, a read-only copy on ``end``): that pipeline cost the
calling thread about 9 µs a call, this one about 1 µs. The export thread turns it into
a :class:`schemas.Span`.

Limits follow the SDK's defaults: 128 attributes and 128 events a span, 128 attributes
an event; what is over is dropped and counted in :attr:`InvocationSpan.dropped`.
Values of an unsupported type are dropped the same way.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.trace import Span, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import INVALID_SPAN_ID, INVALID_TRACE_ID, TraceState

MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
_SCALARS = (str, bool, int, float)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_getrandbits = random.getrandbits
_time_ns = time.time_ns

Event = tuple[str, int, dict[str, Any]]


def _valid(value: object) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return all(isinstance(v, _SCALARS) for v in value)
    return False


class InvocationSpan(Span):
    """One invocation's span (kind SERVER, always sampled); see the module doc."""

    __slots__ = ("_context", "attributes", "dropped", "end_time", "events", "name",
                 "parent_span_id", "span_id", "start_time", "status", "trace_id",
                 "trace_state")

    def __init__(self, name: str, parent: SpanContext | None) -> None:
        trace_id = INVALID_TRACE_ID
        while trace_id == INVALID_TRACE_ID:
            trace_id = _getrandbits(128) if parent is None else parent.trace_id
        span_id = INVALID_SPAN_ID
        while span_id == INVALID_SPAN_ID:
            span_id = _getrandbits(64)
        self.trace_id, self.span_id = trace_id, span_id
        self.parent_span_id = parent.span_id if parent is not None else 0
        self.trace_state: TraceState | None = parent.trace_state if parent is not None else None
        self._context: SpanContext | None = None  # built when asked for
        self.name = name
        self.attributes: dict[str, Any] = {}
        self.events: list[Event] = []
        self.status = _UNSET
        self.dropped = 0
        self.end_time = 0
        self.start_time = _time_ns()

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = SpanContext(self.trace_id, self.span_id, False, _SAMPLED,
                                                  self.trace_state)
        return context

    def is_recording(self) -> bool:
        return not self.end_time

    def set_attribute(self, key: str, value: Any) -> None:
        attributes = self.attributes
        if self.end_time or not isinstance(key, str) or not _valid(value) or (
                key not in attributes and len(attributes) >= MAX_ATTRIBUTES):
            self.dropped += 1
            return
        attributes[key] = value if isinstance(value, _SCALARS) else tuple(value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None,
                  timestamp: int | None = None) -> None:
        if self.end_time or len(self.events) >= MAX_EVENTS:
            self.dropped += 1
            return
        kept: dict[str, Any] = {}
        for key, value in (attributes or {}).items():
            if isinstance(key, str) and _valid(value) and len(kept) < MAX_ATTRIBUTES:
                kept[key] = value if isinstance(value, _SCALARS) else tuple(value)
            else:
                self.dropped += 1
        self.events.append((str(name), timestamp or _time_ns(), kept))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        self.dropped += 1  # links are set by the agent (the X-Ray trace), not by handlers

    def update_name(self, name: str) -> None:
        if not self.end_time:
            self.name = str(name)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_time:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if self.status.status_code is not StatusCode.OK:  # OK is final, as in the SDK
            self.status = status

    def record_exception(self, exception: BaseException,
                         attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        import traceback

        self.add_event("exception", {
            "exception.type": type(exception).__name__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": escaped, **(attributes or {})}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if not self.end_time:
            self.end_time = end_time or _time_ns()

    def __repr__(self) -> str:
        return f"InvocationSpan({self.name!r}, {self.trace_id:032x})"

