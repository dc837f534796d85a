"""Pages that stay true, against a real worker and a real Alertmanager: an open
incident is re-asserted when the next worker starts (its ``endsAt`` lease renewed),
carries absolute links from ``GOVERNOR_PUBLIC_URL``, and is resolved on release."""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from schemas import Action, CostEvent, encode
from streams.control.commands import publish_verdict
from streams.decisions.snapshots import load_snapshots, unseal
from streams.settings import Settings
from tests.integration.conftest import (
    STATE_KEY,
    VERDICT_KEY,
    alerts_of,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

PUBLIC = "https://governor.example"


def _snapshot_has_incident(broker: str, prefix: str, function: str) -> bool:
    blob = load_snapshots(broker, f"{prefix}.state").get(function)
    return blob is not None and unseal(blob, function, STATE_KEY.encode()).has("incident")


def _history(query_url: str, incident_id: str) -> list[str] | None:
    """The incident's statuses as the worker's ``/incidents/ID`` shows them, once the
    resolve is there."""
    with urllib.request.urlopen(f"{query_url}/incidents/{incident_id}", timeout=5) as page:
        history = orjson.loads(page.read())
    statuses = [row[history["columns"].index("status")] for row in history["rows"]]
    return statuses if statuses[-1:] == ["resolved"] else None


def test_an_open_incident_is_re_asserted_by_the_next_worker_and_resolved_on_release(
        broker: str, prefix: str, tmp_path: Path, alertmanager: str) -> None:
    function = f"pdf-{uuid.uuid4().hex[:6]}"
    env = {"GOVERNOR_ALERTMANAGER_URL": alertmanager, "GOVERNOR_PUBLIC_URL": PUBLIC,
           "GOVERNOR_PAGER_REFRESH_SECONDS": "600"}  # no periodic refresh within the test
    operator = Settings(kafka_bootstrap=broker, topic_prefix=prefix, verdict_key=VERDICT_KEY,
                        data_dir=tmp_path / "operator")
    producer = Producer({"bootstrap.servers": broker})
    first = start_worker(broker, prefix, tmp_path, env)
    try:
        for n in range(5):
            event = CostEvent(function=function, invocation_id=f"i{n}", cost_usd=0.0001,
                              time_unix_nano=time.time_ns())
            producer.produce(f"{prefix}.costs", key=function.encode(), value=encode(event))
        producer.flush(10)
        publish_verdict(operator, function, Action.THROTTLE, 2, 3600, "cost review", "ana")
        [alert] = wait_for(lambda: alerts_of(alertmanager, function), 30)
        assert alert["annotations"]["runbook_url"].startswith(f"{PUBLIC}/docs/runbook.md#")
        incident_id = alert["labels"]["incident_id"]
        assert alert["generatorURL"] == f"{PUBLIC}/incidents/{incident_id}"
        leased_until = alert["endsAt"]
        wait_for(lambda: _snapshot_has_incident(broker, prefix, function), 30)
        with urllib.request.urlopen(f"{first.query_url}/docs/runbook.md", timeout=5) as page:
            assert b"# " in page.read()  # the runbook the default link points at
    finally:
        stop_worker(first)

    second = start_worker(broker, prefix, tmp_path, env)
    try:
        # re-asserted at start, before the function sends anything: the lease is renewed
        [renewed] = wait_for(lambda: [a for a in alerts_of(alertmanager, function)
                                      if a["endsAt"] > leased_until], 30)
        assert renewed["labels"]["incident_id"] == incident_id
        assert renewed["status"]["state"] == "active"
        publish_verdict(operator, function, Action.RELEASE, None, None, "reviewed", "ana")
        wait_for(lambda: not alerts_of(alertmanager, function), 30)  # resolved
        statuses = wait_for(lambda: _history(second.query_url, incident_id), 30)
        assert statuses[0] == "open" and statuses[-1] == "resolved"
    finally:
        stop_worker(second)
