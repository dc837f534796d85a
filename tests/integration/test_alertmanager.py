"""Pages against a real Alertmanager (Debian's ``prometheus-alertmanager``, installed by
``.ci/run``): an episode that escalates from warning to critical stays one alert, and
its resolve ends it."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import Action, Anomaly, Severity, Verdict
from streams.ops.broker import free_port
from streams.paging.incidents import IncidentTracker, PageRules
from streams.paging.transports import AlertmanagerPager
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CONFIG = """\
route:
  receiver: "null"
  group_wait: 1h
receivers:
  - name: "null"
"""
S = 1_000_000_000


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if BINARY is None:
        pytest.skip("no Alertmanager binary: apt-get install prometheus-alertmanager "
                    "(.ci/run does)")
    home = tmp_path_factory.mktemp("alertmanager")
    (home / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    process = subprocess.Popen(
        [BINARY, f"--config.file={home / 'alertmanager.yml'}", f"--storage.path={home}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=(home / "log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url, process, home), 30)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _ready(url: str, process: subprocess.Popen[bytes], home: Path) -> bool:
    assert process.poll() is None, (home / "log").read_text()[-2000:]
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _alerts(url: str, function: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts?active=true&silenced=true&"
                                f"inhibited=true&unprocessed=true", timeout=5) as response:
        alerts: list[dict[str, Any]] = orjson.loads(response.read())
    return [a for a in alerts if a["labels"].get("function") == function]


def test_an_escalating_episode_is_one_alert_until_it_resolves(alertmanager: str) -> None:
    function = f"checkout-{time.time_ns()}"
    now = time.time_ns()
    tracker = IncidentTracker(PageRules(runbook_url="https://wiki.example/governor"))
    pager = AlertmanagerPager(alertmanager)
    warning = Anomaly(function=function, detector="robust_zscore", score=9.0, threshold=6.0,
                      severity=Severity.WARNING, features={"cost_per_s": 0.003},
                      baseline={"cost_per_s": 0.001}, cost_impact_usd_per_hour=2.0)
    throttle = Verdict(function=function, action=Action.THROTTLE, rate_rps=3, sequence=1,
                       expires_at_unix_nano=now + 300 * S)
    [opened] = tracker.on_verdict(throttle, warning, "payments", now)
    assert opened.severity is Severity.WARNING
    assert pager.send(opened).ok
    isolate = Verdict(function=function, action=Action.ISOLATE, sequence=2,
                      expires_at_unix_nano=now + 300 * S)
    [escalated] = tracker.on_verdict(isolate, None, "payments", now + 10 * S)
    assert escalated.severity is Severity.CRITICAL
    assert escalated.incident_id == opened.incident_id
    assert pager.send(escalated).ok
    [alert] = wait_for(lambda: _alerts(alertmanager, function), 10)
    assert alert["annotations"]["severity"] == "critical"  # the same alert, escalated
    assert alert["labels"]["incident_id"] == opened.incident_id
    assert alert["status"]["state"] == "active"
    release = Verdict(function=function, action=Action.RELEASE, sequence=3,
                      expires_at_unix_nano=now + 300 * S, reason="released after isolated")
    [resolved] = tracker.on_verdict(release, None, "payments", time.time_ns())
    assert pager.send(resolved).ok
    wait_for(lambda: not _alerts(alertmanager, function), 10)  # ended: no longer active
