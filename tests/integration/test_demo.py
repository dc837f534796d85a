"""The main job: ``governor demo`` closes the loop on its own embedded stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration


def test_demo_enforces_every_incident_and_leaves_history(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    governor = [sys.executable, "-m", "streams", "--data-dir", str(tmp_path / "state")]
    run = subprocess.run([*governor, "demo", "--warmup", "16", "--incident", "14"], env=env,
                         capture_output=True, text=True, timeout=300)
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    match = re.fullmatch(
        r"loop closed: (\d+) incidents, (\d+) verdicts enforced, (\d+) pages resolved, "
        r"max (\d+\.\d)s to enforce", lines[-1])
    assert match, lines[-1]
    incidents, verdicts, resolved, worst = (int(match[1]), int(match[2]), int(match[3]),
                                            float(match[4]))
    assert incidents == 3 and verdicts >= 5  # two anomalies: verdict + release; the budget
    assert resolved >= 2 and worst > 0  # enforced after the incidents began
    assert "THROTTLE" in run.stdout or "ISOLATE" in run.stdout
    assert "RELEASE" in run.stdout
    assert "throttled by budget.function_hour" in run.stdout  # the policy-driven verdict

    query = subprocess.run(
        [*governor, "query", "SELECT count() AS spans, uniqExact(ServiceName) AS functions "
         "FROM otel_traces", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=60)
    assert query.returncode == 0, query.stderr
    [row] = orjson.loads(query.stdout)
    assert row["functions"] == 6 and row["spans"] > 1000
    history = subprocess.run(
        [*governor, "query", "SELECT (SELECT countIf(policy = 'budget.function_hour') FROM "
         "policy_decisions) AS budget, (SELECT countIf(status = 'resolved') FROM incidents) AS "
         "resolved, (SELECT count() FROM threshold_changes) AS changes", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=60)
    assert history.returncode == 0, history.stderr
    [row] = orjson.loads(history.stdout)
    assert row["budget"] >= 1 and row["resolved"] >= 2 and row["changes"] == 1
