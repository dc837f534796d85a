"""Personal data scrubbed before anything leaves the function.

A :class:`Redactor` rewrites span attribute values, span event attributes (an
exception's message and stack trace) and the status message on the export thread,
never on the call path:

* a value whose **key** matches a sensitive key pattern (``password``, ``token``,
  ``authorization``, ``cookie``, ``email``, ``enduser.id`` … and any added with
  ``GOVERNOR_REDACT_KEYS``) is replaced whole by ``[REDACTED]``;
* inside any other string, each match of a **value** pattern is replaced by
  ``[REDACTED:<kind>]``: ``email`` addresses, ``card`` numbers (13–19 digits passing the
  Luhn check), ``token`` (JWTs, bearer tokens, AWS access key ids) and ``ip``
  addresses (v4 and v6), plus any added with ``GOVERNOR_REDACT_PATTERNS``.

Governor's own attributes (``governor.*``, ``faas.*``) are left as they are: the
workers govern with them (the egress policy reads the hosts a function contacted).

>>> r = Redactor()
>>> r.attributes({"user.email": "ann@example.com", "note": "card 4111 1111 1111 1111"})
{'user.email': '[REDACTED]', 'note': 'card [REDACTED:card]'}
>>> r.text("from 10.1.2.3 with Bearer abc.def-ghi")
'from [REDACTED:ip] with [REDACTED:token]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

KEYS = (r"pass(word|wd)?|pwd|secret|token|api[-_.]?key|authori[sz]ation|cookie|session"
        r"|credential|private[-_.]?key|ssn|social[-_.]?security|e-?mail|phone|card"
        r"|enduser\.id|user\.(name|id|full_name)|client\.address")
"""Attribute keys (any part, case-insensitive) whose values are redacted whole."""

VALUES: dict[str, str] = {
    "email": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    "card": r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])",
    "token": (r"\beyJ[\w-]+\.[\w-]+\.[\w-]+|(?i:\bbearer\s+)[\w.~+/-]+=*"
              r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "ip": (r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"
           r"(?![\d.])|(?i:\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b"
           r"|\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:?){1,6}\b)"),
}
"""Value patterns by kind; matches inside strings are replaced."""

OWN = ("governor.", "faas.")
"""Attribute prefixes Governor governs with: never redacted."""


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class Redactor:
    """Scrubs attribute maps and strings (see the module docstring)."""

    def __init__(self, kinds: Iterable[str] = tuple(VALUES), extra_keys: str = "",
                 extra_patterns: Iterable[str] = ()) -> None:
        unknown = set(kinds) - set(VALUES)
        if unknown:
            raise ValueError(f"unknown value patterns {sorted(unknown)}; known: "
                             f"{', '.join(VALUES)}")
        keys = KEYS + (f"|{extra_keys}" if extra_keys else "")
        self._keys = re.compile(keys, re.IGNORECASE)
        patterns = [(kind, VALUES[kind]) for kind in kinds]
        patterns += [(f"custom{i}", p) for i, p in enumerate(extra_patterns)]
        self._values = re.compile("|".join(f"(?P<{kind}>{p})" for kind, p in patterns)) \
            if patterns else None

    def text(self, value: str) -> str:
        """``value`` with every value-pattern match replaced."""
        if self._values is None:
            return value
        return self._values.sub(self._replace, value)

    def attributes(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``attributes`` with sensitive keys and values redacted."""
        out: dict[str, Any] = {}
        for key, value in attributes.items():
            if key.startswith(OWN):
                out[key] = value
            elif self._keys.search(key):
                out[key] = "[REDACTED]"
            elif isinstance(value, str):
                out[key] = self.text(value)
            else:
                out[key] = value
        return out

    @staticmethod
    def _replace(match: re.Match[str]) -> str:
        kind = match.lastgroup or "value"
        if kind == "card" and not _luhn(re.sub(r"\D", "", match.group())):
            return match.group()  # a long number, not a card: order ids, timestamps
        return f"[REDACTED:{kind}]"
