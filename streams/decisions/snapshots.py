"""Detector state that survives restarts: signed snapshots on a compacted topic.

After each closed window the worker publishes the function's decision state (its
detectors, verdict lifecycle, open incident and spend) to ``<prefix>.state``, keyed by
function; the topic is compacted, so it holds the latest snapshot per function. A
starting worker reads it to the end before consuming and resumes every function
without a new warm-up. (It is read at start only: a worker that takes functions over
in a later rebalance starts them from what it read then.) Snapshots are pickles
(River models pickle; see the detector contract test), so each carries an
HMAC-SHA256 with the verdict key and is refused when the MAC does not match: only a
holder of the key can make a worker unpickle anything.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from typing import Any

from agents.compacted import read_to_end
from streams.errors import SnapshotError

log = logging.getLogger("governor.worker")
_MAC = 32


def seal(state: object, key: bytes) -> bytes:
    """``state`` pickled, behind its HMAC."""
    body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return hmac.new(key, body, hashlib.sha256).digest() + body


def unseal(blob: bytes, key: bytes) -> Any:
    """The state inside ``blob``; :class:`SnapshotError` if it was not sealed with ``key``
    or was written by a version whose classes this one no longer has."""
    mac, body = blob[:_MAC], blob[_MAC:]
    if len(blob) <= _MAC or not hmac.compare_digest(
            mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise SnapshotError("snapshot MAC does not match: written with another verdict key, "
                            "or altered")
    try:
        return pickle.loads(body)
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError) as exc:
        raise SnapshotError(f"snapshot of an older layout: {exc}") from None


def load_snapshots(bootstrap: str, topic: str, timeout_s: float = 30.0) -> dict[str, bytes]:
    """The latest snapshot per function, read from every partition up to its end."""
    records, unread = read_to_end(bootstrap, topic, None, timeout_s, logger=log)
    if unread:
        log.warning("snapshots of partitions %s not fully read in %.0fs; those functions "
                    "warm up again", unread, timeout_s)
    latest: dict[str, bytes] = {}
    for msg in records:
        key, value = msg.key(), msg.value()
        if key and value:
            latest[key.decode(errors="replace")] = value
    return latest
