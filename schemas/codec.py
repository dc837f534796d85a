"""The one codec: events to JSON bytes (orjson) and JSON bytes to validated events.

Validation is strict: unknown fields, missing required fields, wrong types, values
out of range, unknown event types and unsupported schema versions all raise one
:class:`~schemas.errors.SchemaError` naming the field and the problem.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from enum import StrEnum
from functools import cache
from typing import Any, TypeVar

import orjson

from schemas._fast import fast_decoder
from schemas.errors import SchemaError
from schemas.events import EVENT_TYPES, SCHEMA_VERSION, AttributeValue, Event

MAX_PAYLOAD_BYTES = 1 << 20
"""Largest encoded event accepted (1 MiB); bigger input is rejected before parsing."""

E = TypeVar("E", bound=Event)
Check = Callable[[Any, str], Any]
"""Validates one value at a path and returns it converted (enums, nested classes)."""

_ATTRIBUTE_TYPES = (str, int, float, bool)


class _Invalid(Exception):
    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem


def encode(event: Event) -> bytes:
    """Serialize an event to compact JSON bytes."""
    return orjson.dumps(event)


def decode(data: bytes | bytearray | memoryview | str, cls: type[E]) -> E:
    """Parse and validate ``data`` as an event of class ``cls``.

    Valid input takes the fast path (:mod:`schemas._fast`, about 6× faster); whatever
    it refuses is decided here, where an error names the field and the problem.
    """
    if isinstance(data, bytes) and len(data) <= MAX_PAYLOAD_BYTES:
        try:
            event = fast_decoder(cls)(data)  # type: ignore[arg-type]
        except ValueError:  # msgspec's errors: the reference path decides
            pass
        else:
            if (event.type == cls.TYPE and event.schema_version <= SCHEMA_VERSION
                    and event.invalid() is None):
                return event
    return reference_decode(data, cls)


def reference_decode(data: bytes | bytearray | memoryview | str, cls: type[E]) -> E:
    """:func:`decode` in Python alone: the reference the fast path is held to, and the
    path that names the field and the problem of invalid input."""
    raw = _load(data, cls.TYPE)
    found = raw.get("type")
    if found != cls.TYPE:
        raise SchemaError(cls.TYPE, "type", f"expected {cls.TYPE!r}, got {found!r}")
    return _build(cls, raw)


def decode_event(data: bytes | bytearray | memoryview | str) -> Event:
    """Parse and validate ``data`` as whichever event type its ``type`` field names."""
    raw = _load(data, "event")
    kind = raw.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise SchemaError("event", "type", f"unknown event type {kind!r}; known: {known}")
    return _build(cls, raw)


def _load(data: bytes | bytearray | memoryview | str, event_type: str) -> dict[str, Any]:
    if isinstance(data, str):
        try:
            data = data.encode()
        except UnicodeEncodeError as exc:
            raise SchemaError(event_type, "", f"not valid UTF-8: {exc.reason}") from None
    size = len(data)
    if size > MAX_PAYLOAD_BYTES:
        raise SchemaError(
            event_type, "", f"payload is {size} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(event_type, "", f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SchemaError(event_type, "", f"expected a JSON object, got {type(raw).__name__}")
    return raw


def _build(cls: type[E], raw: dict[str, Any]) -> E:
    version = raw.get("schema_version")
    newer = isinstance(version, int | float) and not isinstance(version, bool) and (
        version > SCHEMA_VERSION)  # 2.0 is 2 in JSON
    if newer:
        raise SchemaError(
            cls.TYPE,
            "schema_version",
            f"version {version} is newer than this build reads ({SCHEMA_VERSION}); "
            "upgrade faas-governor",
        )
    try:
        event = cls(**_check_object(cls, raw, ""))
    except _Invalid as exc:
        raise SchemaError(cls.TYPE, exc.path, exc.problem) from None
    invalid = event.invalid()
    if invalid is not None:
        raise SchemaError(cls.TYPE, *invalid)
    return event


def _check_object(cls: type, raw: dict[str, Any], prefix: str) -> dict[str, Any]:
    spec = _spec(cls)
    unknown = raw.keys() - spec.keys()
    if unknown:
        name = sorted(unknown)[0]
        raise _Invalid(prefix + name, f"unknown field; expected one of {', '.join(sorted(spec))}")
    values: dict[str, Any] = {}
    for name, (check, required) in spec.items():
        if name in raw:
            values[name] = check(raw[name], prefix + name)
        elif required:
            raise _Invalid(prefix + name, "required field is missing")
    return values


@cache
def _spec(cls: type) -> dict[str, tuple[Check, bool]]:
    hints = typing.get_type_hints(cls)
    spec: dict[str, tuple[Check, bool]] = {}
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        spec[f.name] = (_checker(hints[f.name], dict(f.metadata)), required)
    return spec


def _checker(tp: Any, meta: dict[str, Any]) -> Check:
    """Build the check for one declared type plus its metadata constraints."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        inner = _checker(next(a for a in args if a is not type(None)), meta)
        return lambda v, p: None if v is None else inner(v, p)
    if tp is AttributeValue or (origin in (types.UnionType, typing.Union) and set(args) == set(
        _ATTRIBUTE_TYPES
    )):
        return _attribute
    if origin is dict:
        value_check = _checker(args[1], {})
        return lambda v, p: _check_dict(v, p, value_check)
    if origin is list:
        item_check = _checker(args[0], {})
        return lambda v, p: _check_list(v, p, item_check)
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return _enum_checker(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        cls: type = tp
        return lambda v, p: cls(**_check_object(cls, _require_dict(v, p), p + "."))
    if tp is str:
        return _str_checker(meta)
    if tp is bool:
        return _bool
    if tp in (int, float):
        return _number_checker(tp, meta)
    raise TypeError(f"no codec check for type {tp!r}")  # a contract bug, found by tests


def _require_dict(v: Any, p: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Invalid(p, f"expected an object, got {_kind(v)}")
    return v


def _check_dict(v: Any, p: str, value_check: Check) -> dict[str, Any]:
    return {k: value_check(item, f"{p}[{k!r}]") for k, item in _require_dict(v, p).items()}


def _check_list(v: Any, p: str, item_check: Check) -> list[Any]:
    if not isinstance(v, list):
        raise _Invalid(p, f"expected an array, got {_kind(v)}")
    return [item_check(item, f"{p}[{i}]") for i, item in enumerate(v)]


def _attribute(v: Any, p: str) -> Any:
    if not isinstance(v, _ATTRIBUTE_TYPES):
        raise _Invalid(p, f"expected a string, number or boolean, got {_kind(v)}")
    return v


def _bool(v: Any, p: str) -> bool:
    if not isinstance(v, bool):
        raise _Invalid(p, f"expected a boolean, got {_kind(v)}")
    return v


def _enum_checker(enum: type[StrEnum]) -> Check:
    allowed = {m.value: m for m in enum}

    def check(v: Any, p: str) -> StrEnum:
        member = allowed.get(v) if isinstance(v, str) else None
        if member is None:
            raise _Invalid(p, f"expected one of {', '.join(allowed)}, got {v!r}")
        return member

    return check


def _str_checker(meta: dict[str, Any]) -> Check:
    min_len = meta.get("min_len", 0)
    max_len = meta.get("max_len")
    pattern = re.compile(meta["pattern"]) if "pattern" in meta else None

    def check(v: Any, p: str) -> str:
        if not isinstance(v, str):
            raise _Invalid(p, f"expected a string, got {_kind(v)}")
        if len(v) < min_len:
            raise _Invalid(p, "must not be empty" if min_len == 1 else f"shorter than {min_len}")
        if max_len is not None and len(v) > max_len:
            raise _Invalid(p, f"{len(v)} characters, over the limit of {max_len}")
        if pattern is not None and not pattern.fullmatch(v):
            raise _Invalid(p, f"{v!r} does not match {pattern.pattern}")
        return v

    return check


def _number_checker(tp: type, meta: dict[str, Any]) -> Check:
    ge, le = meta.get("ge"), meta.get("le")
    integral = tp is int
    expected = "an integer" if integral else "a number"

    def check(v: Any, p: str) -> Any:
        if integral and isinstance(v, float) and v.is_integer():
            v = int(v)  # JSON Schema's "integer" admits 128.0
        if isinstance(v, bool) or not isinstance(v, int if integral else (int, float)):
            raise _Invalid(p, f"expected {expected}, got {_kind(v)}")
        if not integral:
            v = float(v)
            if not math.isfinite(v):
                raise _Invalid(p, "must be finite")
        elif not -_INT64 <= v < _INT64:
            raise _Invalid(p, f"{v} is outside the 64-bit integer range")
        if ge is not None and v < ge:
            raise _Invalid(p, f"must be >= {ge}, got {v}")
        if le is not None and v > le:
            raise _Invalid(p, f"must be <= {le:g}, got {v:g}")
        return v

    return check


_INT64 = 2**63


def _kind(v: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
             list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(v), type(v).__name__)
