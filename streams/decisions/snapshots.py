"""Decision state that survives restarts: signed plain-data snapshots on a compacted topic.

After each closed window the worker publishes the function's decision state (its
detectors, verdict lifecycle, open incident and spend) to ``<prefix>.state``, keyed by
function; the topic is compacted, so it holds the latest snapshot per function. A
starting worker reads it to the end before consuming and resumes every function
without a new warm-up; it reads it again after each rebalance of its ingest, so the
functions it takes over from another worker resume from their latest snapshot, with
their verdicts and open incidents (:meth:`~streams.pipeline.routes.Routes.hand_over`).

A snapshot is data and nothing else. Its body is JSON (orjson),
``{"format": 2, "function": …, "state": {…}}``, where ``state`` holds only objects,
lists, strings, numbers, booleans and nulls: each stateful class gives its state with
``to_state()`` and is rebuilt by its own typed ``from_state`` (:mod:`streams.state`),
so loading one parses JSON and reads numbers — it cannot import, call or run anything.
The body is preceded by its HMAC-SHA256 with the workers' state key
(:func:`streams.keys.load_state_key`), which only workers hold: not functions, not
operators, and not the verdict key. A snapshot is refused, with a reason the worker
counts (``snapshots_refused_<reason>``), when it is

========== ==============================================================================
reason     refused because
========== ==============================================================================
size       it is larger than :data:`MAX_BYTES`
pickle     it is a pickle (what Governor wrote before format 2): never unpickled
key        its MAC does not match: written with another key, forged, or altered
format     it is not JSON of this format (another ``format``, another layout)
function   it is another function's snapshot, written under this function's key
shape      its state has the wrong shape (:class:`~streams.state.StateError`)
========== ==============================================================================

and the function then warms up again, as a new one would.

>>> blob = seal("checkout", {"seen": 3}, b"k" * 32)
>>> unseal(blob, "checkout", b"k" * 32).integer("seen")
3
>>> unseal(blob, "checkout", b"x" * 32)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streams.errors.SnapshotError: snapshot MAC does not match: written with another state key, ...
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import orjson

from agents.compacted import read_to_end
from agents.kafka_security import PLAINTEXT, KafkaSecurity
from streams.errors import SnapshotError
from streams.state import Reader

log = logging.getLogger("governor.worker")

FORMAT = 2
"""The snapshot format (1, implicit, was a pickle)."""
MAX_BYTES = 1 << 20
"""Largest snapshot read (1 MiB, the broker's default largest record)."""
REASONS = ("size", "pickle", "key", "format", "function", "shape")
"""Why a snapshot may be refused (see the module docstring)."""
_MAC = 32
_PICKLE = 0x80
"""The first byte of a pickle (its protocol opcode, protocol 2 and later)."""


def seal(function: str, state: dict[str, Any], key: bytes) -> bytes:
    """``function``'s plain-data ``state`` as a snapshot: JSON behind its HMAC."""
    body = orjson.dumps({"format": FORMAT, "function": function, "state": state})
    return hmac.new(key, body, hashlib.sha256).digest() + body


def verify(blob: bytes, key: bytes) -> None:
    """Raise :class:`SnapshotError` unless ``blob`` is small enough, not a pickle and
    carries the MAC of ``key`` (what can be checked without parsing it)."""
    if len(blob) > MAX_BYTES:
        raise SnapshotError(f"snapshot of {len(blob)} bytes, over the {MAX_BYTES}-byte "
                            "limit", "size")
    if blob[_MAC:_MAC + 1] != b"{" and _PICKLE in blob[:1] + blob[_MAC:_MAC + 1]:
        raise SnapshotError("a pickled snapshot (written before format 2): never unpickled",
                            "pickle")
    mac, body = blob[:_MAC], blob[_MAC:]
    if len(blob) <= _MAC or not hmac.compare_digest(
            mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise SnapshotError("snapshot MAC does not match: written with another state key, "
                            "forged or altered", "key")


def unseal(blob: bytes, function: str, key: bytes) -> Reader:
    """The state inside ``function``'s snapshot ``blob``, to rebuild objects from;
    :class:`SnapshotError` (with its ``reason``) if it is refused."""
    verify(blob, key)
    try:
        body = orjson.loads(blob[_MAC:])
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"snapshot is not JSON: {exc}", "format") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        found = body.get("format") if isinstance(body, dict) else type(body).__name__
        raise SnapshotError(f"snapshot format {found!r:.40}, not {FORMAT}", "format")
    if body.get("function") != function:
        raise SnapshotError(f"a snapshot of {body.get('function')!r:.80} under the key of "
                            f"{function!r}", "function")
    return Reader(body.get("state"), "state")


def load_snapshots(bootstrap: str, topic: str, timeout_s: float = 30.0,
                   security: KafkaSecurity = PLAINTEXT) -> dict[str, bytes]:
    """The latest snapshot per function, read from every partition up to its end."""
    records, unread = read_to_end(bootstrap, topic, None, timeout_s, logger=log,
                                  security=security)
    if unread:
        log.warning("snapshots of partitions %s not fully read in %.0fs; those functions "
                    "warm up again", unread, timeout_s)
    latest: dict[str, bytes] = {}
    for msg in records:
        key, value = msg.key(), msg.value()
        if key and value:
            latest[key.decode(errors="replace")] = value
    return latest
