"""Query results as plain values: the same whichever way a query ran.

A query run on the engine here returns Python objects (datetimes, decimals, UUIDs,
maps with any key); one answered by a worker's ``/query`` endpoint arrives as JSON.
:func:`plain` turns the first into what the second decodes to, so ``governor query``
prints one thing for both: times in ISO-8601 UTC with ``Z``, ``None`` for NULL,
non-finite floats and numbers JSON cannot hold exactly as text.

>>> from datetime import datetime
>>> plain(datetime(2026, 3, 1, 12, 30, 5, 250000))
'2026-03-01T12:30:05.250000Z'
>>> plain({1: [float("nan"), None]})
{'1': ['nan', None]}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_INT_RANGE = range(-(2**63), 2**64)


def plain(value: Any) -> Any:
    """``value`` as JSON would carry it, with times as ISO-8601 UTC text ending in ``Z``
    (a datetime without a zone is taken as UTC: the engine gives UTC columns so)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if value in _INT_RANGE else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _key(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return str(value)
    return str(value)  # UUID, IP addresses, enums…


def _key(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def plain_rows(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Every cell of ``rows`` through :func:`plain`."""
    return [[plain(v) for v in row] for row in rows]
