"""``governor bench throughput`` end to end on tiny sizes: embedded broker, real worker."""

from __future__ import annotations

import re

import pytest

from streams.bench.throughput import make_events, time_detectors
from streams.cli import main
from streams.settings import Settings


@pytest.mark.timeout(60)
def test_bench_throughput_runs_a_real_worker_and_prints_the_report(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVERNOR_KAFKA_BOOTSTRAP", raising=False)  # the embedded broker

    assert main(["bench", "throughput", "--events", "2000", "--functions", "50"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"throughput: [1-9]\d* events/s per worker", lines[-1]), lines[-1]
    report = "\n".join(lines)
    assert "(embedded Tansu)" in lines[0]
    assert "2,000 cost events, 50 functions" in report
    assert re.search(r"^rows written / dead letters +2,000 / 0$", report, re.M), report
    for figure in ("events/s per worker process", "detector per event", "worker RSS"):
        assert re.search(rf"^{figure} +\d", report, re.M), figure
    rss = re.search(r"^worker RSS +([\d,]+) MB", report, re.M)
    assert rss and int(rss[1].replace(",", "")) > 50  # a Python + Faust + chDB process


@pytest.mark.timeout(120)
def test_bench_throughput_shares_the_partitions_among_several_workers(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVERNOR_KAFKA_BOOTSTRAP", raising=False)

    assert main(["bench", "throughput", "--events", "3000", "--functions", "60",
                 "--workers", "2"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert "2 worker processes" in lines[0]
    assert re.fullmatch(r"throughput: [1-9]\d* events/s per worker \([1-9]\d* in all\)",
                        lines[-1]), lines[-1]
    report = "\n".join(lines)
    assert re.search(r"^rows written / dead letters +3,000 / 0$", report, re.M), report
    each = re.search(r"each consumed ([\d,]+), ([\d,]+)$", report, re.M)
    assert each and all(int(n.replace(",", "")) > 0 for n in each.groups())  # both worked


@pytest.mark.timeout(300)
def test_bench_throughput_measures_ingest_beside_heavy_analyst_queries(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVERNOR_KAFKA_BOOTSTRAP", raising=False)

    assert main(["bench", "throughput", "--events", "20000", "--functions", "50",
                 "--heavy-query", "--pairs", "2"]) == 0

    out = capsys.readouterr().out
    ratio = re.search(r"^ingest with heavy queries / without: (\d+\.\d\d) \((\d+) queries; "
                      r"median of 2 pairs run in turn", out, re.M)
    assert ratio and float(ratio[1]) > 0, out[-2000:]
    assert len(re.findall(r"^pair \d: [\d,]+ / [\d,]+ events/s = \d+\.\d\d$", out, re.M)) == 2
    assert re.search(r"^analyst queries meanwhile +\d+ heavy queries", out, re.M)
    assert len(re.findall(r"^rows written / dead letters +20,000 / 0$", out, re.M)) == 4


def test_detector_timing_covers_the_asked_windows_on_warm_detectors() -> None:
    cost = time_detectors(Settings(), functions=20, windows=50, events=1_000)

    assert cost.windows_timed >= 50 and cost.windows_timed % 20 == 0  # rounds of 1 per function
    assert cost.events_timed == 1_000
    assert cost.us_per_window > 0 and cost.fast_path_us_per_event > 0


def test_bench_events_are_valid_and_spread_round_robin() -> None:
    events = list(make_events(10, 3))

    assert [e.function for e in events[:4]] == ["bench-fn-00000", "bench-fn-00001",
                                                "bench-fn-00002", "bench-fn-00000"]
    assert len({e.invocation_id for e in events}) == 10
    assert all(e.cost_usd > 0 and e.duration_ms > 0 for e in events)
