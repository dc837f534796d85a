"""Deployment assets: ClickHouse migrations and analyst queries, the topic spec,
container files. Installed with the package (package data), so they are found
without a checkout."""

from pathlib import Path

ROOT = Path(__file__).parent
MIGRATIONS_DIR = ROOT / "clickhouse" / "migrations"
QUERIES_DIR = ROOT / "clickhouse" / "queries"
TOPICS_FILE = ROOT / "kafka" / "topics.toml"
