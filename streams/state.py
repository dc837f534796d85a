"""Plain-data state: what a worker's stateful objects become in a snapshot.

Every stateful class of the decision path has ``to_state()``, which returns JSON data
only (objects with string keys, lists, strings, ints, finite floats, booleans,
``None``), and a ``from_state`` that rebuilds it with explicit, typed code reading
through a :class:`Reader`. Each field is read with its type and its bounds, so state
of the wrong shape — a missing field, a string where a number belongs, a NaN, a list
longer than its bound, an unknown type tag — raises :class:`StateError` naming the
field. Nothing a snapshot says is imported, called or evaluated: a type tag is looked
up in a fixed table of the classes that can be in one.

>>> r = Reader({"window": 60, "history": [1.0, 2.5], "name": "cost"})
>>> r.integer("window", 1, 1000), r.numbers("history", 60), r.text("name")
(60, [1.0, 2.5], 'cost')
>>> r.numbers("history", 1)
Traceback (most recent call last):
...
streams.state.StateError: state.history: 2 items, over the bound of 1
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from streams.errors import SnapshotError

MAX_ITEMS = 10_000
"""No list in a snapshot is longer (each reader asks for its own, smaller, bound)."""
MAX_CHARS = 16_384
"""No string in a snapshot is longer."""
MAX_INT = 2**62
"""Largest integer read (and :data:`MIN_INT` the smallest): a clock in ns or a count
moved on from there still fits the 64 bits JSON numbers are written with."""
MIN_INT = -MAX_INT
LIMIT = 1e18
"""Largest magnitude of a number read unless a reader asks for another bound: no figure
of a function comes near it, and sums and squares of a few such numbers stay finite."""

E = TypeVar("E", bound=Enum)


class StateError(SnapshotError):
    """State of the wrong shape: the message names the field and what is wrong."""

    reason = "shape"


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def number(value: object, where: str, low: float = -LIMIT, high: float = LIMIT) -> float:
    """``value`` as a finite float within [``low``, ``high``]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateError(f"{where}: a number was expected, not {_kind(value)}")
    result = float(value)
    if not math.isfinite(result) or not low <= result <= high:
        raise StateError(f"{where}: {result!r} is out of range [{low:g}, {high:g}]")
    return result


def integer(value: object, where: str, low: int = 0, high: int = MAX_INT) -> int:
    """``value`` as an int within [``low``, ``high``]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateError(f"{where}: an integer was expected, not {_kind(value)}")
    if not low <= value <= high:
        raise StateError(f"{where}: {value} is out of range [{low}, {high}]")
    return value


def text(value: object, where: str, max_chars: int = MAX_CHARS) -> str:
    """``value`` as a string of at most ``max_chars``."""
    if not isinstance(value, str):
        raise StateError(f"{where}: a string was expected, not {_kind(value)}")
    if len(value) > max_chars:
        raise StateError(f"{where}: {len(value)} characters, over the bound of {max_chars}")
    return value


def items(value: object, where: str, max_items: int) -> list[Any]:
    """``value`` as a list of at most ``max_items`` (and :data:`MAX_ITEMS`)."""
    if not isinstance(value, list):
        raise StateError(f"{where}: a list was expected, not {_kind(value)}")
    bound = min(max_items, MAX_ITEMS)
    if len(value) > bound:
        raise StateError(f"{where}: {len(value)} items, over the bound of {bound}")
    return value


def numbers(value: object, where: str, max_items: int, low: float = -LIMIT,
            high: float = LIMIT) -> list[float]:
    """``value`` as a list of at most ``max_items`` finite floats within [``low``, ``high``]."""
    return [number(v, f"{where}[{i}]", low, high)
            for i, v in enumerate(items(value, where, max_items))]


def rows(value: object, where: str, max_items: int, width: int) -> list[list[Any]]:
    """``value`` as a list of lists of exactly ``width`` items each (items unchecked)."""
    found = items(value, where, max_items)
    for i, row in enumerate(found):
        if len(items(row, f"{where}[{i}]", width)) != width:
            raise StateError(f"{where}[{i}]: {width} items were expected, not {len(row)}")
    return found


def choice(value: object, where: str, enum: type[E]) -> E:
    """``value`` as a member of ``enum`` (by value)."""
    for member in enum:
        if member.value == value and type(member.value) is type(value):
            return member
    raise StateError(f"{where}: {value!r:.80} is not one of "
                     f"{', '.join(repr(m.value) for m in enum)}")


class Reader:
    """Typed access to one JSON object of state, each read checked (see the module
    docstring); ``where`` is its path, for the messages."""

    __slots__ = ("_data", "where")

    def __init__(self, data: object, where: str = "state") -> None:
        if not isinstance(data, Mapping):
            raise StateError(f"{where}: an object was expected, not {_kind(data)}")
        self._data = data
        self.where = where

    def _get(self, name: str) -> object:
        try:
            return self._data[name]
        except KeyError:
            raise StateError(f"{self.where}.{name}: missing") from None

    def _at(self, name: str) -> str:
        return f"{self.where}.{name}"

    def has(self, name: str) -> bool:
        """Whether ``name`` is present and not ``null`` (an optional field is set)."""
        return self._data.get(name) is not None

    def number(self, name: str, low: float = -LIMIT, high: float = LIMIT) -> float:
        return number(self._get(name), self._at(name), low, high)

    def integer(self, name: str, low: int = 0, high: int = MAX_INT) -> int:
        return integer(self._get(name), self._at(name), low, high)

    def text(self, name: str, max_chars: int = MAX_CHARS) -> str:
        return text(self._get(name), self._at(name), max_chars)

    def flag(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise StateError(f"{self._at(name)}: true or false was expected, not {_kind(value)}")
        return value

    def choice(self, name: str, enum: type[E]) -> E:
        return choice(self._get(name), self._at(name), enum)

    def items(self, name: str, max_items: int) -> list[Any]:
        return items(self._get(name), self._at(name), max_items)

    def numbers(self, name: str, max_items: int, low: float = -LIMIT,
                high: float = LIMIT) -> list[float]:
        return numbers(self._get(name), self._at(name), max_items, low, high)

    def texts(self, name: str, max_items: int, max_chars: int = MAX_CHARS) -> list[str]:
        where = self._at(name)
        return [text(v, f"{where}[{i}]", max_chars)
                for i, v in enumerate(items(self._get(name), where, max_items))]

    def rows(self, name: str, max_items: int, width: int) -> list[list[Any]]:
        """A list of lists of exactly ``width`` items each (their items unchecked)."""
        return rows(self._get(name), self._at(name), max_items, width)

    def reader(self, name: str) -> Reader:
        return Reader(self._get(name), self._at(name))

    def readers(self, name: str, max_items: int) -> list[Reader]:
        where = self._at(name)
        return [Reader(v, f"{where}[{i}]")
                for i, v in enumerate(items(self._get(name), where, max_items))]

    def raw(self, name: str) -> object:
        """The value as it is, for a nested ``from_state`` that checks it itself."""
        return self._get(name)


def finite_or_none(value: float) -> float | None:
    """A bound that starts at ±inf (nothing seen yet) as JSON can hold it."""
    return value if math.isfinite(value) else None
