"""Every ClickHouse panel of the provisioned Grafana dashboards runs on the history the
demo leaves, with "All" functions and with each function selected, its macros and
variables expanded as Grafana and the ClickHouse plugin would (``tests/grafana.py``
says how). Each query runs in a process of its own, since chDB opens one data path per
process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.grafana import ALL
from tests.integration.conftest import DemoRun

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPEND = ROOT / "infra" / "grafana" / "dashboards" / "governor-spend.json"
TIME_SERIES = {p["title"] for p in orjson.loads(SPEND.read_bytes())["panels"]
               if p["type"] == "timeseries"}


@pytest.fixture(scope="module")
def report(demo: DemoRun) -> dict[str, Any]:
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    run = subprocess.run([sys.executable, "-m", "tests.grafana", str(demo.data_dir / "chdb"),
                          str(SPEND)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    board: dict[str, Any] = orjson.loads(run.stdout)["governor-spend"]
    return board


def test_the_function_variable_lists_the_demo_fleet(report: dict[str, Any]) -> None:
    assert len(report["functions"]) == 6
    assert {"webhook-relay", "llm-summarise", "invoice-pdf"} <= set(report["functions"])


def test_every_panel_shows_the_demo_with_all_functions(report: dict[str, Any]) -> None:
    """The demo had spend, anomalies, verdicts, policy hits, incidents and a threshold
    change: no panel is empty."""
    for title, runs in report["panels"].items():
        [everything] = [r for r in runs if r["selected"] == ALL]
        assert everything["rows"] >= 1, title
        if title in TIME_SERIES:  # the first column is the time Grafana plots against
            assert everything["first_is_time"], title


def test_every_panel_runs_for_each_function(report: dict[str, Any]) -> None:
    for title, runs in report["panels"].items():
        assert len(runs) == 1 + len(report["functions"]), title
    webhook = {title: next(r for r in runs if r["selected"] == ["webhook-relay"])
               for title, runs in report["panels"].items()}
    # the runaway loop: its spend, its verdicts and its incident, and nobody else's
    assert webhook["Top spenders"]["rows"] == 1
    assert webhook["Latest verdicts"]["rows"] >= 2  # throttled, released
    assert webhook["Incidents"]["rows"] == 1
