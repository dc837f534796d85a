"""Page delivery against a real HTTP receiver on loopback."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from schemas import Action, Incident, IncidentStatus, Severity, Verdict, decode
from streams.errors import SettingsError
from streams.paging.dispatch import PageDispatcher, dispatcher_from_settings
from streams.paging.incidents import IncidentTracker, PageRules, is_paged
from streams.paging.transports import AlertmanagerPager, FilePager, PagerDutyPager
from streams.settings import Settings

S = 1_000_000_000
T0 = 1_700_000_000 * S
KEY = "0123456789abcdef0123456789abcdef"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers from ``script`` first, then ``default``."""

    url: str
    requests: list[Request] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str], bytes]] = field(default_factory=deque)
    default: int = 202

    def fail(self, status: int, times: int = 1, body: bytes = b"",
             headers: dict[str, str] | None = None) -> None:
        for _ in range(times):
            self.script.append((status, headers or {}, body))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Request(self.path, dict(self.headers), body,
                                          time.monotonic()))
            status, headers, reply = (state.script.popleft() if state.script
                                      else (state.default, {}, b'{"status":"success"}'))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            return None

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _incidents() -> tuple[Incident, Incident]:
    """An open and the resolve of the same episode, as the tracker makes them."""
    t = IncidentTracker(PageRules(runbook_url="https://wiki.example/governor"))
    throttle = Verdict(function="checkout", action=Action.THROTTLE, rate_rps=3, sequence=1,
                       expires_at_unix_nano=T0, reason="throttled to 3 rps: cost/s 22x")
    release = Verdict(function="checkout", action=Action.RELEASE, sequence=2,
                      expires_at_unix_nano=T0, reason="released after throttled")
    [opened] = t.on_verdict(throttle, None, "payments", T0)
    [resolved] = t.on_verdict(release, None, "payments", T0 + 300 * S)
    return opened, resolved


def _dispatcher(*pagers: object, **options: object) -> PageDispatcher:
    options = {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05, **options}
    return PageDispatcher(list(pagers), **options)  # type: ignore[arg-type]


def _rfc3339(value: str) -> datetime:
    assert value.endswith("Z")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_alertmanager_receives_v2_alerts_then_the_resolve(receiver: Receiver) -> None:
    opened, resolved = _incidents()
    with _dispatcher(AlertmanagerPager(receiver.url, incidents_url="http://governor/incidents/"
                                       )) as d:
        assert d.submit(opened) and d.submit(resolved)
        _wait(lambda: d.stats.delivered == 2)
    first, second = receiver.requests
    assert first.path == second.path == "/api/v2/alerts"
    assert first.headers["Content-Type"] == "application/json"
    [alert] = first.json()
    assert alert["labels"] == {"alertname": "GovernorIncident", "function": "checkout",
                               "team": "payments", "incident_id": opened.incident_id}
    assert alert["annotations"]["severity"] == "warning"
    assert all(isinstance(v, str) and v for v in alert["labels"].values())
    assert alert["annotations"]["summary"] == opened.title
    assert alert["annotations"]["description"] == opened.summary
    assert alert["annotations"]["runbook_url"] == "https://wiki.example/governor#cost-anomaly"
    assert _rfc3339(alert["startsAt"]).timestamp() == T0 / S
    assert "endsAt" not in alert
    assert alert["generatorURL"] == f"http://governor/incidents/{opened.incident_id}"
    [end] = second.json()
    assert end["labels"] == alert["labels"]  # same identity: Alertmanager resolves it
    assert _rfc3339(end["endsAt"]).timestamp() == T0 / S + 300


def test_alertmanager_open_alerts_are_re_sent_until_resolved(receiver: Receiver) -> None:
    opened, resolved = _incidents()
    with _dispatcher(AlertmanagerPager(receiver.url + "/api/v2/alerts"),
                     refresh_seconds=0.1) as d:
        d.submit(opened)
        _wait(lambda: len(receiver.requests) >= 3)
        d.submit(resolved)
        _wait(lambda: d.stats.delivered == 2)
        count = len(receiver.requests)
        time.sleep(0.3)
    assert len(receiver.requests) == count  # nothing open: nothing re-sent
    assert receiver.requests[1].json() == receiver.requests[0].json()


def test_alertmanager_open_alerts_end_a_lease_ahead_renewed_on_every_refresh(
        receiver: Receiver) -> None:
    """An open alert's endsAt is the lease ahead of each post: re-asserting it renews
    it, and a worker that stops asserting lets it end."""
    opened, resolved = _incidents()
    now = [T0 + 10 * S]
    pager = AlertmanagerPager(receiver.url, lease_seconds=180, clock=lambda: now[0])
    assert pager.send(opened).ok
    now[0] += 60 * S
    assert pager.refresh() is not None
    assert pager.send(resolved).ok
    first, renewed, end = (r.json() for r in receiver.requests)
    assert _rfc3339(first[0]["endsAt"]).timestamp() == T0 / S + 10 + 180
    assert _rfc3339(renewed[0]["endsAt"]).timestamp() == T0 / S + 70 + 180
    assert _rfc3339(end[0]["endsAt"]).timestamp() == T0 / S + 300  # the resolve time


def test_pagerduty_trigger_then_resolve_with_the_same_dedup_key(receiver: Receiver) -> None:
    opened, resolved = _incidents()
    url = receiver.url + "/v2/enqueue"
    with _dispatcher(PagerDutyPager(KEY, url, client_url="http://governor")) as d:
        d.submit(opened)
        d.submit(resolved)
        _wait(lambda: d.stats.delivered == 2)
    trigger, resolve = (r.json() for r in receiver.requests)
    assert isinstance(trigger, dict) and isinstance(resolve, dict)
    assert receiver.requests[0].path == "/v2/enqueue"
    assert trigger["routing_key"] == KEY and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == resolve["dedup_key"] == opened.incident_id
    payload = trigger["payload"]
    assert payload["summary"] == opened.title and len(payload["summary"]) <= 1024
    assert payload["source"] == payload["component"] == "checkout"
    assert payload["severity"] in ("critical", "error", "warning", "info")
    assert payload["group"] == "payments" and payload["class"] == "cost-anomaly"
    assert payload["custom_details"]["actions"] == opened.actions
    _rfc3339(payload["timestamp"])
    assert trigger["links"] == [{"href": opened.runbook_url, "text": "Runbook"}]
    assert resolve == {"routing_key": KEY, "event_action": "resolve",
                       "dedup_key": opened.incident_id}


def test_retries_on_500_then_succeeds(receiver: Receiver) -> None:
    receiver.fail(500, times=2, body=b"upstream down")
    opened, _ = _incidents()
    with _dispatcher(PagerDutyPager(KEY, receiver.url)) as d:
        d.submit(opened)
        _wait(lambda: d.stats.delivered == 1)
    assert len(receiver.requests) == 3 and d.stats.retried == 2 and d.stats.failed == 0
    assert len({r.body for r in receiver.requests}) == 1


def test_429_waits_for_retry_after(receiver: Receiver) -> None:
    receiver.fail(429, headers={"Retry-After": "1"})
    opened, _ = _incidents()
    with _dispatcher(PagerDutyPager(KEY, receiver.url), backoff_seconds=0.001) as d:
        d.submit(opened)
        _wait(lambda: d.stats.delivered == 1)
    first, second = receiver.requests
    assert second.at - first.at >= 0.9  # the header, not the 1 ms backoff


def test_400_is_not_retried_and_the_body_is_logged(receiver: Receiver,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    receiver.fail(400, body=b'{"status":"invalid event","errors":["bad routing_key"]}')
    opened, _ = _incidents()
    with caplog.at_level(logging.ERROR, "governor.pager"), \
            _dispatcher(PagerDutyPager(KEY, receiver.url)) as d:
        d.submit(opened)
        _wait(lambda: d.stats.failed == 1)
    assert len(receiver.requests) == 1 and d.stats.retried == 0
    assert "HTTP 400" in caplog.text and "bad routing_key" in caplog.text


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_receiver_down_gives_up_after_n_attempts_without_blocking(
        caplog: pytest.LogCaptureFixture) -> None:
    opened, resolved = _incidents()
    with caplog.at_level(logging.WARNING, "governor.pager"):
        d = _dispatcher(AlertmanagerPager(_closed_port()), max_attempts=3)
        started = time.monotonic()
        assert d.submit(opened) and d.submit(resolved)
        assert time.monotonic() - started < 0.05
        _wait(lambda: d.stats.failed == 2)
        assert d.close(timeout=1)
    assert d.stats.retried == 4 and d.stats.delivered == 0
    assert "gave up on the open of incident" in caplog.text and "after 3 attempts" in caplog.text


def test_close_abandons_what_it_cannot_deliver_in_time() -> None:
    opened, resolved = _incidents()
    d = PageDispatcher([AlertmanagerPager(_closed_port())], max_attempts=10,
                       backoff_seconds=30, max_backoff_seconds=30)
    d.submit(opened)
    d.submit(resolved)
    started = time.monotonic()
    assert d.close(timeout=0.2) is False
    assert time.monotonic() - started < 2
    _wait(lambda: d.stats.dropped == 2)
    assert not d.submit(opened)  # closed


def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    gate = threading.Event()

    class Stuck(FilePager):
        def send(self, incident: Incident):  # type: ignore[no-untyped-def]
            gate.wait(5)
            return super().send(incident)

    opened, _ = _incidents()
    d = PageDispatcher([Stuck("/dev/null")], queue_size=2)
    results = [d.submit(opened) for _ in range(5)]
    assert results.count(False) >= 2 and d.stats.dropped >= 2
    gate.set()
    assert d.close(timeout=5)


def test_folded_incidents_are_recorded_but_not_paged(receiver: Receiver) -> None:
    t = IncidentTracker(PageRules(pages_per_hour=1))
    events = [e for f in ("a", "b") for e in t.on_verdict(
        Verdict(function=f, action=Action.ISOLATE, sequence=1, expires_at_unix_nano=T0),
        None, "payments", T0)]
    assert [is_paged(e) for e in events] == [True, False, True]  # a, b folded, summary
    with _dispatcher(PagerDutyPager(KEY, receiver.url)) as d:
        assert [d.submit(e) for e in events] == [True, False, True]
        _wait(lambda: d.stats.delivered == 2)
    assert d.stats.skipped == 1
    assert [r.json()["payload"]["source"] for r in receiver.requests] == ["a", "*"]


def test_file_pager_writes_json_lines(tmp_path: Path) -> None:
    opened, resolved = _incidents()
    path = tmp_path / "pages.jsonl"
    with _dispatcher(FilePager(path)) as d:
        d.submit(opened)
        d.submit(resolved)
    lines = path.read_bytes().splitlines()
    assert [decode(line, Incident) for line in lines] == [opened, resolved]


def test_console_pager_prints_one_line_per_page(capsys: pytest.CaptureFixture[str]) -> None:
    opened, resolved = _incidents()
    pager = FilePager("-")
    assert pager.send(opened).ok and pager.send(resolved).ok
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("PAGE OPEN") and "checkout: cost/s 22x, throttled to 3 rps" in first
    assert "team payments" in first and opened.incident_id in first
    assert second.startswith("PAGE RESOLVED") and "after 5m00s" in second


def test_dispatcher_from_settings(tmp_path: Path) -> None:
    assert dispatcher_from_settings(Settings()).pagers == []
    d = dispatcher_from_settings(Settings(
        alertmanager_url="http://am:9093", pagerduty_routing_key=KEY,
        pager_file=str(tmp_path / "p.jsonl")))
    assert [p.name for p in d.pagers] == ["alertmanager", "pagerduty", "file"]
    am, pd, _ = d.pagers
    assert isinstance(am, AlertmanagerPager) and am.url == "http://am:9093/api/v2/alerts"
    assert am.incidents_url == "http://127.0.0.1:6066/incidents" and am.lease_ns == 180 * S
    assert isinstance(pd, PagerDutyPager)
    assert pd.url == "https://events.pagerduty.com/v2/enqueue"
    d.close(timeout=1)
    with pytest.raises(SettingsError, match="ROUTING_KEY"):
        dispatcher_from_settings(Settings(pagerduty_url="http://pd/v2/enqueue"))


def test_end_to_end_tracker_to_pagerduty(receiver: Receiver) -> None:
    """What the worker does: every incident event to the dispatcher, in order."""
    t = IncidentTracker(PageRules(runbook_url="https://wiki.example/governor"))
    verdicts = [
        Verdict(function="checkout", action=Action.THROTTLE, rate_rps=3, sequence=1,
                expires_at_unix_nano=T0),
        Verdict(function="checkout", action=Action.THROTTLE, rate_rps=3, sequence=2,
                expires_at_unix_nano=T0),  # a re-issue: nothing new to page
        Verdict(function="checkout", action=Action.ISOLATE, sequence=3,
                expires_at_unix_nano=T0),
        Verdict(function="checkout", action=Action.RELEASE, sequence=4,
                expires_at_unix_nano=T0),
    ]
    with _dispatcher(PagerDutyPager(KEY, receiver.url)) as d:
        for i, verdict in enumerate(verdicts):
            for incident in t.on_verdict(verdict, None, "payments", T0 + i * S):
                d.submit(incident)
        _wait(lambda: d.stats.delivered == 3)
    bodies = [r.json() for r in receiver.requests]
    assert [b["event_action"] for b in bodies] == ["trigger", "trigger", "resolve"]
    assert len({b["dedup_key"] for b in bodies}) == 1
    assert bodies[1]["payload"]["severity"] == Severity.CRITICAL.value
    assert IncidentStatus.RESOLVED.value == "resolved"


def test_an_incident_handed_over_is_no_longer_re_asserted_here(receiver: Receiver) -> None:
    opened, _ = _incidents()
    pager = AlertmanagerPager(receiver.url)
    with PageDispatcher([pager], refresh_seconds=0) as d:
        assert pager.send(opened).ok
        assert pager.refresh() is not None
        d.forget([opened.incident_id])
        assert pager.refresh() is None


def test_a_dropped_resolve_stops_the_alert_being_re_sent(receiver: Receiver) -> None:
    opened, resolved = _incidents()
    pager = AlertmanagerPager(receiver.url + "/api/v2/alerts")
    assert pager.send(opened).ok
    assert pager.refresh() is not None  # open: re-asserted
    gate, taken = threading.Event(), threading.Event()
    send = pager.send

    def stuck(incident: Incident) -> Any:
        taken.set()
        gate.wait(5)
        return send(incident)

    pager.send = stuck  # type: ignore[method-assign]
    d = PageDispatcher([pager], queue_size=1, refresh_seconds=0)
    d.submit(opened)
    assert taken.wait(5)  # taken by the lane, which blocks
    assert d.submit(opened)  # fills the queue
    assert not d.submit(resolved)  # dropped: the alert must not be re-asserted forever
    assert pager.refresh() is None
    gate.set()
    d.close(timeout=5)
