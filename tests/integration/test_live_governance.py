"""A running worker applies live thresholds and reloads its policy bundle, no restart."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from opentelemetry import trace

import agents
from schemas import Action
from streams.control.commands import set_thresholds
from streams.settings import Settings
from tests.integration.conftest import (
    VERDICT_KEY,
    AgentFactory,
    WorkerStack,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_threshold_set_live_drives_a_policy_verdict(worker: WorkerStack,
                                                      agent_for: AgentFactory) -> None:
    name = f"exporter-{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap=worker.bootstrap, topic_prefix=worker.prefix,
                        data_dir=worker.data_dir, verdict_key=VERDICT_KEY)
    [change] = set_thresholds(settings, name, {"egress_allow": "api.stripe.com"},
                              actor="test", reason="only the payment provider")
    assert (change.old, change.new) == ("", '"api.stripe.com"')
    runtime = agent_for(worker.bootstrap, worker.prefix)

    @agents.govern(function=name, team="payments")
    def handler(event: dict[str, str], context: object) -> str:
        trace.get_current_span().set_attribute("governor.egress.hosts", event["host"])
        return "sent"

    def isolated() -> bool:
        handler({"host": "dump.example.org"}, None)
        verdict = runtime.verdicts.current(name)
        return verdict is not None and verdict.action is Action.ISOLATE

    wait_for(isolated, timeout_s=30, interval_s=0.3)
    verdict = runtime.verdicts.current(name)
    assert verdict is not None and verdict.egress_allow == ["api.stripe.com"]
    assert "egress.allow_list" in verdict.reason and "dump.example.org" in verdict.reason
    assert worker.health()["thresholds_synced"] is True


def test_a_bad_policy_push_keeps_the_last_good_bundle(broker: str, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(Settings().policy_dir, policies)
    stack = start_worker(broker, f"p{uuid.uuid4().hex[:10]}", tmp_path,
                         {"GOVERNOR_POLICY_DIR": str(policies)})
    try:
        good = stack.health()["policy_bundle"]
        (policies / "broken.rego").write_text("package governor.broken\n\nrule := {\n")
        error = wait_for(lambda: stack.health()["policy_error"], timeout_s=15)
        assert "broken.rego:" in str(error)
        assert stack.health()["policy_bundle"] == good  # still enforcing the last good one
        (policies / "broken.rego").unlink()
        (policies / "budget.rego").write_text(
            (policies / "budget.rego").read_text().replace("warn_fraction := 0.8",
                                                           "warn_fraction := 0.9"))
        wait_for(lambda: stack.health()["policy_bundle"] not in (good, None), timeout_s=15)
        assert stack.health()["policy_error"] is None
        assert stack.process.poll() is None
    finally:
        stop_worker(stack)
