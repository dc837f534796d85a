"""A worker that was down while functions kept running: the backlog lands in the windows
it belongs to (event time), so steady traffic is no spike; a runaway is still enforced."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import agents
from streams.ops.query import query_endpoint
from tests.integration.conftest import (
    AgentFactory,
    WorkerStack,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.integration


class Traffic:
    """Calls ``handler`` at ``rate`` per second in a thread until stopped."""

    def __init__(self, handler: Callable[[], object], rate: float) -> None:
        self.rate = rate
        self.calls = self.refused = 0
        self._handler = handler
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._handler()
            except agents.FunctionBlocked:
                self.refused += 1
            self.calls += 1
            self._stop.wait(1 / self.rate)

    @contextmanager
    def running(self) -> Iterator[Traffic]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


def _count(stack: WorkerStack, sql: str) -> int:
    return int(query_endpoint(stack.query_url, sql).rows[0][0])


def test_a_steady_function_is_not_flagged_for_the_backlog_of_a_worker_outage(
        broker: str, prefix: str, tmp_path: Path, agent_for: AgentFactory) -> None:
    runtime = agent_for(broker, prefix)
    name = f"steady-{uuid.uuid4().hex[:6]}"
    handler = agents.govern(function=name)(lambda: "ok")
    with Traffic(handler, 20).running() as traffic:
        first = start_worker(broker, prefix, tmp_path)
        time.sleep(8)  # a baseline: 1 s windows, 3 to warm up
        stop_worker(first)
        time.sleep(20)  # the functions run on; their telemetry waits in Kafka
        second = start_worker(broker, prefix, tmp_path)
        time.sleep(6)
    agents.flush(5)
    try:
        calls = traffic.calls
        wait_for(lambda: _count(second, f"SELECT count() FROM cost_events FINAL "
                                        f"WHERE function = '{name}'") == calls, 20)
        time.sleep(3)  # the last windows close and are decided
        # no alarm: the shape detector's info reports (the traffic's end is a drop) are
        # the analysts' view, never paged or enforced
        assert _count(second, f"SELECT count() FROM anomalies WHERE function = '{name}' "
                              "AND severity != 'info'") == 0
        assert _count(second, f"SELECT count() FROM verdicts WHERE function = '{name}'") == 0
        assert traffic.refused == 0 and runtime.verdicts.current(name) is None
    finally:
        stop_worker(second)


def test_a_runaway_during_the_outage_is_enforced_after_the_restart(
        broker: str, prefix: str, tmp_path: Path, agent_for: AgentFactory) -> None:
    runtime = agent_for(broker, prefix)
    name = f"runaway-{uuid.uuid4().hex[:6]}"
    handler = agents.govern(function=name)(lambda: "ok")
    with Traffic(handler, 20).running() as traffic:
        first = start_worker(broker, prefix, tmp_path)
        time.sleep(8)
        stop_worker(first)
        time.sleep(5)
        traffic.rate = 400  # the loop starts while no worker watches
        second = start_worker(broker, prefix, tmp_path)
        try:
            verdict = wait_for(lambda: runtime.verdicts.current(name), 30)
            assert verdict.action.value in ("throttle", "isolate")
            wait_for(lambda: traffic.refused > 0, 10)
        finally:
            stop_worker(second)
