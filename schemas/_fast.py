"""The codec's fast path: an event decoded and validated in C (msgspec) in one pass.

For each event class, :func:`fast_decoder` derives from its fields and their metadata a
strict msgspec ``Struct`` (unknown fields forbidden; required fields; types; the
``ge``/``le``/``min_len``/``max_len``/``pattern`` constraints, patterns anchored as
``fullmatch``; integers within 64 bits; numbers finite; an event's ``type`` present and
its own) and decodes with it, then
builds the event class itself. It accepts only what the reference path in
:mod:`schemas.codec` accepts, and builds the same event; anything it refuses goes to
the reference path, which accepts it or raises the error naming the field. A
property test holds the two together. msgspec is imported on the first decode, so
``import agents`` does not pay for it.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Callable
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from schemas.events import AttributeValue

if TYPE_CHECKING:
    import msgspec

_INT64: tuple[float, float] = (-(2**63), 2**63 - 1)
_FINITE = (-sys.float_info.max, sys.float_info.max)


@cache
def fast_decoder(cls: type) -> Callable[[bytes], Any]:
    """``decode(data)``: ``data`` as a ``cls``; raises ``msgspec`` errors (a
    ``ValueError``) on anything the fast path does not take (the caller falls back to
    the reference path)."""
    import msgspec

    check = msgspec.json.Decoder(_struct(cls)).decode
    build: Callable[[bytes], Any] = msgspec.json.Decoder(cls).decode

    def decode(data: bytes) -> Any:
        check(data)
        return build(data)

    return decode


@cache
def _struct(cls: type) -> type[msgspec.Struct]:
    import msgspec

    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    kind = getattr(cls, "TYPE", "")
    for f in dataclasses.fields(cls):
        if f.name == "type" and kind:  # an event: its discriminator must be there, and its own
            fields.append((f.name, Literal[kind]))
            continue
        tp = _type(hints[f.name], dict(f.metadata))
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.append((f.name, tp) if required else (f.name, tp, None))
    return msgspec.defstruct(f"Strict{cls.__name__}", fields, forbid_unknown_fields=True,
                             kw_only=True)


def _type(tp: Any, meta: dict[str, Any]) -> Any:
    import msgspec

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        inner = _type(next(a for a in args if a is not type(None)), meta)
        return inner | None
    if tp is AttributeValue:
        return (str | bool | Annotated[int, _within(_INT64, {})]
                | Annotated[float, _within(_FINITE, {})])
    if origin is dict:
        return dict[str, _type(args[1], {})]  # type: ignore[misc]
    if origin is list:
        return list[_type(args[0], {})]  # type: ignore[misc]
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return tp
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _struct(tp)
    if tp is str:
        pattern = rf"\A(?:{meta['pattern']})\Z" if "pattern" in meta else None
        return Annotated[str, msgspec.Meta(min_length=meta.get("min_len"),
                                           max_length=meta.get("max_len"), pattern=pattern)]
    if tp is bool:
        return bool
    if tp is int:
        return Annotated[int, _within(_INT64, meta)]
    if tp is float:
        return Annotated[float, _within(_FINITE, meta)]
    raise TypeError(f"no fast codec for type {tp!r}")  # a contract bug, found by tests


def _within(limits: tuple[float, float], meta: dict[str, Any]) -> msgspec.Meta:
    """``limits`` narrowed by the field's own ``ge``/``le``."""
    import msgspec

    ge, le = meta.get("ge"), meta.get("le")
    return msgspec.Meta(ge=limits[0] if ge is None else max(ge, limits[0]),
                        le=limits[1] if le is None else min(le, limits[1]))
