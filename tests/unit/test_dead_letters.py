"""A dead letter stays small and valid whatever the record it reports held: it must
always fit the DLQ, or the worker could not move past the record."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import MAX_PAYLOAD_BYTES, MAX_REASON_CHARS, CostEvent, DeadLetter, Span, decode, encode
from streams.pipeline.decoding import Record, decode_records

LETTER_BUDGET = 512 * 1024
"""Half the producer's and the broker's 1 MB default message limit."""
WIDE = "\u200b"  # 3 bytes of UTF-8, and 6 characters in a repr: the widest to quote


def _span(**fields: object) -> bytes:
    return orjson.dumps({"type": "span", "function": "f", "trace_id": "a" * 32,
                         "span_id": "b" * 16, "name": "n", "start_time_unix_nano": 1,
                         "end_time_unix_nano": 2, **fields})


def _letter(value: bytes, cls: type[CostEvent] | type[Span] = Span) -> DeadLetter:
    decoded = decode_records([Record("governor.spans", 0, 7, b"f" * 300, value)], cls)
    assert decoded.good == [] and len(decoded.dead) == 1
    return decoded.dead[0]


def _fits(letter: DeadLetter) -> None:
    payload = encode(letter)
    assert len(payload) < LETTER_BUDGET
    assert decode(payload, DeadLetter) == letter  # the worker's own codec takes it back
    assert len(letter.reason) <= MAX_REASON_CHARS


@pytest.mark.parametrize("value", [
    _span(trace_id=WIDE * 150_000),  # a pattern field: once a 1.1 MB dead letter
    _span(kind=WIDE * 300_000),  # an enum
    _span(type="x" * 900_000),  # the type
    _span(**{WIDE * 300_000: 1}),  # an unknown field's name
    _span(attributes={WIDE * 200_000: [1, 2]}),  # an attribute's key
    b"\x01" * MAX_PAYLOAD_BYTES,  # not JSON: each byte escaped six-fold in the payload
    b'{"type": "span", "name": "' + b"\\u0001" * 170_000 + b'"}',
])
def test_a_dead_letter_fits_the_dlq_whatever_the_record_held(value: bytes) -> None:
    assert len(value) <= MAX_PAYLOAD_BYTES
    _fits(_letter(value))


@given(st.dictionaries(st.text(max_size=300),
                       st.text(max_size=3000) | st.integers(-2**63, 2**64 - 1)
                       | st.floats(allow_nan=False) | st.none(), max_size=8))
def test_any_rejected_record_has_a_letter_its_own_codec_takes_back(fields: dict[str, object]
                                                                    ) -> None:
    value = orjson.dumps({"type": "cost", "function": "f", **fields})
    decoded = decode_records([Record("governor.costs", 0, 1, b"f", value)], CostEvent)
    for letter in decoded.dead:
        _fits(letter)
