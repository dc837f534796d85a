"""JSON Schema (draft 2020-12) for every event, generated from the event classes.

``python -m schemas.jsonschema`` rewrites ``schemas/json/``; a test fails when the
committed files and the classes disagree, so producers in other languages can rely
on the files.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from schemas.events import EVENT_TYPES, SCHEMA_VERSION, AttributeValue, Event

SCHEMA_DIR = Path(__file__).parent / "json"
_ATTRIBUTE = {"type": ["string", "number", "boolean"]}


def schema_path(cls: type[Event]) -> Path:
    """Where the schema file of ``cls`` lives."""
    return SCHEMA_DIR / f"{cls.TYPE}.v{SCHEMA_VERSION}.schema.json"


def build_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema document of one event class."""
    schema = _object(cls)
    schema["properties"]["type"] = {"const": cls.TYPE, "description": "Event type discriminator."}
    schema["properties"]["schema_version"]["maximum"] = SCHEMA_VERSION
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://faas-governor.dev/schemas/{schema_path(cls).name}",
        "title": cls.__name__,
        "description": (cls.__doc__ or "").strip().splitlines()[0],
        **schema,
    }


def render(cls: type[Event]) -> bytes:
    """The schema file's exact bytes."""
    return orjson.dumps(build_schema(cls), option=orjson.OPT_INDENT_2) + b"\n"


def _object(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        prop = _type(hints[f.name])
        meta = f.metadata
        if "doc" in meta:
            prop["description"] = meta["doc"]
        for key, word in (("min_len", "minLength"), ("max_len", "maxLength"),
                          ("pattern", "pattern"), ("ge", "minimum"), ("le", "maximum")):
            if key in meta:
                prop[word] = meta[key]
        properties[f.name] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    if issubclass(cls, Event):
        required.append("type")
    return {"type": "object", "properties": properties, "required": sorted(required),
            "additionalProperties": False}


def _type(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is AttributeValue:
        return dict(_ATTRIBUTE)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        inner = _type(next(a for a in args if a is not type(None)))
        return {**inner, "type": [inner["type"], "null"]}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type(args[1])}
    if origin is list:
        return {"type": "array", "items": _type(args[0])}
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return {"type": "string", "enum": [m.value for m in tp]}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _object(tp)
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return {"type": simple[tp]}


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for cls in EVENT_TYPES.values():
        schema_path(cls).write_bytes(render(cls))
        print(schema_path(cls))


if __name__ == "__main__":
    main()
