"""Event-time windows: a backlog lands where it belongs, late events are told apart,
far-off clocks neither close nor open windows they should not, and bad times are
refused at the edge."""

from __future__ import annotations

from schemas import CostEvent, Span, encode
from streams.decisions.windows import WindowAggregator
from streams.pipeline.decoding import DeadReason, Record, TimeBounds, decode_records

S = 1_000_000_000
W = 10 * S
T0 = 1_800_000_000 * S  # window-aligned


def _calls(start_ns: int, seconds: float, rate: float, function: str = "f",
           cost: float = 0.001) -> list[CostEvent]:
    n = int(seconds * rate)
    return [CostEvent(function=function, invocation_id=f"{start_ns}-{i}", cost_usd=cost,
                      time_unix_nano=start_ns + int(i * S / rate)) for i in range(n)]


def test_a_backlog_delivered_at_once_lands_in_the_windows_it_belongs_to() -> None:
    agg = WindowAggregator(W)
    now = T0 + 65 * S  # a worker back after 60 s: the whole backlog arrives now
    assert all(agg.add(e) for e in _calls(T0, 60, 2.0))
    due = agg.close_due(now, caught_up=False)
    assert [w.attempts for _, w in due] == [20] * 5  # steady 2 rps, not one 6x window
    assert [w.start_ns for _, w in due] == [T0 + k * W for k in range(5)]
    # the last window waits while the backlog may still hold its calls ...
    assert agg.close_due(now + S, caught_up=False) == []
    [(_, last)] = agg.close_due(now + S, caught_up=True)  # ... and closes once caught up
    assert (last.start_ns, last.attempts) == (T0 + 5 * W, 20)


def test_a_late_event_is_told_apart_and_changes_no_closed_window() -> None:
    agg = WindowAggregator(W)
    for e in _calls(T0, 12, 1.0):
        assert agg.add(e)
    [(_, first)] = agg.close_due(T0 + 12 * S)
    assert first.attempts == 10
    late = CostEvent(function="f", invocation_id="late", time_unix_nano=T0 + 3 * S)
    assert agg.add(late) is False
    assert first.attempts == 10


def test_events_within_the_lateness_still_count() -> None:
    agg = WindowAggregator(W, lateness_ns=2 * S)
    for e in _calls(T0, 10, 1.0):
        agg.add(e)
    assert agg.close_due(T0 + 11 * S) == []  # 1 s after its end: within the lateness
    straggler = CostEvent(function="f", invocation_id="s", time_unix_nano=T0 + 9 * S)
    assert agg.add(straggler)  # another instance's, delivered late
    [(_, window)] = agg.close_due(T0 + 12 * S)
    assert window.attempts == 11


def test_a_function_absent_from_a_backlog_waits_for_it_then_gets_empty_windows() -> None:
    agg = WindowAggregator(W)
    agg.add(CostEvent(function="f", invocation_id="1", time_unix_nano=T0 + S))
    assert agg.close_due(T0 + 30 * S, caught_up=False) == []  # the backlog may hold more
    assert [w.attempts for _, w in agg.close_due(T0 + 30 * S)] == [1, 0]


def test_an_event_dated_ahead_closes_nothing_before_its_time() -> None:
    agg = WindowAggregator(W)
    agg.add(CostEvent(function="f", invocation_id="1", time_unix_nano=T0 + S))
    agg.add(CostEvent(function="f", invocation_id="2", time_unix_nano=T0 + 200 * S))
    closed = agg.close_due(T0 + 12 * S, caught_up=False)
    assert [w.start_ns for _, w in closed] == [T0]  # not the 19 windows up to T0 + 200 s
    assert agg.add(CostEvent(function="f", invocation_id="3", time_unix_nano=T0 + 15 * S))


def test_a_long_gap_in_event_time_resumes_at_the_next_events() -> None:
    agg = WindowAggregator(W, idle_windows=3)
    agg.add(CostEvent(function="f", invocation_id="1", time_unix_nano=T0 + S))
    agg.add(CostEvent(function="f", invocation_id="2", time_unix_nano=T0 + 3600 * S))
    closed = agg.close_due(T0 + 3602 * S, caught_up=False)
    assert [w.attempts for _, w in closed] == [1, 0, 0, 0]  # idle_windows empties, not 360
    [(_, resumed)] = agg.close_due(T0 + 3620 * S)
    assert (resumed.start_ns, resumed.attempts) == (T0 + 3600 * S, 1)


def test_events_dated_far_from_now_are_dead_letters_with_the_reason() -> None:
    now = T0
    bounds = TimeBounds(max_age_ns=86_400 * S, max_lead_ns=300 * S)
    events = [CostEvent(function="f", invocation_id=str(i), time_unix_nano=t)
              for i, t in enumerate((now, now + 3600 * S, now - 2 * 86_400 * S))]
    records = [Record("governor.costs", 0, i, b"f", encode(e)) for i, e in enumerate(events)]
    decoded = decode_records(records, CostEvent, bounds, now)
    assert [e.invocation_id for e in decoded.good] == ["0"] and decoded.flagged == []
    ahead, old = decoded.dead
    assert "3,600 s ahead" in ahead.reason and "GOVERNOR_MAX_EVENT_LEAD_SECONDS" in ahead.reason
    assert "172,800 s old" in old.reason and "GOVERNOR_MAX_EVENT_AGE_SECONDS" in old.reason
    assert decoded.reasons == {DeadReason.TOO_NEW: 1, DeadReason.TOO_OLD: 1}
    assert decode_records(records, CostEvent).dead == []  # no bounds: times are not judged


def test_a_span_dated_now_but_started_or_ended_far_from_it_is_a_dead_letter() -> None:
    """A span is stored by its start day: one dated now but started in 1973 (or ending in
    2100) would open history partitions at will."""
    bounds = TimeBounds(max_age_ns=86_400 * S, max_lead_ns=300 * S)
    spans = [Span(function="f", trace_id="a" * 32, span_id=f"{i:016x}", name="n",
                  time_unix_nano=T0, start_time_unix_nano=start, end_time_unix_nano=end)
             for i, (start, end) in enumerate(((T0 - S, T0), (10**17, 10**17 + 5),
                                               (T0, 4_102_444_800 * S)))]
    records = [Record("governor.spans", 0, i, b"f", encode(s)) for i, s in enumerate(spans)]
    decoded = decode_records(records, Span, bounds, T0)
    assert [s.span_id for s in decoded.good] == [f"{0:016x}"]
    started, ended = decoded.dead
    assert started.reason.startswith("start_time_unix_nano 100000000000000000 is ")
    assert "s old" in started.reason
    assert ended.reason.startswith("end_time_unix_nano") and "s ahead" in ended.reason
    assert decoded.reasons == {DeadReason.TOO_OLD: 1, DeadReason.TOO_NEW: 1}


def test_a_watched_function_has_its_windows_closed_without_events() -> None:
    agg = WindowAggregator(W)
    agg.watch("f", T0 + 3 * S)
    assert agg.open_windows == 0  # no events: nothing held
    closed = agg.close_due(T0 + 3 * W + W // 2)
    assert [(f, w.start_ns, w.invocations) for f, w in closed] == [
        ("f", T0, 0), ("f", T0 + W, 0), ("f", T0 + 2 * W, 0)]
    agg.add(CostEvent(function="f", invocation_id="x", time_unix_nano=T0 + 3 * W + 1))
    agg.watch("f", T0 + 3 * W + 2)  # already watched: nothing changes
    assert agg.open_windows == 1
