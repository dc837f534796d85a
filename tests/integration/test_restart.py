"""A restarted worker resumes every function's baseline instead of warming up again."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import agents
from tests.integration.conftest import AgentFactory, start_worker, stop_worker, wait_for

pytestmark = pytest.mark.integration


def test_a_restarted_worker_flags_a_burst_without_a_new_warm_up(
        broker: str, prefix: str, tmp_path: Path, agent_for: AgentFactory) -> None:
    runtime = agent_for(broker, prefix)
    name = f"steady-{uuid.uuid4().hex[:6]}"

    @agents.govern(function=name)
    def handler() -> str:
        return "ok"

    def run_at(rate: float, seconds: float) -> int:
        refused, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                handler()
            except agents.FunctionThrottled:
                refused += 1
            time.sleep(1 / rate)
        return refused

    first = start_worker(broker, prefix, tmp_path)
    try:
        assert run_at(20, 7) == 0  # the baseline: ~20 calls/s for 7 one-second windows
        agents.flush(5)
        time.sleep(2)  # the last windows close and their state is published
    finally:
        stop_worker(first)
    second = start_worker(broker, prefix, tmp_path)
    try:
        # A burst right away: without the restored baseline the new worker would take
        # it as the first windows of history and say nothing.
        wait_for(lambda: run_at(400, 1), timeout_s=15)
        verdict = runtime.verdicts.current(name)
        assert verdict is not None and verdict.action.value == "throttle"
    finally:
        stop_worker(second)
