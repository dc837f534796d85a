"""Delivering incident pages: Alertmanager, PagerDuty, a file or the console.

A :class:`Pager` makes one delivery attempt and returns a :class:`PageResult`; it never
raises. A :class:`PageDispatcher` owns the retries: one bounded queue and one daemon
thread per pager, so :meth:`PageDispatcher.submit` never blocks the stream and a slow
or dead receiver delays no other. Connection errors, 5xx and 429 are retried with
exponential backoff and jitter (``Retry-After`` honoured, capped); any other 4xx is
not retried and is logged with the response body; after ``max_attempts`` the
dispatcher gives up, logs an error and counts it (:class:`DispatchStats`).

>>> from schemas import Incident, IncidentStatus
>>> page = Incident(function="checkout", incident_id="1f2e3d4c5b6a7988",
...                 status=IncidentStatus.OPEN, title="checkout: cost 22× baseline, "
...                 "throttled to 3 rps", team="payments", opened_at_unix_nano=0)
>>> AlertmanagerPager("http://am:9093").alert(page)["labels"]["incident_id"]
'1f2e3d4c5b6a7988'
>>> PagerDutyPager("k" * 32).event(page)["dedup_key"]
'1f2e3d4c5b6a7988'
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import logging
import math
import queue
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from schemas import Incident, IncidentStatus, Severity, encode
from streams.errors import SettingsError
from streams.paging.incidents import incident_kind, is_paged

__all__ = [
    "PAGERDUTY_EVENTS_URL",
    "AlertmanagerPager",
    "DispatchStats",
    "FilePager",
    "PageDispatcher",
    "PageResult",
    "Pager",
    "PagerDutyPager",
    "dispatcher_from_settings",
    "post_json",
]

log = logging.getLogger("governor.pager")

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
"""The public PagerDuty Events API v2 endpoint."""
_USER_AGENT = "governor-pager/1"
_BODY_LOGGED = 2000


@dataclass(frozen=True, slots=True)
class PageResult:
    """The outcome of one delivery attempt."""

    ok: bool
    retry: bool = False
    """Worth trying again (connection error, 5xx, 429)."""
    retry_after: float | None = None
    """Seconds the receiver asked to wait (``Retry-After``)."""
    status: int = 0
    """HTTP status, 0 when there was no response."""
    detail: str = ""


OK = PageResult(ok=True)


class Pager(ABC):
    """One page destination. :meth:`send` is one attempt and never raises."""

    name: str = "pager"
    idempotent: bool = False
    """Re-sending an incident's current state is harmless (used on resume)."""

    @abstractmethod
    def send(self, incident: Incident) -> PageResult:
        """Deliver one incident event (open, updated or resolved)."""

    def refresh(self) -> PageResult | None:
        """Periodic re-assertion of what is still open; ``None``: nothing to do."""
        return None

    def forget(self, incident_id: str) -> None:  # noqa: B027 (optional hook)
        """Its resolve was dropped: stop re-asserting the incident."""


def post_json(url: str, payload: Any, timeout: float = 10.0) -> PageResult:
    """POST ``payload`` as JSON; classify the response for the retry policy."""
    request = urllib.request.Request(
        url, data=orjson.dumps(payload), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return PageResult(ok=True, status=response.status)
    except urllib.error.HTTPError as exc:
        body = _read_body(exc)
        retry = exc.code == 429 or exc.code >= 500
        return PageResult(ok=False, retry=retry, status=exc.code, detail=body,
                          retry_after=_retry_after(exc.headers.get("Retry-After"))
                          if retry else None)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        return PageResult(ok=False, retry=True, detail=f"{type(exc).__name__}: {exc}")


def _read_body(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read(_BODY_LOGGED).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _rfc3339(ns: int) -> str:
    stamp = datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class AlertmanagerPager(Pager):
    """Alertmanager API v2: ``POST /api/v2/alerts`` with a JSON list of alerts.

    Labels (identity, dedup): ``alertname``, ``function``, ``team`` (when known),
    ``severity``, ``incident_id``. Annotations: ``summary`` (the title),
    ``description`` (the summary), ``runbook_url``, ``driver``, ``actions``.
    ``startsAt`` is the episode start; ``endsAt`` is set on resolve. Alertmanager
    expires alerts that are not re-sent (``resolve_timeout``), so the open ones are
    re-posted on every :meth:`refresh`. ``url`` is the server (the v2 path is added) or
    the full alerts endpoint.
    """

    name = "alertmanager"
    idempotent = True

    def __init__(self, url: str, *, timeout: float = 10.0, generator_url: str = "",
                 alertname: str = "GovernorIncident", max_active: int = 10_000) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.path in ("", "/"):
            url = urllib.parse.urlunsplit(parts._replace(path="/api/v2/alerts"))
        self.url = url
        self.timeout = timeout
        self.generator_url = generator_url
        self.alertname = alertname
        self.max_active = max_active
        self._active: dict[str, dict[str, Any]] = {}
        self._active_lock = threading.Lock()  # the lane's thread vs. a dropped resolve

    def alert(self, incident: Incident) -> dict[str, Any]:
        """The Alertmanager alert for one incident event."""
        labels = {"alertname": self.alertname, "function": incident.function,
                  "team": incident.team, "severity": incident.severity.value,
                  "incident_id": incident.incident_id}
        annotations = {"summary": incident.title, "description": incident.summary,
                       "runbook_url": incident.runbook_url, "driver": incident.driver,
                       "actions": "; ".join(incident.actions)}
        alert: dict[str, Any] = {
            "labels": {k: v for k, v in labels.items() if v},
            "annotations": {k: v for k, v in annotations.items() if v},
            "startsAt": _rfc3339(incident.opened_at_unix_nano or incident.time_unix_nano)}
        if incident.status is IncidentStatus.RESOLVED:
            alert["endsAt"] = _rfc3339(incident.resolved_at_unix_nano
                                       or incident.time_unix_nano)
        if self.generator_url:
            alert["generatorURL"] = self.generator_url
        return alert

    def send(self, incident: Incident) -> PageResult:
        alert = self.alert(incident)
        with self._active_lock:
            if incident.status is IncidentStatus.RESOLVED:
                self._active.pop(incident.incident_id, None)
            elif incident.incident_id in self._active or len(self._active) < self.max_active:
                self._active[incident.incident_id] = alert
        return post_json(self.url, [alert], self.timeout)

    def refresh(self) -> PageResult | None:
        with self._active_lock:
            alerts = list(self._active.values())
        return post_json(self.url, alerts, self.timeout) if alerts else None

    def forget(self, incident_id: str) -> None:
        with self._active_lock:
            self._active.pop(incident_id, None)


_PD_SEVERITY = {Severity.CRITICAL: "critical", Severity.WARNING: "warning",
                Severity.INFO: "info"}


class PagerDutyPager(Pager):
    """PagerDuty Events API v2: ``trigger`` on open and update, ``resolve`` on resolve,
    ``dedup_key`` = the incident id (one PagerDuty alert per episode)."""

    name = "pagerduty"

    def __init__(self, routing_key: str, url: str = PAGERDUTY_EVENTS_URL, *,
                 timeout: float = 10.0, client: str = "Governor", client_url: str = "") -> None:
        self.routing_key = routing_key
        self.url = url or PAGERDUTY_EVENTS_URL
        self.timeout = timeout
        self.client = client
        self.client_url = client_url

    def event(self, incident: Incident) -> dict[str, Any]:
        """The Events API v2 body for one incident event."""
        if incident.status is IncidentStatus.RESOLVED:
            return {"routing_key": self.routing_key, "event_action": "resolve",
                    "dedup_key": incident.incident_id}
        payload: dict[str, Any] = {
            "summary": incident.title[:1024],
            "source": incident.function,
            "severity": _PD_SEVERITY.get(incident.severity, "warning"),
            "timestamp": _rfc3339(incident.time_unix_nano),
            "component": incident.function,
            "class": incident_kind(incident),
            "custom_details": {
                "summary": incident.summary, "driver": incident.driver,
                "cost_impact_usd_per_hour": round(incident.cost_impact_usd_per_hour, 4),
                "actions": incident.actions, "status": incident.status.value,
                "updates": incident.updates, "incident_id": incident.incident_id,
                "opened_at": _rfc3339(incident.opened_at_unix_nano),
                "runbook_url": incident.runbook_url}}
        if incident.team:
            payload["group"] = incident.team
        event: dict[str, Any] = {"routing_key": self.routing_key, "event_action": "trigger",
                                 "dedup_key": incident.incident_id, "payload": payload,
                                 "client": self.client}
        if self.client_url:
            event["client_url"] = self.client_url
        if incident.runbook_url.startswith(("http://", "https://")):
            event["links"] = [{"href": incident.runbook_url, "text": "Runbook"}]
        return event

    def send(self, incident: Incident) -> PageResult:
        return post_json(self.url, self.event(incident), self.timeout)


class FilePager(Pager):
    """One JSON line per incident event appended to ``path``; ``"-"``: a readable
    one-liner on the console (standard output)."""

    name = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.name = "console" if self.path == "-" else "file"

    def send(self, incident: Incident) -> PageResult:
        try:
            if self.path == "-":
                print(one_line(incident), file=sys.stdout, flush=True)
            else:
                with open(self.path, "ab") as f:
                    f.write(encode(incident) + b"\n")
        except (OSError, ValueError) as exc:
            return PageResult(ok=False, retry=True, detail=f"{type(exc).__name__}: {exc}")
        return OK


def one_line(incident: Incident) -> str:
    """A page as one human line, e.g. for the console."""
    parts = [f"PAGE {incident.status.value.upper():8} {incident.severity.value:8} "
             f"{incident.title}"]
    if incident.cost_impact_usd_per_hour > 0:
        parts.append(f"${incident.cost_impact_usd_per_hour:,.2f}/h")
    if incident.team:
        parts.append(f"team {incident.team}")
    if incident.status is IncidentStatus.RESOLVED and incident.opened_at_unix_nano:
        seconds = (incident.resolved_at_unix_nano - incident.opened_at_unix_nano) // 10**9
        parts.append(f"after {seconds // 60}m{seconds % 60:02d}s")
    parts.append(incident.runbook_url)
    parts.append(f"id {incident.incident_id}")
    return " | ".join(p for p in parts if p)


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
                          result.status, result.detail[:_BODY_LOGGED])
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
    ``_URL``) and ``GOVERNOR_PAGER_FILE``; none configured: a dispatcher with no pagers."""
    timeout = float(getattr(settings, "pager_timeout_seconds", 10.0))
    pagers: list[Pager] = []
    if settings.alertmanager_url:
        pagers.append(AlertmanagerPager(settings.alertmanager_url, timeout=timeout))
    if settings.pagerduty_url and not settings.pagerduty_routing_key:
        raise SettingsError("GOVERNOR_PAGERDUTY_URL is set but GOVERNOR_PAGERDUTY_ROUTING_KEY "
                            "is not: set the integration key of the PagerDuty service")
    if settings.pagerduty_routing_key:
        pagers.append(PagerDutyPager(settings.pagerduty_routing_key,
                                     settings.pagerduty_url or PAGERDUTY_EVENTS_URL,
                                     timeout=timeout))
    if settings.pager_file:
        pagers.append(FilePager(settings.pager_file))
    return PageDispatcher(
        pagers, queue_size=int(getattr(settings, "pager_queue_size", 1000)),
        max_attempts=int(getattr(settings, "pager_max_attempts", 5)),
        refresh_seconds=float(getattr(settings, "pager_refresh_seconds", 60.0)))
