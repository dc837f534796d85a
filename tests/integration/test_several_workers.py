"""Two workers in one group: one is killed with SIGKILL, the other takes its functions
over warm — their verdicts and open incidents with them, no second page, every row
stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

import agents
from schemas import partition_for
from streams.ops.query import query_endpoint
from tests.integration.conftest import (
    AgentFactory,
    WorkerStack,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

FUNCTIONS = 8


def _pages(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def _partitions(stack: WorkerStack) -> list[int]:
    found = stack.health().get("cost_partitions")
    return found if isinstance(found, list) else []


def _event_ids(rows: Any) -> list[str]:
    return [str(row[0]) for row in rows]


def _read_store(data_dir: Path, sql: str) -> list[list[Any]]:
    """Rows of ``sql`` on a stopped worker's own store, read by ``governor query`` in a
    process of its own (an embedded engine opens one path per process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    run = subprocess.run([sys.executable, "-m", "streams", "--data-dir", str(data_dir),
                          "query", sql, "--format", "json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return [list(row.values()) for row in orjson.loads(run.stdout)]


def test_a_killed_worker_s_functions_move_warm_with_their_incidents_and_no_row_is_lost(
        broker: str, tmp_path: Path, agent_for: AgentFactory) -> None:
    prefix = f"m{uuid.uuid4().hex[:10]}"
    env = {"GOVERNOR_APP_ID": f"governor-{prefix}", "GOVERNOR_HOLD_SECONDS": "600"}
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    a = start_worker(broker, prefix, dirs[0], {**env, "GOVERNOR_PAGER_FILE": str(dirs[0] / "p")})
    b = start_worker(broker, prefix, dirs[1], {**env, "GOVERNOR_PAGER_FILE": str(dirs[1] / "p")})
    try:
        def split() -> tuple[list[int], list[int]] | None:
            """Each worker's share, once both have one and they no longer overlap (in a
            rebalance one may still report its share from before)."""
            mine_a, mine_b = _partitions(a), _partitions(b)
            return (mine_a, mine_b) if mine_a and mine_b and not {*mine_a} & {*mine_b} else None

        mine_a, mine_b = wait_for(split, timeout_s=30)
        total = len(mine_a) + len(mine_b)
        names = [f"mw-{prefix}-{i}" for i in range(4 * FUNCTIONS)]
        of_a = [n for n in names if partition_for(n, total) in mine_a][:FUNCTIONS // 2]
        of_b = [n for n in names if partition_for(n, total) not in mine_a][:FUNCTIONS // 2]
        assert len(of_a) == len(of_b) == FUNCTIONS // 2, "the names do not spread"
        runtime = agent_for(broker, prefix)
        handlers = {name: agents.govern(function=name, memory_mb=256)(lambda e, c: "ok")
                    for name in of_a + of_b}

        calls = [0]

        def run(seconds: float, rate: float = 10.0, hot: str = "", factor: int = 1) -> int:
            """Every function at ``rate`` calls/s, ``hot`` at ``factor`` times that;
            returns the calls refused."""
            refused, end = 0, time.monotonic() + seconds
            while time.monotonic() < end:
                for name, handler in handlers.items():
                    for _ in range(factor if name == hot else 1):
                        calls[0] += 1
                        try:
                            handler(None, None)
                        except agents.FunctionThrottled:
                            refused += 1
                time.sleep(1 / rate)
            return refused

        run(8)  # every function learned, on its own worker
        hot = of_a[0]
        wait_for(lambda: run(1, hot=hot, factor=20), timeout_s=25)  # a throttles it
        [opened] = wait_for(lambda: [p for p in _pages(dirs[0] / "p")
                                     if p["function"] == hot and p["status"] == "open"],
                            timeout_s=15)
        run(3, hot=hot, factor=20)  # a snapshot of the throttled, paged state is written
        os.kill(a.process.pid, signal.SIGKILL)
        a.process.wait(10)

        wait_for(lambda: len(_partitions(b)) == total, timeout_s=40)  # b took a's share
        run(6, hot=hot, factor=20)  # traffic goes on, the runaway too
        assert runtime.verdicts.current(hot) is not None
        counters = b.health()["counters"]
        assert isinstance(counters, dict)
        assert counters.get("snapshots_restored", 0) >= len(of_a)
        second = [p for p in _pages(dirs[1] / "p") if p["function"] == hot]
        assert all(p["incident_id"] == opened["incident_id"] for p in second)
        assert not [p for p in second if p["status"] == "open" and
                    p["incident_id"] != opened["incident_id"]]
        learning = query_endpoint(b.query_url, f"""
            SELECT count() FROM anomalies
            WHERE function IN ({", ".join(f"'{n}'" for n in of_a)}) AND held = 'learning'""")
        assert learning.rows == [[0]]  # taken over warm: nothing is learned again

        assert agents.flush(10)
        assert not [k for k in runtime.stats.snapshot() if k.startswith("dropped_")]
        where = f"WHERE startsWith(function, 'mw-{prefix}-')"
        of_killed = _event_ids(_read_store(
            dirs[0], f"SELECT event_id FROM cost_events FINAL {where}"))  # a being dead

        def stored() -> list[str]:
            return _event_ids(query_endpoint(
                b.query_url, f"SELECT event_id FROM cost_events FINAL {where}").rows)

        # every call's cost event is in one of the two stores; a batch the killed worker
        # stored but had not committed is stored again by the other (one row in a shared
        # ClickHouse: same event_id, FINAL), never twice in one
        wait_for(lambda: len(set(of_killed) | set(stored())) >= calls[0], timeout_s=30)
        for found in (of_killed, stored()):
            assert len(found) == len(set(found))
        assert len(set(of_killed) | set(stored())) == calls[0]
    finally:
        for stack in (a, b):
            if stack.process.poll() is None:
                stop_worker(stack)
