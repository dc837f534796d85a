"""Live thresholds as the workers see them: the compacted control topic, read to its
end (:func:`load_control`) or followed (:class:`ControlFollower`).

One :class:`~schemas.ControlUpdate` per scope holds the scope's complete values; the
latest per scope wins, so the thresholds in force are rebuilt by reading the topic
from the beginning. Records are keyed ``thresholds:<scope>`` (:func:`control_key`) so
that other kinds of control record, such as policy bundles, never compact threshold
records away; a tombstone removes its scope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from agents.compacted import Follower, read_to_end
from schemas import ControlKind, ControlUpdate, SchemaError, decode
from streams.decisions.thresholds import Thresholds
from streams.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Message

log = logging.getLogger("governor.control")

Listener = Callable[[ControlUpdate, list[str]], None]


def control_key(scope: str, kind: ControlKind = ControlKind.THRESHOLDS) -> bytes:
    """The control topic's record key of ``scope`` for ``kind``: ``<kind>:<scope>``."""
    return f"{kind.value}:{scope}".encode()


def apply_record(thresholds: Thresholds, msg: Message) -> tuple[ControlUpdate, list[str]] | None:
    """Apply one control record to ``thresholds``; the update and its problems (each
    logged), or ``None`` for a tombstone or a record that is not a valid update."""
    value = msg.value()
    if value is None:  # a tombstone: the scope is gone
        key = (msg.key() or b"").decode(errors="replace")
        prefix = control_key("").decode()
        if key.startswith(prefix):
            thresholds.clear(key[len(prefix):])
        return None
    try:
        update = decode(value, ControlUpdate)
    except SchemaError as exc:
        log.warning("control record at offset %d skipped: %s", msg.offset(), exc)
        return None
    problems = thresholds.apply(update)
    for problem in problems:
        log.warning("%s", problem)
    return update, problems


def load_control(bootstrap: str, settings: Settings, timeout_s: float = 10.0) -> Thresholds:
    """The thresholds in force: the control topic read to its end, each update applied
    in order; :class:`TimeoutError` naming the partitions not read in ``timeout_s``."""
    thresholds = Thresholds(settings)
    topic = settings.topic("control")
    records, unread = read_to_end(bootstrap, topic, None, timeout_s,
                                  security=settings.kafka_security)
    if unread:
        raise TimeoutError(f"timed out after {timeout_s:.0f}s reading {topic} "
                           f"(partitions {unread} not read to the end)")
    for msg in records:
        apply_record(thresholds, msg)
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

    def __init__(self, bootstrap: str, settings: Settings, thresholds: Thresholds | None = None,
                 on_update: Listener | None = None) -> None:
        self.thresholds = thresholds if thresholds is not None else Thresholds(settings)
        self.rejected = 0  # control records refused (undecodable, or any invalid value)
        self._on_update = on_update
        self._follower = Follower(bootstrap, settings.topic("control"), self._handle,
                                  name="governor-control", security=settings.kafka_security)

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
        applied = apply_record(self.thresholds, msg)
        if (applied is None and msg.value() is not None) or (applied and applied[1]):
            self.rejected += 1
        if applied is not None and self._on_update is not None:
            self._on_update(*applied)
