"""A real worker's /metrics, /healthz and /readyz: Prometheus exposition checked by
``promtool check metrics`` (Debian's ``prometheus`` package)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Producer

from schemas import CostEvent, encode
from streams.kafka import ensure_topics
from tests.integration.conftest import WorkerStack, start_worker, stop_worker, wait_for
from tests.unit.test_monitoring import METRICS

pytestmark = pytest.mark.integration

NAMES = ("governor_events_in_total", "governor_events_out_total", "governor_dlq_total",
         "governor_consumer_lag", "governor_decisions_total", "governor_verdicts_total",
         "governor_pages_total", "governor_sink_write_seconds", "governor_sink_errors_total",
         "governor_detector_seconds", "governor_window_backlog", "governor_ready",
         "governor_up_seconds", "governor_worker_events_total", "governor_pager_events_total",
         "process_resident_memory_bytes")


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


@pytest.fixture(scope="module")
def metered(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerStack]:
    """A worker of its own (its counters are this module's alone), logging JSON."""
    prefix = f"m{uuid.uuid4().hex[:10]}"
    ensure_topics(broker, prefix)
    stack = start_worker(broker, prefix, tmp_path_factory.mktemp("metrics"),
                         {"GOVERNOR_LOG_FORMAT": "json"})
    yield stack
    stop_worker(stack)


def _sample(text: str, metric: str, **labels: str) -> float:
    """The sum of the samples ``metric{labels}`` (labels may be a subset); 0 if none."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != metric:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


def test_metrics_are_valid_prometheus_exposition(metered: WorkerStack) -> None:
    costs, now = f"{metered.prefix}.costs", time.time_ns()
    producer = Producer({"bootstrap.servers": metered.bootstrap})
    function = f"metered-{uuid.uuid4().hex[:6]}"
    for n in range(20):
        event = CostEvent(function=function, invocation_id=f"i{n}", time_unix_nano=now,
                          cost_usd=0.0001, duration_ms=5.0)
        producer.produce(costs, key=function.encode(), value=encode(event))
    producer.produce(costs, key=b"broken", value=b"{not json")
    anomalies = f"{metered.prefix}.anomalies"  # a topic Faust's agents consume
    producer.produce(anomalies, key=b"broken", value=b"{not json")
    producer.flush(10)

    def scraped() -> str | None:
        status, body, content_type = _get(metered.query_url + "/metrics")
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        text = body.decode()
        done = (_sample(text, "governor_events_in_total", topic=costs) >= 20
                and _sample(text, "governor_dlq_total", topic=costs, reason="malformed") >= 1
                and _sample(text, "governor_dlq_total", topic=anomalies,
                            reason="malformed") >= 1
                and _sample(text, "governor_sink_write_seconds_count",
                            table="cost_events") >= 1)
        return text if done else None

    text = wait_for(scraped, timeout_s=60)
    for name in NAMES:
        assert re.search(rf"^# TYPE {name} ", text, re.M), name
    assert _sample(text, "governor_ready") == 1
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    for series in METRICS - {"up"}:  # what the dashboards and alert rules name
        assert series.removesuffix("_bucket") in families, series
    for topic in (costs, anomalies):  # the batch ingest's and Faust's
        assert re.search(rf'^governor_consumer_lag{{partition="\d+",topic="{re.escape(topic)}"}} ',
                         text, re.M), topic
    assert _sample(text, "governor_worker_events_total", name="in_cost") >= 20

    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install -y prometheus"
    checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                             capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_liveness_and_readiness_probes(metered: WorkerStack) -> None:
    status, body, _ = _get(metered.query_url + "/healthz")
    assert status == 200 and orjson.loads(body) == {"live": True}
    status, body, _ = _get(metered.query_url + "/readyz")
    assert status == 200 and orjson.loads(body) == {"ready": True, "reason": ""}
    assert metered.health()["ready"] is True  # /health keeps its shape


def test_json_logs_are_one_object_a_line(metered: WorkerStack) -> None:
    lines = (metered.data_dir / "worker.log").read_text().splitlines()
    logged = [orjson.loads(line) for line in lines if line.startswith("{")]
    assert logged, "no JSON log line"
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in logged)
    assert any(entry["logger"].startswith("governor.") for entry in logged)
