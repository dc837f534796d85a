"""Decoding at the edge of the pipeline: valid events in, dead letters out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from schemas import MAX_PAYLOAD_BYTES, DeadLetter, Event, SchemaError, decode

E = TypeVar("E", bound=Event)
_KEEP = 64 * 1024


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed Kafka record, as the pipeline needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class RecordLike(Protocol):
    """What decoding reads of a record: a :class:`Record`, or a consumer's own record
    type (aiokafka's ``ConsumerRecord``) passed as it is, without a copy."""

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


def decode_records(records: Iterable[RecordLike],
                   cls: type[E]) -> tuple[list[E], list[DeadLetter]]:
    """Split ``records`` into valid ``cls`` events and dead letters with the reason."""
    good: list[E] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            if record.value is None:
                raise SchemaError(cls.TYPE, "", "record has no value (tombstone)")
            good.append(decode(record.value, cls))
        except SchemaError as exc:
            dead.append(dead_letter(record, f"{exc}; fix the producer or the payload"))
    return good, dead


def dead_letter(record: RecordLike, reason: str) -> DeadLetter:
    value = record.value or b""
    key = (record.key or b"").decode("utf-8", "replace")[:256]
    return DeadLetter(
        function=key or "unknown", source_topic=record.topic, partition=record.partition,
        offset=record.offset, key=key, reason=reason,
        payload=value[: min(_KEEP, MAX_PAYLOAD_BYTES)].decode("utf-8", "replace"),
        payload_size=len(value))
