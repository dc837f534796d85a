"""Where pages go: Alertmanager, PagerDuty, a file or the console.

A :class:`Pager` makes one delivery attempt and returns a :class:`PageResult`; it never
raises. Retries, queues and backoff are the dispatcher's (:mod:`.dispatch`).

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

import email.utils
import http.client
import logging
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from schemas import Incident, IncidentStatus, Severity, encode
from streams.paging.incidents import incident_kind

log = logging.getLogger("governor.pager")

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
"""The public PagerDuty Events API v2 endpoint."""
_USER_AGENT = "governor-pager/1"
BODY_LOGGED = 2000
"""Characters of a refused response body that are logged."""


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
        return exc.read(BODY_LOGGED).decode("utf-8", "replace")
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

    Labels — the alert's identity, stable for the whole episode: ``alertname``,
    ``function``, ``team`` (when known), ``incident_id``. Severity and kind change as an
    episode escalates, so they are annotations: a label change would be a second alert
    beside the first. Annotations: ``summary`` (the title), ``description`` (the
    summary), ``severity``, ``kind``, ``runbook_url``, ``driver``, ``actions``.
    ``startsAt`` is the episode start. ``endsAt`` is the resolve time on resolve; while
    open it is ``lease_seconds`` ahead (0: unset, Alertmanager's ``resolve_timeout``
    applies), and every :meth:`refresh` re-posts the open alerts with it renewed, so an
    alert stays active exactly as long as a worker keeps asserting it.
    ``generatorURL`` is ``incidents_url/<incident_id>`` (the incident's history on the
    worker) when ``incidents_url`` is set. ``url`` is the server (the v2 path is added)
    or the full alerts endpoint.
    """

    name = "alertmanager"
    idempotent = True

    def __init__(self, url: str, *, timeout: float = 10.0, incidents_url: str = "",
                 alertname: str = "GovernorIncident", max_active: int = 10_000,
                 lease_seconds: float = 0.0, clock: Callable[[], int] = time.time_ns) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.path in ("", "/"):
            url = urllib.parse.urlunsplit(parts._replace(path="/api/v2/alerts"))
        self.url = url
        self.timeout = timeout
        self.incidents_url = incidents_url.rstrip("/")
        self.alertname = alertname
        self.max_active = max_active
        self.lease_ns = int(lease_seconds * 1e9)
        self.clock = clock
        self._active: dict[str, Incident] = {}
        self._active_lock = threading.Lock()  # the lane's thread vs. a dropped resolve

    def alert(self, incident: Incident) -> dict[str, Any]:
        """The Alertmanager alert for one incident event."""
        labels = {"alertname": self.alertname, "function": incident.function,
                  "team": incident.team, "incident_id": incident.incident_id}
        annotations = {"summary": incident.title, "description": incident.summary,
                       "severity": incident.severity.value, "kind": incident.kind,
                       "runbook_url": incident.runbook_url, "driver": incident.driver,
                       "actions": "; ".join(incident.actions)}
        alert: dict[str, Any] = {
            "labels": {k: v for k, v in labels.items() if v},
            "annotations": {k: v for k, v in annotations.items() if v},
            "startsAt": _rfc3339(incident.opened_at_unix_nano or incident.time_unix_nano)}
        if incident.status is IncidentStatus.RESOLVED:
            alert["endsAt"] = _rfc3339(incident.resolved_at_unix_nano
                                       or incident.time_unix_nano)
        elif self.lease_ns > 0:
            alert["endsAt"] = _rfc3339(self.clock() + self.lease_ns)
        if self.incidents_url:
            alert["generatorURL"] = f"{self.incidents_url}/{incident.incident_id}"
        return alert

    def send(self, incident: Incident) -> PageResult:
        with self._active_lock:
            if incident.status is IncidentStatus.RESOLVED:
                self._active.pop(incident.incident_id, None)
            elif incident.incident_id in self._active or len(self._active) < self.max_active:
                self._active[incident.incident_id] = incident
        return post_json(self.url, [self.alert(incident)], self.timeout)

    def refresh(self) -> PageResult | None:
        with self._active_lock:
            open_ = list(self._active.values())
        if not open_:
            return None
        return post_json(self.url, [self.alert(incident) for incident in open_], self.timeout)

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


