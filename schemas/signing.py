"""Signatures of verdicts and control records over the canonical JSON of the unsigned
record.

The canonical form is the record encoded with sorted keys and an empty ``signature``;
producers in other languages sign the same bytes. Verdicts and control records (live
thresholds) are signed alike, with the same key: only workers and operators can make
either. Two schemes:

* **Ed25519** (asymmetric; what a deployment should use). Workers and operators hold a
  private key, ``ed25519:<key id>:<base64 32-byte seed>``; agents hold only public keys,
  ``ed25519-pub:<key id>:<base64 key>[,<key id>:<base64 key>…]`` — a function can check
  verdicts but never make one. Signatures are ``ed25519:<key id>:<base64>``. Several
  public keys may be valid at once, so a key is rotated without downtime: give agents
  the new public key beside the old, switch the workers to the new private key, then
  drop the old public key. :func:`new_private_key` makes a key, :func:`public_key`
  derives what agents need.
* **HMAC-SHA256** with a shared secret (every function holding it can sign: the
  embedded stack's tests and old deployments). A public keyring never accepts it.

>>> from schemas.events import Action, Verdict
>>> private = new_private_key("k1")
>>> v = sign_verdict(Verdict(function="f", action=Action.ISOLATE,
...                          expires_at_unix_nano=2, sequence=1), private)
>>> verify_verdict(v, public_key(private))
>>> v.signature.startswith("ed25519:k1:")
True
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import os
from typing import Any, TypeVar

import orjson

from schemas.events import ControlUpdate, Verdict

Signed = TypeVar("Signed", Verdict, ControlUpdate)
"""The records that carry a ``signature``."""

_HMAC = "hmac-sha256:"
PRIVATE = b"ed25519:"
PUBLIC = b"ed25519-pub:"


class SignatureError(ValueError):
    """A record is unsigned, signed with another key, or altered after signing."""


def _canonical(record: Verdict | ControlUpdate) -> bytes:
    return orjson.dumps(dataclasses.replace(record, signature=""), option=orjson.OPT_SORT_KEYS)


def new_private_key(key_id: str) -> bytes:
    """A new Ed25519 private key, ``ed25519:<key_id>:<base64 seed>``."""
    if not key_id or ":" in key_id or "," in key_id:
        raise ValueError(f"key id {key_id!r}: use a short name without ':' or ','")
    return PRIVATE + key_id.encode() + b":" + base64.b64encode(os.urandom(32))


def public_key(key: bytes) -> bytes:
    """What agents need to check verdicts signed with ``key``: the public key of an
    Ed25519 private key; a shared HMAC secret is its own (and can sign)."""
    if not key.startswith(PRIVATE):
        return key
    key_id, private = _private(key)
    raw = private.public_key().public_bytes_raw()
    return PUBLIC + key_id.encode() + b":" + base64.b64encode(raw)


def sign_record(record: Signed, key: bytes) -> Signed:
    """Return ``record`` with its ``signature`` set for ``key`` (an Ed25519 private key
    or a shared HMAC secret)."""
    if key.startswith(PUBLIC):
        raise SignatureError(f"a public key cannot sign a {record.TYPE}: give workers and "
                             "operators the private key (ed25519:<id>:<seed>)")
    if key.startswith(PRIVATE):
        key_id, private = _private(key)
        signature = base64.b64encode(private.sign(_canonical(record))).decode()
        return dataclasses.replace(record, signature=f"ed25519:{key_id}:{signature}")
    digest = hmac.new(key, _canonical(record), hashlib.sha256).hexdigest()
    return dataclasses.replace(record, signature=_HMAC + digest)


def verify_record(record: Verdict | ControlUpdate, key: bytes) -> None:
    """Raise :class:`SignatureError` unless ``record`` is signed for ``key``: a public
    keyring (Ed25519 signatures by one of its key ids only), a private key (checked
    against its own public key) or a shared HMAC secret."""
    where = f"{record.TYPE} {record.event_id} for {record.function}"
    if not record.signature:
        raise SignatureError(f"{where} is unsigned")
    if key.startswith((PUBLIC, PRIVATE)):
        _verify_ed25519(record, public_key(key), where)
        return
    if not record.signature.startswith(_HMAC):
        raise SignatureError(f"{where}: unknown signature scheme")
    expected = hmac.new(key, _canonical(record), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, record.signature[len(_HMAC):]):
        raise SignatureError(f"{where}: signature does not match (forged, altered, or "
                             "signed with another GOVERNOR_VERDICT_KEY)")


sign_verdict = sign_record
verify_verdict = verify_record


def _verify_ed25519(record: Verdict | ControlUpdate, ring: bytes, where: str) -> None:
    from cryptography.exceptions import InvalidSignature

    scheme, _, rest = record.signature.partition(":")
    key_id, _, signature = rest.partition(":")
    if scheme != "ed25519":
        raise SignatureError(f"{where}: not an Ed25519 signature (only records signed with "
                             "the workers' and operators' private key are accepted)")
    keys = _keyring(ring)
    if key_id not in keys:
        raise SignatureError(f"{where}: signed with key {key_id!r}, which is not among "
                             f"the public keys held here ({', '.join(sorted(keys))})")
    try:
        keys[key_id].verify(base64.b64decode(signature, validate=True), _canonical(record))
    except (InvalidSignature, ValueError):
        raise SignatureError(f"{where}: signature does not match (forged or altered)") from None


def _private(key: bytes) -> tuple[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key_id, seed = key[len(PRIVATE):].decode().split(":", 1)
        return key_id, Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed))
    except ValueError:
        raise SignatureError("a private verdict key must be ed25519:<key id>:<base64 "
                             "32-byte seed>") from None


@functools.lru_cache(maxsize=8)
def _keyring(ring: bytes) -> dict[str, Any]:
    """The public keys of ``ring`` by key id, parsed once per ring (never mutated)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = {}
    try:
        for item in ring[len(PUBLIC):].decode().split(","):
            key_id, raw = item.strip().split(":", 1)
            keys[key_id] = Ed25519PublicKey.from_public_bytes(base64.b64decode(raw))
    except ValueError:
        raise SignatureError("public verdict keys must be ed25519-pub:<key id>:<base64 key>"
                             "[,<key id>:<base64 key>…]") from None
    return keys
