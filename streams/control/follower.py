"""Live thresholds as the workers see them: the compacted control topic, read to its
end (:func:`load_control`) or followed (:class:`ControlFollower`).

One :class:`~schemas.ControlUpdate` per scope holds the scope's complete values; the
latest per scope wins, so the thresholds in force are rebuilt by reading the topic
from the beginning. Records are keyed ``thresholds:<scope>`` (:func:`control_key`) so
that other kinds of control record, such as policy bundles, never compact threshold
records away.

Every update must be signed with the operators' key (the verdict key,
:func:`schemas.signing.sign_record`): one that is unsigned, forged or altered is
ignored, logged and counted, so whatever can write to the topic cannot lift a budget
or a threshold. A tombstone carries nothing to sign and is ignored the same way: a
scope is emptied by a signed update without values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from agents.compacted import Follower, read_to_end
from schemas import ControlKind, ControlUpdate, SchemaError, SignatureError, decode, verify_record
from streams.decisions.thresholds import Thresholds
from streams.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Message

log = logging.getLogger("governor.control")

Listener = Callable[[ControlUpdate, list[str]], None]


def control_key(scope: str, kind: ControlKind = ControlKind.THRESHOLDS) -> bytes:
    """The control topic's record key of ``scope`` for ``kind``: ``<kind>:<scope>``."""
    return f"{kind.value}:{scope}".encode()


def apply_record(thresholds: Thresholds, msg: Message,
                 key: bytes) -> tuple[ControlUpdate, list[str]] | None:
    """Apply one control record to ``thresholds`` if it is signed for ``key``; the
    update and its problems (each logged), or ``None`` for a record that is refused
    (a tombstone, not a valid update, unsigned or forged: logged)."""
    value = msg.value()
    where = f"control record at offset {msg.offset()}"
    if value is None:
        log.warning("%s ignored: a tombstone is not signed (empty a scope with a signed "
                    "update that unsets its keys: `governor thresholds set SCOPE KEY=`)", where)
        return None
    try:
        update = decode(value, ControlUpdate)
        verify_record(update, key)
    except (SchemaError, SignatureError) as exc:
        log.warning("%s ignored: %s", where, exc)
        return None
    problems = thresholds.apply(update)
    for problem in problems:
        log.warning("%s", problem)
    return update, problems


def load_control(bootstrap: str, settings: Settings, key: bytes,
                 timeout_s: float = 10.0) -> Thresholds:
    """The thresholds in force: the control topic read to its end, each update signed
    for ``key`` applied in order; :class:`TimeoutError` naming the partitions not read in
    ``timeout_s``."""
    thresholds = Thresholds(settings)
    topic = settings.topic("control")
    records, unread = read_to_end(bootstrap, topic, None, timeout_s)
    if unread:
        raise TimeoutError(f"timed out after {timeout_s:.0f}s reading {topic} "
                           f"(partitions {unread} not read to the end)")
    for msg in records:
        apply_record(thresholds, msg, key)
    return thresholds


class ControlFollower:
    """Follows the control topic in a thread and applies every threshold update.

    No consumer group: each follower assigns every partition from the beginning, so
    every worker sees every update (a group would hand the one partition to one
    worker) and a restarted worker rebuilds the thresholds in force (committed
    offsets would skip them). ``on_update(update, problems)`` is called after each
    applied update, in the follower's thread; a worker starts it, waits for
    :meth:`wait_synced`, and reads ``follower.thresholds.effective(function, team)``.
    """

    def __init__(self, bootstrap: str, settings: Settings, key: bytes,
                 thresholds: Thresholds | None = None,
                 on_update: Listener | None = None) -> None:
        self.thresholds = thresholds if thresholds is not None else Thresholds(settings)
        self.rejected = 0  # control records refused: unsigned, forged, undecodable, invalid
        self._key = key
        self._on_update = on_update
        self._follower = Follower(bootstrap, settings.topic("control"), self._handle,
                                  name="governor-control")

    def start(self) -> ControlFollower:
        self._follower.start()
        return self

    def wait_synced(self, timeout_s: float) -> bool:
        """Wait until every update published before the start has been applied."""
        return self._follower.wait_synced(timeout_s)

    @property
    def synced(self) -> bool:
        return self._follower.synced

    def stop(self, timeout_s: float = 2.0) -> None:
        self._follower.stop(timeout_s)

    def _handle(self, msg: Message) -> None:
        applied = apply_record(self.thresholds, msg, self._key)
        if applied is None or applied[1]:
            self.rejected += 1
        if applied is not None and self._on_update is not None:
            self._on_update(*applied)
