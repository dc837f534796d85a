"""Deployment assets: ClickHouse migrations, the topic spec, container files."""

from pathlib import Path

ROOT = Path(__file__).parent
MIGRATIONS_DIR = ROOT / "clickhouse" / "migrations"
TOPICS_FILE = ROOT / "kafka" / "topics.toml"
