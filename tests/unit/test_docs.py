"""The documentation names only tables and variables that exist.

The runbook once sent on-call to ``governor query`` on ``spans`` and ``invocations``,
tables that never existed, and named page-rule variables nothing read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import agents._settings
from infra import MIGRATIONS_DIR
from streams.settings import env_names
from streams.storage.clickhouse import MIGRATIONS_TABLE

ROOT = Path(__file__).parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "policies" / "README.md",
               ROOT / "benchmarks" / "README.md"])
NAME = r"[a-z_][a-z0-9_]*"


def tables() -> set[str]:
    """Every table and view the migrations create, and the migrations' own record."""
    sql = "\n".join(p.read_text() for p in MIGRATIONS_DIR.glob("*.sql"))
    return {*re.findall(rf"CREATE (?:TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS ({NAME})",
                        sql), MIGRATIONS_TABLE}


def variables() -> set[str]:
    """Every ``GOVERNOR_*`` variable the workers and the agent read."""
    agent_doc = agents._settings.__doc__ or ""
    return {*env_names(), *re.findall(r"^(GOVERNOR_[A-Z0-9_]+)\s", agent_doc, re.MULTILINE)}


def _code(text: str) -> list[str]:
    """The fenced blocks and inline code spans of a Markdown text."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text,
                                                flags=re.MULTILINE | re.DOTALL))
    return [*fenced, *inline]


def tables_named(text: str) -> set[str]:
    """What a Markdown text presents as a ClickHouse table: what SQL in its code reads
    (``FROM x``, ``JOIN x``), ``table `x```, ```x`` and ``y`` tables``, ``governor
    query`` on ``x``, and the table column of a table headed "ClickHouse table"."""
    found: set[str] = set()
    for code in _code(text):
        found |= set(re.findall(rf"\b(?:FROM|JOIN)[ \t]+({NAME})\b(?!\s*\(|\.|\s+import\b)", code,
                                re.IGNORECASE))  # not a table function, nor Python
    found |= set(re.findall(rf"\btables?\s+`({NAME})`", text))
    for run in re.findall(rf"((?:`{NAME}`(?:,\s*|\s+and\s+|\s+or\s+)?)+)\s+tables?\b", text):
        found |= set(re.findall(rf"`({NAME})`", run))
    found |= set(re.findall(rf"`governor query`\s+on\s+`({NAME})`", text))
    for header, body in re.findall(r"^(\|.*ClickHouse table.*\|)\n\|[-| ]+\|\n((?:\|.*\|\n)+)",
                                   text, re.MULTILINE):
        column = [c.strip() for c in header.strip("|").split("|")].index(
            next(c.strip() for c in header.strip("|").split("|") if "ClickHouse table" in c))
        for row in body.splitlines():
            found |= set(re.findall(rf"`({NAME})`", row.strip("|").split("|")[column]))
    return {name for name in found if name not in ("system", "numbers")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_table_named_exists(doc: Path) -> None:
    unknown = tables_named(doc.read_text()) - tables()
    assert not unknown, f"{doc.name} names tables no migration creates: {sorted(unknown)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_variable_named_exists(doc: Path) -> None:
    named = set(re.findall(r"\bGOVERNOR_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text()))
    unknown = named - variables()
    assert not unknown, f"{doc.name} names variables nothing reads: {sorted(unknown)}"


def test_the_checks_find_what_they_look_for() -> None:
    """Each way a document names a table is found, so the checks above can fail."""
    text = ("Run `governor query` on `spans`; the `anomalies` and `verdicts` tables;\n"
            "table `feedback`; `SELECT * FROM invocations JOIN costs USING (id)`;\n"
            "```sql\nSELECT 1 FROM numbers(3), otel\n```\n\n"
            "| topic | ClickHouse table | what |\n| --- | --- | --- |\n"
            "| `spans` | `otel_traces` (layout) | x |\n| `dlq` | — | y |\n")
    assert tables_named(text) == {"spans", "anomalies", "verdicts", "feedback", "invocations",
                                  "costs", "otel_traces"}
    assert {"otel_traces", "cost_events", "incidents", "governor_migrations"} <= tables()
    assert {"GOVERNOR_KAFKA_BOOTSTRAP", "GOVERNOR_FUNCTION_KEY", "GOVERNOR_QUERY_TOKEN"} \
        <= variables()
