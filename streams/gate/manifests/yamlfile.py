"""YAML and JSON documents with the line of every mapping, CloudFormation tags included.

A PyYAML ``SafeLoader`` with one multi-constructor for the ``!`` tags
CloudFormation defines (``!Ref X`` → ``{"Ref": "X"}``, ``!GetAtt A.B`` →
``{"Fn::GetAtt": ["A", "B"]}``, ``!Sub``/``!If``/… → ``{"Fn::Sub": …}``), so
templates read as their JSON form does. Mappings are :class:`Node` dicts that know
the 1-based line they start on and the line of each key.

>>> doc = load_yaml("Resources:\\n  Fn:\\n    Role: !GetAtt Role.Arn\\n", "t.yaml")[0]
>>> doc["Resources"]["Fn"]["Role"], doc["Resources"].line_of("Fn")
({'Fn::GetAtt': ['Role', 'Arn']}, 2)
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from streams.errors import ManifestError


class Node(dict[str, Any]):
    """A mapping that remembers where it, and each of its keys, was written."""

    line: int = 1
    lines: dict[str, int]

    def line_of(self, key: str) -> int:
        """The line ``key`` is on (the mapping's own line when not known)."""
        return getattr(self, "lines", {}).get(key, self.line)


def _node(pairs: list[tuple[Any, Any]], line: int, lines: dict[str, int]) -> Node:
    node = Node((str(k), v) for k, v in pairs)
    node.line = line
    node.lines = lines
    return node


class _Loader(yaml.SafeLoader):
    """SafeLoader with line-aware mappings and CloudFormation's short-form tags."""

    def construct_located_mapping(self, node: yaml.MappingNode) -> Node:
        self.flatten_mapping(node)
        pairs, lines = [], {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            pairs.append((key, self.construct_object(value_node, deep=True)))
            lines[str(key)] = key_node.start_mark.line + 1
        return _node(pairs, node.start_mark.line + 1, lines)


def _intrinsic(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    """``!Name value`` as ``{"Fn::Name": value}`` (``Ref`` and ``Condition`` unprefixed)."""
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_located_mapping(node)
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    return {key: value}


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                        _Loader.construct_located_mapping)
_Loader.add_multi_constructor("!", _intrinsic)


def load_yaml(text: str, path: str) -> list[Any]:
    """Every document of a YAML stream; :class:`ManifestError` names ``path:line``."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ManifestError(f"{path}:{line}: expected valid YAML: {exc.problem or exc}"
                            ) from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}:1: expected valid YAML: {exc}") from None


def load_json(text: str, path: str) -> Any:
    """One JSON document; :class:`ManifestError` names ``path:line``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}:{exc.lineno}: expected valid JSON: {exc.msg} "
                            f"(column {exc.colno})") from None


def line_of(node: Any, key: str, default: int = 1) -> int:
    """The line of ``key`` in ``node`` when it is a :class:`Node`, else ``default``."""
    return node.line_of(key) if isinstance(node, Node) else default
