"""Typed reads from a parsed manifest: each names ``file:line`` and what it expected.

A value given as a CloudFormation intrinsic (``{"Ref": …}``, ``{"Fn::Sub": …}``)
is not known until deploy; it reads as ``None`` (unknown), never as an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.errors import ManifestError
from streams.gate.manifests.yamlfile import line_of
from streams.gate.spec import Source

_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T|MB|GB)?\s*$")
_FACTOR_MB = {None: 1 / 2**20, "Ki": 1 / 1024, "k": 1e3 / 2**20, "K": 1e3 / 2**20,
              "Mi": 1.0, "M": 1e6 / 2**20, "MB": 1.0, "Gi": 1024.0, "G": 1e9 / 2**20,
              "GB": 1024.0, "Ti": 2**20, "T": 1e12 / 2**20}


def intrinsic(value: Any) -> bool:
    """Whether ``value`` is a CloudFormation intrinsic function (known only at deploy)."""
    return isinstance(value, Mapping) and len(value) == 1 and (
        next(iter(value)) in ("Ref", "Condition") or str(next(iter(value))).startswith("Fn::"))


@dataclass(frozen=True, slots=True)
class Fields:
    """Reads the keys of one mapping of one file."""

    path: str
    node: Any
    line: int = 1

    def here(self, key: str | None = None) -> Source:
        """The source of the mapping, or of one of its keys."""
        return Source(self.path, line_of(self.node, key, self.line) if key else
                      getattr(self.node, "line", self.line))

    def _fail(self, key: str, expected: str, value: Any) -> ManifestError:
        return ManifestError(f"{self.here(key)}: expected {expected} for {key}, got {value!r}")

    def raw(self, key: str) -> Any:
        return self.node.get(key) if isinstance(self.node, Mapping) else None

    def child(self, key: str) -> Fields:
        """The mapping under ``key`` (an empty one when absent)."""
        value = self.raw(key)
        if value is None or intrinsic(value):
            return Fields(self.path, {}, self.here(key).line)
        if not isinstance(value, Mapping):
            raise self._fail(key, "a mapping", value)
        return Fields(self.path, value, self.here(key).line)

    def items(self, key: str) -> list[Any]:
        """The list under ``key`` (empty when absent)."""
        value = self.raw(key)
        if value is None or intrinsic(value):
            return []
        if not isinstance(value, list):
            raise self._fail(key, "a list", value)
        return value

    def text(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None or intrinsic(value):
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self._fail(key, "a string", value)
        return str(value)

    def number(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None or intrinsic(value):
            return None
        if isinstance(value, bool):
            raise self._fail(key, "a number", value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise self._fail(key, "a number", value) from None

    def integer(self, key: str) -> int | None:
        value = self.number(key)
        if value is not None and not value.is_integer():
            raise self._fail(key, "a whole number", self.raw(key))
        return None if value is None else int(value)

    def memory_mb(self, key: str) -> int | None:
        """A memory size: MB as a number, or a quantity such as ``512Mi``, ``1Gi``, ``256M``."""
        value = self.raw(key)
        if value is None or intrinsic(value):
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        found = _QUANTITY.match(str(value))
        if not found:
            raise self._fail(key, "a memory size such as 512, 512Mi or 1Gi", value)
        return round(float(found[1]) * _FACTOR_MB[found[2]])

    def names(self, key: str) -> tuple[str, ...]:
        """The keys of the mapping under ``key`` (environment variable names)."""
        return tuple(sorted(self.child(key).node))

    def tags(self, key: str) -> dict[str, str]:
        """Tags as a mapping, or as CloudFormation's list of ``{Key, Value}``."""
        value = self.raw(key)
        if value is None or intrinsic(value):
            return {}
        if isinstance(value, Mapping):
            return {str(k): _plain(v) for k, v in value.items()}
        if isinstance(value, list) and all(isinstance(t, Mapping) and "Key" in t
                                           for t in value):
            return {str(t["Key"]): _plain(t.get("Value")) for t in value}
        raise self._fail(key, "a mapping or a list of {Key, Value}", value)


def _plain(value: Any) -> str:
    if value is None or intrinsic(value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
