"""`governor up`'s console: verdicts and pages as they happen, a quiet status line."""

from __future__ import annotations

import io

from schemas import Action, Incident, IncidentStatus, Verdict
from streams.pipeline.console import PLAIN_EVERY_S, Status, UpConsole

S = 1_000_000_000


def _status(events: int = 0, **kw: int) -> Status:
    fields = {"throttled": 0, "isolated": 0, "incidents": 0, "lag": 0, "dead": 0, **kw}
    return Status(not_ready=None, events=events, **fields)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_a_plain_line_only_when_something_changed_and_seldom() -> None:
    out, clock, current = io.StringIO(), _Clock(), [_status(10)]
    console = UpConsole(lambda: current[0], out, tty=False, clock=clock)
    console.tick()
    clock.now += 1
    console.tick()  # nothing changed
    current[0] = _status(50, throttled=1)
    clock.now += 1
    console.tick()  # changed, but too soon after the last line
    assert out.getvalue().splitlines() == [
        "ready · 10 events (0/s) · 0 throttled, 0 isolated · 0 open incidents · lag 0"]
    clock.now += PLAIN_EVERY_S
    console.tick()
    assert out.getvalue().splitlines()[-1].startswith("ready · 50 events")
    current[0] = Status("the ingest consumer has no partitions yet", 50, 0, 1, 0, 0, 0)
    clock.now += 1
    console.tick()  # readiness changed: at once
    assert out.getvalue().splitlines()[-1].startswith("not ready: the ingest consumer")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_on_a_terminal_the_line_is_redrawn_and_events_print_above_it() -> None:
    out, clock = io.StringIO(), _Clock()
    current = [_status(0)]
    console = UpConsole(lambda: current[0], out, tty=True, clock=clock)
    console.tick()
    clock.now += 2
    current[0] = _status(400, incidents=1, dead=3)
    console.tick()
    assert out.getvalue().endswith(
        "\r\x1b[Kready · 400 events (200/s) · 0 throttled, 0 isolated · 1 open incident · "
        "lag 0 · 3 dead letters")
    console.on_event(Verdict(function="checkout", action=Action.THROTTLE, rate_rps=3,
                             expires_at_unix_nano=9, sequence=1, reason="cost 22x; more"))
    printed, redrawn = out.getvalue().rsplit("\r\x1b[K", 1)[1].split("\n")
    assert printed.split(" ", 1)[1] == "VERDICT THROTTLE checkout to 3 rps | cost 22x"
    assert redrawn.startswith("ready · 400 events")  # the status line, below it
    console.close()
    assert out.getvalue().endswith("\n")


def test_paged_incidents_print_and_folded_ones_do_not() -> None:
    out = io.StringIO()
    console = UpConsole(_status, out, tty=False)
    page = Incident(function="checkout", incident_id="1f2e3d4c5b6a7988",
                    status=IncidentStatus.OPEN, title="checkout: cost 22× baseline",
                    team="payments", opened_at_unix_nano=0)
    console.on_event(page)
    console.on_event(Incident(function="other", incident_id="0" * 16, title="other",
                              status=IncidentStatus.OPEN, folded_into="a" * 16))
    console.on_event(Verdict(function="checkout", action=Action.RELEASE, sequence=2,
                             expires_at_unix_nano=9, issuer="operator:ana"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "PAGE OPEN" in lines[0] and "1f2e3d4c5b6a7988" in lines[0]
    assert lines[1].endswith("VERDICT RELEASE checkout by operator:ana")


def test_a_closed_output_ends_the_printing_not_the_worker() -> None:
    out = io.StringIO()
    console = UpConsole(_status, out, tty=False)
    out.close()
    console.tick()
    console.on_event(Verdict(function="checkout", action=Action.ISOLATE, sequence=1,
                             expires_at_unix_nano=9))
    console.close()  # nothing raised
