"""Telemetry authentication: each record a function sends carries a MAC made with a key
only that function (and the workers) hold.

The workers hold a telemetry key, ``<key id>:<secret>`` (several, comma-separated,
while one is rotated). A function's key is derived from it, its name and its team,
:func:`function_key`, and given to the function at deploy (``GOVERNOR_FUNCTION_KEY``,
``governor keys function NAME --team TEAM`` prints it). The agent puts
``governor-auth: <key id>:<base64url MAC of the record value>`` in each record's headers;
a worker derives the key of the function (and team) the record names and checks the
MAC, so a function can only speak for itself: its key says nothing for any other name,
nor for any other team (a team's budget and rights act on its functions).

>>> key = function_key(b"k1", b"a-long-random-secret", "checkout")
>>> [(name, value)] = Sealer(key.decode()).headers(b'{"function":"checkout"}')
>>> name, value.startswith(b"k1:")
('governor-auth', True)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

HEADER = "governor-auth"
"""The record header that carries the MAC."""
_CONTEXT = b"governor/function-key/v1\x00"


_TEAM_CONTEXT = b"governor/function-team-key/v1\x00"


def derive(secret: bytes, function: str, team: str = "") -> bytes:
    """The raw key of ``function`` under a telemetry key's ``secret``; with ``team``, a
    key that vouches for the function's team too."""
    if not team:
        return hmac.digest(secret, _CONTEXT + function.encode(), hashlib.sha256)
    name = function.encode()
    return hmac.digest(secret, _TEAM_CONTEXT + len(name).to_bytes(4, "big") + name
                       + team.encode(), hashlib.sha256)


def function_key(key_id: bytes, secret: bytes, function: str, team: str = "") -> bytes:
    """``<key id>:<base64url key>``: the key of ``function`` (of ``team``) under the
    telemetry key ``key_id`` (its ``secret``), as functions are given it."""
    key = derive(secret, function, team)
    return key_id + b":" + base64.urlsafe_b64encode(key).rstrip(b"=")


def parse_function_key(text: str) -> tuple[bytes, bytes]:
    """``(key id, raw key)`` of a :func:`function_key`; ValueError when malformed."""
    key_id, sep, encoded = text.strip().encode().partition(b":")
    try:
        raw = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4)) if sep else b""
    except ValueError:
        raw = b""
    if not key_id or len(raw) != 32:
        raise ValueError("a function key is <key id>:<base64url of 32 bytes>, as "
                         "`governor keys function NAME` prints it")
    return key_id, raw


_URLSAFE = bytes.maketrans(b"+/", b"-_")


class MacKey:
    """A function's raw key, ready to MAC record values (HMAC-SHA256, base64url).

    The key's inner and outer SHA-256 states are computed once; each value then costs
    two state copies and two short hashes, half of what a one-shot ``hmac.digest``
    pays to set the key up again on every call.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, raw_key: bytes) -> None:
        block = raw_key.ljust(_BLOCK, b"\0") if len(raw_key) <= _BLOCK else \
            hashlib.sha256(raw_key).digest().ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(block.translate(_IPAD))
        self._outer = hashlib.sha256(block.translate(_OPAD))

    def __call__(self, value: bytes) -> bytes:
        """The base64url MAC of ``value``."""
        inner = self._inner.copy()
        inner.update(value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return binascii.b2a_base64(outer.digest(), newline=False).translate(
            _URLSAFE).rstrip(b"=")


_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class Sealer:
    """The headers that authenticate record values under a :func:`function_key`."""

    __slots__ = ("_mac", "_prefix")

    def __init__(self, key: str) -> None:
        key_id, raw = parse_function_key(key)
        self._prefix = key_id + b":"
        self._mac = MacKey(raw)

    def headers(self, value: bytes) -> list[tuple[str, str | bytes | None]]:
        return [(HEADER, self._prefix + self._mac(value))]
