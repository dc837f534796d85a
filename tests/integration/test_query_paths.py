"""``governor query`` answers alike whether the running worker's endpoint ran the query
or the engine was opened by the command itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import WorkerStack

pytestmark = pytest.mark.integration

SQL = ("SELECT toDateTime64('2026-03-01 12:30:05.25', 9, 'UTC') AS t, "
       "toDateTime('2026-03-01 12:30:05', 'Europe/Berlin') AS berlin, "
       "CAST(NULL, 'Nullable(String)') AS n, map('a', 1) AS m, [1.5, nan] AS a, "
       "toDecimal64(1.25, 2) AS dec, true AS b, {who:String} AS who, {n:UInt8} + 1 AS n1, "
       "repeat('x', 120) AS wide")
PARAMS = ["--param", "who=o'brien; DROP TABLE cost_events", "--param", "n=41"]


def _query(data_dir: Path, env: dict[str, str], *argv: str, stdin: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", "--data-dir", str(data_dir),
                           "query", *argv], env=env, input=stdin, capture_output=True,
                          text=True, timeout=60)


def _body(table: str) -> list[str]:
    """A table's lines without its caption (rows and the time taken differ)."""
    return [line for line in table.splitlines() if " rows, " not in line]


def test_the_endpoint_and_the_engine_here_print_the_same(worker: WorkerStack,
                                                         tmp_path: Path) -> None:
    endpoint = worker.env()
    alone = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    for argv in (["--format", "json"], ["--format", "csv"], []):
        via_worker = _query(worker.data_dir, endpoint, SQL, *PARAMS, *argv)
        here = _query(tmp_path, alone, "-", *PARAMS, *argv, stdin=SQL)  # no worker there
        assert via_worker.returncode == 0, via_worker.stderr
        assert here.returncode == 0, here.stderr
        assert _body(via_worker.stdout) == _body(here.stdout), argv
    [row] = orjson.loads(_query(worker.data_dir, endpoint, SQL, *PARAMS, "--format",
                                "json").stdout)
    assert {k: v for k, v in row.items() if k != "wide"} == {
        "t": "2026-03-01T12:30:05.250000Z", "berlin": "2026-03-01T11:30:05Z", "n": None,
        "m": {"a": 1}, "a": [1.5, "nan"], "dec": "1.25", "b": True,
        "who": "o'brien; DROP TABLE cost_events", "n1": 42}
    table = _query(worker.data_dir, endpoint, SQL, *PARAMS).stdout
    assert any("x" * 120 in line and "NULL" in line for line in table.splitlines())


def test_the_endpoint_runs_a_shipped_query_with_its_parameter(worker: WorkerStack) -> None:
    run = _query(worker.data_dir, worker.env(), "--file", "what_happened_to_function",
                 "--param", "function=nobody", "--format", "json")
    assert run.returncode == 0, run.stderr
    assert orjson.loads(run.stdout) == []
    run = _query(worker.data_dir, worker.env(), "--file", "what_happened_to_function")
    assert run.returncode == 2
    assert "needs a value for {function}: governor query --param function=VALUE" in run.stderr
    run = _query(worker.data_dir, worker.env(), "SELECT 1", "--param", "x=1")
    assert run.returncode == 2 and "no {x:Type} placeholder" in run.stderr
    run = _query(worker.data_dir, worker.env(), "SELECT {f:String}; DROP TABLE cost_events",
                 "--param", "f=1")
    assert run.returncode == 2 and "one statement per query" in run.stderr
