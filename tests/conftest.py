"""Fixtures shared by every tier."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's one embedded ClickHouse data dir (chDB opens one path per process)."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def clickhouse(chdb_dir: Path) -> Iterator[Any]:
    """A real ClickHouse engine client on a fresh database of its own."""
    import clickhouse_connect

    from streams.storage.clickhouse import connect

    name = f"t_{uuid.uuid4().hex[:10]}"
    connect(f"chdb://{chdb_dir}").command(f"CREATE DATABASE {name}")
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_dir}", database=name)
    yield client
    client.command(f"DROP DATABASE {name}")
