"""Governor's event contracts, shared by the agent and the stream workers.

Every event is a frozen dataclass with a ``type`` discriminator, a
``schema_version``, a unique ``event_id``, the ``function`` it concerns and a UTC
timestamp (``time_unix_nano``). :mod:`schemas.codec` is the one place where events
become bytes and bytes become validated events.

>>> from schemas import CostEvent, encode, decode
>>> event = CostEvent(function="checkout", invocation_id="r-1", cost_usd=0.0000021)
>>> decode(encode(event), CostEvent) == event
True
"""

from schemas.codec import MAX_PAYLOAD_BYTES, decode, decode_event, encode
from schemas.errors import SchemaError, clip
from schemas.events import (
    EVENT_TYPES,
    MAX_REASON_CHARS,
    SCHEMA_VERSION,
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
    new_event_id,
    now_ns,
)
from schemas.keys import partition_for
from schemas.signing import (
    SignatureError,
    sign_record,
    sign_verdict,
    verify_record,
    verify_verdict,
)

__all__ = [
    "EVENT_TYPES",
    "MAX_PAYLOAD_BYTES",
    "MAX_REASON_CHARS",
    "SCHEMA_VERSION",
    "Action",
    "Anomaly",
    "ControlKind",
    "ControlUpdate",
    "CostEvent",
    "DeadLetter",
    "Decision",
    "Driver",
    "Event",
    "Feedback",
    "Hold",
    "Incident",
    "IncidentStatus",
    "Judgement",
    "Outcome",
    "PolicyDecision",
    "SchemaError",
    "Severity",
    "SignatureError",
    "Span",
    "SpanEvent",
    "SpanKind",
    "SpanLink",
    "StatusCode",
    "ThresholdChange",
    "Verdict",
    "clip",
    "decode",
    "decode_event",
    "encode",
    "new_event_id",
    "now_ns",
    "partition_for",
    "sign_record",
    "sign_verdict",
    "verify_record",
    "verify_verdict",
]
