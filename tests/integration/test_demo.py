"""The main job: ``governor demo`` closes the loop on its own embedded stack."""

from __future__ import annotations

import os
import re
import subprocess

import orjson
import pytest

from tests.integration.conftest import DemoRun

pytestmark = pytest.mark.integration


def test_demo_enforces_every_incident_and_leaves_history(demo: DemoRun) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    lines = demo.stdout.strip().splitlines()
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    match = re.fullmatch(
        r"loop closed: (\d+) incidents, (\d+) verdicts enforced, (\d+) pages resolved, "
        r"max (\d+\.\d)s to enforce", lines[-1])
    assert match, demo.stdout[-6000:]
    incidents, verdicts, resolved, worst = (int(match[1]), int(match[2]), int(match[3]),
                                            float(match[4]))
    # two anomalies: verdict + release each, and the budget; enforced after they began
    assert incidents == 3 and verdicts >= 5 and resolved >= 2 and worst > 0, demo.stdout
    assert "THROTTLE" in demo.stdout or "ISOLATE" in demo.stdout
    assert "RELEASE" in demo.stdout
    assert "throttled by budget.function_hour" in demo.stdout  # the policy-driven verdict

    query = subprocess.run(
        [*demo.governor(), "query", "SELECT count() AS spans, uniqExact(ServiceName) AS functions "
         "FROM otel_traces", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=60)
    assert query.returncode == 0, query.stderr
    [row] = orjson.loads(query.stdout)
    assert row["functions"] == 6 and row["spans"] > 1000
    history = subprocess.run(
        [*demo.governor(), "query", "SELECT (SELECT countIf(policy = 'budget.function_hour') FROM "
         "policy_decisions) AS budget, (SELECT countIf(status = 'resolved') FROM incidents) AS "
         "resolved, (SELECT count() FROM threshold_changes) AS changes", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=60)
    assert history.returncode == 0, history.stderr
    [row] = orjson.loads(history.stdout)
    assert row["budget"] >= 1 and row["resolved"] >= 2 and row["changes"] == 1
