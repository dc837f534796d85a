"""Verdict signatures: HMAC-SHA256 over the canonical JSON of the unsigned verdict.

The canonical form is the verdict encoded with sorted keys and an empty
``signature``; producers in other languages sign the same bytes.

>>> from schemas.events import Action, Verdict
>>> v = sign_verdict(Verdict(function="f", action=Action.ISOLATE,
...                          expires_at_unix_nano=2, sequence=1), b"k")
>>> verify_verdict(v, b"k")
>>> v.signature.startswith("hmac-sha256:")
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import orjson

from schemas.events import Verdict

_SCHEME = "hmac-sha256:"


class SignatureError(ValueError):
    """A verdict is unsigned, signed with another key, or altered after signing."""


def _canonical(verdict: Verdict) -> bytes:
    return orjson.dumps(dataclasses.replace(verdict, signature=""), option=orjson.OPT_SORT_KEYS)


def sign_verdict(verdict: Verdict, key: bytes) -> Verdict:
    """Return ``verdict`` with its ``signature`` set for ``key``."""
    digest = hmac.new(key, _canonical(verdict), hashlib.sha256).hexdigest()
    return dataclasses.replace(verdict, signature=_SCHEME + digest)


def verify_verdict(verdict: Verdict, key: bytes) -> None:
    """Raise :class:`SignatureError` unless ``verdict`` is signed with ``key``."""
    if not verdict.signature:
        raise SignatureError(f"verdict {verdict.event_id} for {verdict.function} is unsigned")
    if not verdict.signature.startswith(_SCHEME):
        raise SignatureError(f"verdict {verdict.event_id}: unknown signature scheme")
    expected = hmac.new(key, _canonical(verdict), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, verdict.signature[len(_SCHEME) :]):
        raise SignatureError(
            f"verdict {verdict.event_id} for {verdict.function}: signature does not match "
            "(forged, altered, or signed with another GOVERNOR_VERDICT_KEY)"
        )
