"""The cluster form of the migrations: derived from the single-server ones, and every
statement parsed by the engine's own parser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from streams.cli import main
from streams.storage.clickhouse import connect, load_migrations
from streams.storage.cluster import cluster_migrations


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = connect(f"chdb://{tmp_path_factory.mktemp('cluster')}")
    yield client
    client.close()


def _statements(script: str) -> list[str]:
    body = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    return [s.strip() for s in re.split(r";\s*\n", body) if s.strip()]


def test_every_cluster_statement_parses(engine: Any) -> None:
    statements = _statements(cluster_migrations("prod"))
    for sql in statements:
        formatted = engine.query("SELECT formatQuerySingleLine({sql:String})",
                                 parameters={"sql": sql}).result_rows[0][0]
        assert formatted, sql


def test_each_table_is_replicated_locally_and_distributed_by_function() -> None:
    script = cluster_migrations("prod")
    tables = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \(",
                            "\n".join(m.sql for m in load_migrations())))
    for table in tables:
        assert re.search(rf"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER 'prod' \(",
                         script), table
        assert re.search(rf"{table} ON CLUSTER 'prod' AS {table}_local ENGINE = Distributed"
                         rf"\('prod', currentDatabase\(\), {table}_local, cityHash64", script)
    assert "cityHash64(function)" in script and "ENGINE = ReplacingMergeTree" not in script
    assert "FROM otel_traces_local" in script  # views read the local tables
    assert "ALTER TABLE anomalies_local ON CLUSTER 'prod' ADD COLUMN" in script
    for migration in load_migrations():  # workers find every migration applied
        assert f"({migration.version}, '{migration.name}', '{migration.checksum}')" in script


def test_the_cli_prints_it_and_refuses_a_bad_cluster_name(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["schema", "--cluster", "prod"]) == 0
    assert capsys.readouterr().out == cluster_migrations("prod")
    assert main(["schema", "--cluster", "x'; DROP"]) == 2
    assert "cluster name" in capsys.readouterr().err
    assert main(["schema"]) == 0
    assert "ENGINE = ReplacingMergeTree" in capsys.readouterr().out
