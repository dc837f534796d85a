"""Delivering incident pages with retries.

A :class:`PageDispatcher` owns the retries: one bounded queue and one daemon thread per
pager (:mod:`.transports`), so :meth:`PageDispatcher.submit` never blocks the stream and
a slow or dead receiver delays no other. Connection errors, 5xx and 429 are retried
with exponential backoff and jitter (``Retry-After`` honoured, capped); any other 4xx
is not retried and is logged with the response body; after ``max_attempts`` the
dispatcher gives up, logs an error and counts it (:class:`DispatchStats`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas import Incident, IncidentStatus
from streams.errors import SettingsError
from streams.paging.incidents import is_paged
from streams.paging.transports import (
    BODY_LOGGED,
    PAGERDUTY_EVENTS_URL,
    AlertmanagerPager,
    FilePager,
    Pager,
    PagerDutyPager,
    PageResult,
)

log = logging.getLogger("governor.pager")

LEASE_REFRESHES = 3
"""An open alert's ``endsAt`` is this many refresh periods ahead: one or two refreshes
may fail without the alert ending; a worker gone for good lets it end."""

@dataclass
class DispatchStats:
    """Counters since the dispatcher started (one per pager and incident event)."""

    submitted: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    """Gave up: attempts exhausted, or refused with a non-retryable status."""
    dropped: int = 0
    """Never attempted to the end: queue full, or still queued when close timed out."""
    skipped: int = 0
    """Incident events not to be paged (folded by the rate limit)."""


_STOP = object()


class PageDispatcher:
    """Delivers incident events to its pagers in the background; never blocks.

    Per pager, events are delivered in submission order (an open before its resolve).
    """

    def __init__(self, pagers: Sequence[Pager], *, queue_size: int = 1000,
                 max_attempts: int = 5, backoff_seconds: float = 0.5,
                 max_backoff_seconds: float = 30.0, max_retry_after_seconds: float = 300.0,
                 refresh_seconds: float = 60.0, seed: int | None = None) -> None:
        """``refresh_seconds``: how often pagers re-assert open incidents (0: never)."""
        self.pagers = list(pagers)
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_retry_after_seconds = max_retry_after_seconds
        self.refresh_seconds = refresh_seconds
        self.stats = DispatchStats()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._closed = False
        self._abort = threading.Event()
        self._lanes = [_Lane(self, pager, queue_size) for pager in self.pagers]

    def submit(self, incident: Incident) -> bool:
        """Queue one incident event for every pager; ``False`` when nothing was queued
        (no pagers, not to be paged, closed, or every queue full)."""
        if not is_paged(incident):
            self._count("skipped")
            return False
        queued = False
        for lane in self._lanes:
            queued |= self._offer(lane, incident)
        return queued

    def resume(self, incidents: Iterable[Incident]) -> None:
        """Re-assert open incidents (e.g. ``tracker.open_incidents()`` after a restart)
        to the pagers for which that is harmless (Alertmanager)."""
        for incident in incidents:
            if not is_paged(incident):
                continue
            for lane in self._lanes:
                if lane.pager.idempotent:
                    self._offer(lane, incident)

    def forget(self, incident_ids: Iterable[str]) -> None:
        """Stop re-asserting these incidents (another worker carries them on)."""
        for incident_id in incident_ids:
            for lane in self._lanes:
                lane.pager.forget(incident_id)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop accepting, deliver what is queued for up to ``timeout`` seconds, then
        abandon the rest (counted as dropped). ``True`` if everything was handled."""
        self._closed = True
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            lane.stop()
        for lane in self._lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        drained = not any(lane.thread.is_alive() for lane in self._lanes)
        if not drained:
            self._abort.set()  # ends backoff waits; the lanes drop what is left
            for lane in self._lanes:
                lane.thread.join(0.5)
        return drained

    def __enter__(self) -> PageDispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # internals -----------------------------------------------------------------------

    def _offer(self, lane: _Lane, incident: Incident) -> bool:
        if self._closed:
            self._count("dropped")
            return False
        try:
            lane.queue.put_nowait(incident)
        except queue.Full:
            self._count("dropped")
            log.error("page queue of %s full: incident %s (%s) %s dropped", lane.pager.name,
                      incident.incident_id, incident.function, incident.status.value)
            if incident.status is IncidentStatus.RESOLVED:
                lane.pager.forget(incident.incident_id)
            return False
        self._count("submitted")
        return True

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    def _delay(self, attempt: int, result: PageResult) -> float:
        if result.retry_after is not None:
            return min(result.retry_after, self.max_retry_after_seconds)
        cap = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        with self._lock:
            return cap * self._random.uniform(0.5, 1.0)

    def _deliver(self, pager: Pager, incident: Incident) -> None:
        what = f"{incident.status.value} of incident {incident.incident_id} ({incident.function})"
        result = PageResult(ok=False)
        for attempt in range(1, self.max_attempts + 1):
            if self._abort.is_set():
                self._count("dropped")
                return
            try:
                result = pager.send(incident)
            except Exception as exc:  # a pager bug must not kill its lane
                log.exception("%s pager failed on %s", pager.name, what)
                result = PageResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
            if result.ok:
                self._count("delivered")
                return
            if not result.retry:
                self._count("failed")
                log.error("%s refused the %s: HTTP %s %s; not retried", pager.name, what,
                          result.status, result.detail[:BODY_LOGGED])
                return
            if attempt == self.max_attempts:
                break
            delay = self._delay(attempt, result)
            log.warning("%s: %s failed (%s); retry %d/%d in %.1f s", pager.name, what,
                        result.detail or f"HTTP {result.status}", attempt,
                        self.max_attempts - 1, delay)
            self._count("retried")
            if self._abort.wait(delay):
                self._count("dropped")
                return
        self._count("failed")
        log.error("%s: gave up on the %s after %d attempts: %s", pager.name, what,
                  self.max_attempts, result.detail or f"HTTP {result.status}")


class _Lane:
    """One pager's queue and thread."""

    def __init__(self, dispatcher: PageDispatcher, pager: Pager, size: int) -> None:
        self.dispatcher = dispatcher
        self.pager = pager
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, size))
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"governor-pager-{pager.name}",
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # full: the lane stops once it is empty
            self.queue.put_nowait(_STOP)

    def _run(self) -> None:
        d = self.dispatcher
        every = d.refresh_seconds if d.refresh_seconds > 0 else math.inf
        next_refresh = time.monotonic() + every
        while True:
            wait = max(0.0, next_refresh - time.monotonic())
            if self._stopping.is_set():
                wait = min(wait, 0.5)
            try:
                item = self.queue.get(timeout=None if math.isinf(wait) else wait)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                item = None
            if item is _STOP:
                if self.queue.empty():
                    return
                continue
            if isinstance(item, Incident):
                if d._abort.is_set():
                    d._count("dropped")
                else:
                    d._deliver(self.pager, item)
                if self._stopping.is_set() and self.queue.empty():
                    return
            if time.monotonic() >= next_refresh and not self._stopping.is_set():
                next_refresh = time.monotonic() + every
                self._refresh()

    def _refresh(self) -> None:
        try:
            result = self.pager.refresh()
        except Exception:  # a pager bug must not kill its lane
            log.exception("%s pager refresh failed", self.pager.name)
            return
        if result is not None and not result.ok:
            log.warning("%s: re-sending open alerts failed: %s", self.pager.name,
                        result.detail or f"HTTP {result.status}")


def dispatcher_from_settings(settings: Any) -> PageDispatcher:
    """Pagers from ``GOVERNOR_ALERTMANAGER_URL``, ``GOVERNOR_PAGERDUTY_ROUTING_KEY`` (+
    ``_URL``) and ``GOVERNOR_PAGER_FILE``; none configured: a dispatcher with no pagers.
    Links back to the worker are absolute, from ``GOVERNOR_PUBLIC_URL``."""
    timeout = float(getattr(settings, "pager_timeout_seconds", 10.0))
    refresh = float(settings.pager_refresh_seconds)
    pagers: list[Pager] = []
    if settings.alertmanager_url:
        pagers.append(AlertmanagerPager(
            settings.alertmanager_url, timeout=timeout,
            incidents_url=f"{settings.public_base}/incidents",
            lease_seconds=LEASE_REFRESHES * refresh))
    if settings.pagerduty_url and not settings.pagerduty_routing_key:
        raise SettingsError("GOVERNOR_PAGERDUTY_URL is set but GOVERNOR_PAGERDUTY_ROUTING_KEY "
                            "is not: set the integration key of the PagerDuty service")
    if settings.pagerduty_routing_key:
        pagers.append(PagerDutyPager(settings.pagerduty_routing_key,
                                     settings.pagerduty_url or PAGERDUTY_EVENTS_URL,
                                     timeout=timeout, client_url=settings.public_base))
    if settings.pager_file:
        pagers.append(FilePager(settings.pager_file))
    return PageDispatcher(
        pagers, queue_size=int(getattr(settings, "pager_queue_size", 1000)),
        max_attempts=int(getattr(settings, "pager_max_attempts", 5)),
        refresh_seconds=refresh)
