"""Verdicts at the agent: validation, the in-memory cache, and enforcement.

The hot path is one dictionary lookup (:meth:`VerdictCache.check`). Verdicts arrive
from :class:`VerdictFollower` (Kafka) or :meth:`VerdictCache.offer` directly, and are
accepted only if signed with the configured key, not expired, for a function this
process governs, and newer (by ``sequence``) than the last one accepted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents import _egress
from agents._egress import EgressPolicy
from agents._errors import FunctionIsolated, FunctionThrottled
from agents._stats import Stats
from agents.compacted import Follower
from agents.kafka_security import PLAINTEXT, KafkaSecurity
from schemas import (
    Action,
    SchemaError,
    SignatureError,
    Verdict,
    decode,
    partition_for,
    verify_verdict,
)

if TYPE_CHECKING:
    from confluent_kafka import Message

log = logging.getLogger("governor.agent")


class TokenBucket:
    """Allows ``rate`` calls per second with bursts up to ``burst`` (per instance)."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


@dataclass(slots=True)
class _Active:
    verdict: Verdict
    bucket: TokenBucket | None
    egress: EgressPolicy | None
    refuse: bool  # isolate without an allow-list: refuse every call


Listener = Callable[[Verdict], None]


class VerdictCache:
    """Latest accepted verdict per function, and the enforcement check."""

    def __init__(self, key: bytes, stats: Stats) -> None:
        self._key = key
        self._stats = stats
        self._active: dict[str, _Active] = {}
        self._sequence: dict[str, int] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        if not key:
            log.warning("GOVERNOR_VERDICT_KEY is not set: every verdict will be rejected")

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(verdict)`` after each accepted verdict."""
        self._listeners.append(listener)

    def offer_bytes(self, payload: bytes) -> bool:
        try:
            verdict = decode(payload, Verdict)
        except SchemaError as exc:
            self._reject("invalid", exc)
            return False
        return self.offer(verdict)

    def offer(self, verdict: Verdict) -> bool:
        """Accept ``verdict`` if it is valid and new; return whether it was accepted."""
        if not self._key:
            return self._reject("unsigned", "no GOVERNOR_VERDICT_KEY to verify with")
        try:
            verify_verdict(verdict, self._key)
        except SignatureError as exc:
            return self._reject("forged", exc)
        if verdict.expires_at_unix_nano <= time.time_ns():
            return self._reject("expired", verdict.event_id)
        with self._lock:
            if verdict.sequence <= self._sequence.get(verdict.function, -1):
                return self._reject("replayed", verdict.event_id)
            self._sequence[verdict.function] = verdict.sequence
            if verdict.action is Action.RELEASE:
                self._active.pop(verdict.function, None)
            else:
                bucket = (TokenBucket(verdict.rate_rps or 0.0)
                          if verdict.action is Action.THROTTLE else None)
                egress = None
                if verdict.egress_allow is not None:
                    _egress.install()
                    egress = EgressPolicy(verdict.egress_allow)
                refuse = verdict.action is Action.ISOLATE and egress is None
                self._active[verdict.function] = _Active(verdict, bucket, egress, refuse)
        self._stats.add(f"verdicts_accepted_{verdict.action.value}")
        for listener in self._listeners:
            listener(verdict)
        return True

    def check(self, function: str) -> EgressPolicy | None:
        """Raise if a live verdict refuses a call of ``function`` now; otherwise return
        the egress allow-list the call must keep to, if a verdict imposes one."""
        active = self._active.get(function)
        if active is None:
            return None
        verdict = active.verdict
        if verdict.expires_at_unix_nano <= time.time_ns():
            self._active.pop(function, None)
            self._stats.add("verdicts_expired_in_force")
            return None
        if active.refuse:
            raise FunctionIsolated(function, verdict.reason, verdict.expires_at_unix_nano)
        if active.bucket is not None and not active.bucket.try_acquire():
            raise FunctionThrottled(
                function, verdict.reason, verdict.expires_at_unix_nano, active.bucket.rate
            )
        return active.egress

    def current(self, function: str) -> Verdict | None:
        """The verdict in force for ``function``, if any."""
        active = self._active.get(function)
        if active is None or active.verdict.expires_at_unix_nano <= time.time_ns():
            return None
        return active.verdict

    def _reject(self, why: str, detail: object) -> bool:
        self._stats.add(f"verdicts_rejected_{why}")
        log.info("verdict rejected (%s): %s", why, detail)
        return False


class VerdictFollower:
    """Follows the compacted verdicts topic for this process's functions.

    No consumer group: the follower assigns exactly the partitions that carry its
    functions' keys, reads them from the beginning (the compacted topic holds the
    latest verdict per function) and keeps following (:class:`agents.compacted.Follower`).
    Broker outages only delay it.
    """

    def __init__(self, bootstrap: str, topic: str, cache: VerdictCache, stats: Stats,
                 stale_after_s: float = 60.0, security: KafkaSecurity = PLAINTEXT) -> None:
        self._cache = cache
        self._stats = stats
        self._stale_after_s = stale_after_s
        self._functions: set[bytes] = set()
        self._follower = Follower(
            bootstrap, topic, self._on_record, name="governor-verdicts", select=self._select,
            on_problem=self._on_problem, logger=logging.getLogger("governor.agent.kafka"),
            security=security)
        self._follower.start()

    def in_sync(self) -> bool:
        """Read every verdict published so far, and heard from the broker lately."""
        return (self._follower.synced
                and time.monotonic() - self._follower.last_contact < self._stale_after_s)

    def watch(self, function: str) -> None:
        key = function.encode()
        if key not in self._functions:
            self._functions = self._functions | {key}
            self._follower.refresh()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._follower.stop(timeout_s)

    def _select(self, partitions: int) -> set[int]:
        return {partition_for(key.decode(), partitions) for key in self._functions}

    def _on_record(self, msg: Message) -> None:
        value = msg.value()
        if msg.key() in self._functions and value is not None:
            self._cache.offer_bytes(value)

    def _on_problem(self, what: str) -> None:
        self._stats.add("verdict_follower_crashed" if what == "stopped"
                        else "verdict_consumer_errors")
