"""Detector state that survives restarts: signed snapshots on a compacted topic.

After each closed window the worker publishes the function's decision state (its
detectors, verdict lifecycle, open incident and spend) to ``<prefix>.state``, keyed by
function; the topic is compacted, so it holds the latest snapshot per function. A
starting worker reads it to the end before consuming and resumes every function
without a new warm-up. (It is read at start only: a worker that takes functions over
in a later rebalance starts them from what it read then.) Snapshots are pickles
(River models pickle; see the detector contract test), so each carries an
HMAC-SHA256 with the verdict key and is refused when the MAC does not match. And even
a snapshot with a valid MAC cannot run code: it is read by a restricted unpickler that
only makes the classes decision state is made of (Governor's detectors and decision
records, River's running statistics, deques and sets, NumPy arrays) and refuses any
other global — no function, no module, nothing that reaches the system.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import pickle
from typing import Any

from agents.compacted import read_to_end
from agents.kafka_security import PLAINTEXT, KafkaSecurity
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
        return _StateUnpickler(io.BytesIO(body)).load()
    except _Refused as exc:
        raise SnapshotError(f"snapshot refused: {exc}") from None
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError) as exc:
        raise SnapshotError(f"snapshot of an older layout: {exc}") from None


class _Refused(pickle.UnpicklingError):
    pass


_CLASS_MODULES = ("streams.decisions.", "streams.detectors.", "streams.paging.incidents",
                  "schemas.events", "river.stats.", "river.utils.", "river._river_rust.")
"""Modules whose *classes* decision state is made of (never their functions)."""
_GLOBALS = {
    ("collections", "deque"), ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("builtins", "complex"), ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
}
"""Other globals a snapshot may name: containers and NumPy's array reconstruction."""


class _StateUnpickler(pickle.Unpickler):
    """Unpickles decision state only (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _GLOBALS:
            return super().find_class(module, name)
        if module.startswith(_CLASS_MODULES) and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise _Refused(f"it names {module}.{name}, which decision state never holds")


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
