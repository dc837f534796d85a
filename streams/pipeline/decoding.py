"""Decoding at the edge of the pipeline: valid events in, dead letters out."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from schemas import (
    MAX_PAYLOAD_BYTES,
    MAX_REASON_CHARS,
    CostEvent,
    DeadLetter,
    Event,
    SchemaError,
    Span,
    clip,
    decode,
    encode,
)
from streams.pipeline.authn import Headers, TelemetryAuth

E = TypeVar("E", bound=Event)
S = TypeVar("S")
_KEEP = 64 * 1024


class DeadReason(StrEnum):
    """Why a record went to the dead-letter topic, as a bounded category (the
    ``reason`` label of ``governor_dlq_total``; the letter itself says it in words)."""

    MALFORMED = "malformed"  # not a valid event of its type: JSON, schema, size, version
    TOO_OLD = "too_old"  # dated before GOVERNOR_MAX_EVENT_AGE_SECONDS
    TOO_NEW = "too_new"  # dated after GOVERNOR_MAX_EVENT_LEAD_SECONDS
    SINK_REFUSED = "sink_refused"  # ClickHouse answers but refused the event
    UNDECIDABLE = "undecidable"  # stored, but the decision step failed on it
    UNSIGNED = "unsigned"  # a verdict not signed with the workers' key: not followed


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """How far from the worker's clock an event's own time may be before it is refused
    (a wrong clock, a corrupt or hostile producer): it would open windows far from now."""

    max_age_ns: int
    max_lead_ns: int

    def problem(self, time_ns: int, now_ns: int, name: str = "time_unix_nano"
                ) -> tuple[DeadReason, str] | None:
        """Why ``time_ns`` (the field ``name``) is refused at ``now_ns`` (category,
        words), or ``None``."""
        if time_ns > now_ns + self.max_lead_ns:
            return DeadReason.TOO_NEW, (
                f"{name} {time_ns} is {(time_ns - now_ns) / 1e9:,.0f} s ahead of "
                f"the worker's clock (limit GOVERNOR_MAX_EVENT_LEAD_SECONDS="
                f"{self.max_lead_ns / 1e9:g}); fix the producer's clock")
        if time_ns < now_ns - self.max_age_ns:
            return DeadReason.TOO_OLD, (
                f"{name} {time_ns} is {(now_ns - time_ns) / 1e9:,.0f} s old (limit "
                f"GOVERNOR_MAX_EVENT_AGE_SECONDS={self.max_age_ns / 1e9:g}); fix the "
                f"producer's clock, or load old history into ClickHouse directly")
        return None


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed Kafka record, as the pipeline needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = None


class RecordLike(Protocol):
    """What decoding reads of a record: a :class:`Record`, or a consumer's own record
    type (aiokafka's ``ConsumerRecord``, in Faust's agents) passed as it is."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...


@dataclass(frozen=True, slots=True)
class Decoded(Generic[E]):
    """A batch of records decoded: ``good`` events decide and are stored; ``flagged``
    ones failed authentication (stored flagged, decide nothing); ``dead`` letters."""

    good: list[E]
    dead: list[DeadLetter]
    flagged: list[E] = field(default_factory=list)
    reasons: Counter[DeadReason] = field(default_factory=Counter)
    """The dead letters by reason."""


def decode_records(records: Iterable[RecordLike], cls: type[E],
                   bounds: TimeBounds | None = None, now_ns: int = 0,
                   auth: TelemetryAuth | None = None) -> Decoded[E]:
    """Split ``records`` into valid ``cls`` events and dead letters with the reason;
    with ``bounds``, an event dated too far from ``now_ns`` is a dead letter too; with
    ``auth``, a valid event that is not authenticated as its function is flagged."""
    return _decode(((r.value, r.headers, r) for r in records), cls, bounds, now_ns, auth,
                   dead_letter)


def decode_messages(messages: Iterable[Any], cls: type[E],
                    bounds: TimeBounds | None = None, now_ns: int = 0,
                    auth: TelemetryAuth | None = None) -> Decoded[E]:
    """:func:`decode_records` for a librdkafka consumer's messages (``Message`` s
    without an error), read as they are."""
    return _decode(((m.value(), m.headers(), m) for m in messages), cls, bounds, now_ns,
                   auth, message_dead_letter)


def _decode(records: Iterable[tuple[bytes | None, Headers, S]], cls: type[E],
            bounds: TimeBounds | None, now_ns: int, auth: TelemetryAuth | None,
            letter: Callable[[S, str], DeadLetter]) -> Decoded[E]:
    out: Decoded[E] = Decoded([], [])
    spans = cls is Span  # their start and end are stored (and partitioned on) too
    for value, headers, record in records:
        try:
            if value is None:
                raise SchemaError(cls.TYPE, "", "record has no value (tombstone)")
            event = decode(value, cls)
        except SchemaError as exc:
            out.dead.append(letter(record, f"{exc}; fix the producer or the payload"))
            out.reasons[DeadReason.MALFORMED] += 1
            continue
        problem = bounds.problem(event.time_unix_nano, now_ns) if bounds else None
        if spans and bounds and problem is None:
            span: Any = event
            problem = (bounds.problem(span.start_time_unix_nano, now_ns, "start_time_unix_nano")
                       or bounds.problem(span.end_time_unix_nano, now_ns, "end_time_unix_nano"))
        if problem is not None:
            reason, words = problem
            out.dead.append(letter(record, words))
            out.reasons[reason] += 1
        elif auth is None:
            out.good.append(event)
        else:
            team = _claimed_team(event)
            if team and auth.vouched(event.function, value, headers, team):
                out.good.append(event)
            elif auth.authentic(event.function, value, headers):
                if team:  # its key vouches for the function, not for the team it claims
                    auth.unvouched_team(event.function, team)
                    event = _without_team(event)
                out.good.append(event)
            else:
                out.flagged.append(event)
    return out


def _claimed_team(event: Event) -> str:
    """The team an event says its function belongs to ("" for none)."""
    if isinstance(event, CostEvent):
        return event.team
    if isinstance(event, Span):
        team = event.resource.get("governor.team")
        return "" if team is None else str(team)
    return ""


def _without_team(event: E) -> E:
    """``event`` with its team claim removed."""
    if isinstance(event, CostEvent):
        return dataclasses.replace(event, team="")
    if isinstance(event, Span):
        resource = {k: v for k, v in event.resource.items() if k != "governor.team"}
        return dataclasses.replace(event, resource=resource)
    return event


def event_dead_letter(event: Event, reason: str) -> DeadLetter:
    """A dead letter for a valid event the pipeline could still not take (the sink or
    the decision step refused it); its source is named by type, not by offset."""
    payload = encode(event)
    return DeadLetter(function=event.function, source_topic=f"<{event.type} stream>",
                      key=event.function, reason=clip(reason, MAX_REASON_CHARS),
                      payload_size=len(payload),
                      payload=payload[: min(_KEEP, MAX_PAYLOAD_BYTES)].decode("utf-8", "replace"))


def message_dead_letter(message: Any, reason: str) -> DeadLetter:
    """:func:`dead_letter` for a librdkafka consumer's message."""
    return dead_letter(Record(message.topic(), message.partition(), message.offset(),
                              message.key(), message.value()), reason)


def dead_letter(record: RecordLike, reason: str) -> DeadLetter:
    value = record.value or b""
    key = (record.key or b"").decode("utf-8", "replace")[:256]
    return DeadLetter(
        function=key or "unknown", source_topic=record.topic, partition=record.partition,
        offset=record.offset, key=key, reason=clip(reason, MAX_REASON_CHARS),
        payload=value[: min(_KEEP, MAX_PAYLOAD_BYTES)].decode("utf-8", "replace"),
        payload_size=len(value))
