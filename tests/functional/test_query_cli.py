"""``governor query`` on the embedded engine opened in this process (no worker): SQL
from the argument, a file, a shipped query's name or stdin; parameters; the formats."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from infra import QUERIES_DIR
from streams.cli import main

Governor = Callable[..., tuple[int, str, str]]
VALUES = ("SELECT toDateTime64('2026-03-01 12:30:05.25', 9, 'UTC') AS t, "
          "CAST(NULL, 'Nullable(String)') AS n, [1, 2] AS a, true AS b")


@pytest.fixture
def governor(chdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> Governor:
    """``governor query …`` → (exit code, stdout, stderr), on the session's engine."""
    monkeypatch.setenv("GOVERNOR_CLICKHOUSE_URL", f"chdb://{chdb_dir}")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--data-dir", str(tmp_path), "query", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_formats_show_times_in_iso_utc_and_null_alike(governor: Governor) -> None:
    code, out, _ = governor("--format", "json", VALUES)
    assert code == 0
    assert orjson.loads(out) == [{"t": "2026-03-01T12:30:05.250000Z", "n": None, "a": [1, 2],
                                  "b": True}]
    code, out, _ = governor("--format", "csv", VALUES)
    assert out.splitlines() == ["t,n,a,b", "2026-03-01T12:30:05.250000Z,,\"[1,2]\",true"]
    code, out, _ = governor(VALUES)
    [row] = [line for line in out.splitlines() if "2026" in line]
    assert [c.strip() for c in row.strip("│ ").split("│")] == [
        "2026-03-01T12:30:05.250000Z", "NULL", "[1,2]", "true"]


def test_a_piped_table_is_not_wrapped_at_80_columns(governor: Governor) -> None:
    wide = "SELECT repeat('x', 150) AS long, 'end' AS last, '[bold]kept[/bold]' AS markup"
    code, out, _ = governor(wide)
    assert code == 0
    [row] = [line for line in out.splitlines() if "xxx" in line]
    assert "x" * 150 in row and "end" in row and "[bold]kept[/bold]" in row


def test_parameters_are_bound_by_the_engine(governor: Governor) -> None:
    code, out, _ = governor(
        "--format", "json", "SELECT {who:String} AS who, {n:UInt8} + 1 AS n",
        "--param", "who=o'brien; DROP TABLE x", "-p", "n=41")
    assert code == 0, out
    assert orjson.loads(out) == [{"who": "o'brien; DROP TABLE x", "n": 42}]
    code, _, err = governor("SELECT {who:String} AS who")
    assert code == 2 and "needs a value for {who}: governor query --param who=VALUE" in err
    code, _, err = governor("SELECT 1", "--param", "who=x")
    assert code == 2 and "no {who:Type} placeholder" in err
    code, _, err = governor("SELECT {who:String}", "--param", "who")
    assert code == 2 and "use NAME=VALUE" in err


def test_sql_from_a_file_or_stdin(governor: Governor, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sql = tmp_path / "mine.sql"
    sql.write_text("-- mine\nSELECT {n:UInt8} * 2 AS twice;\n")
    code, out, _ = governor("--format", "json", "--file", str(sql), "--param", "n=4")
    assert code == 0 and orjson.loads(out) == [{"twice": 8}]
    for argv in (["-"], ["--file", "-"]):
        monkeypatch.setattr("sys.stdin", io.StringIO("SELECT 'from stdin' AS s"))
        code, out, _ = governor("--format", "json", *argv)
        assert code == 0 and orjson.loads(out) == [{"s": "from stdin"}]
    code, _, err = governor("SELECT 1", "--file", str(sql))
    assert code == 2 and "not both" in err


def test_a_shipped_query_is_found_by_name(governor: Governor) -> None:
    code, _, err = governor("--file", "no_such_query")
    assert code == 2
    assert all(p.stem in err for p in QUERIES_DIR.glob("*.sql"))
    # found by name: it runs and asks for its parameter (the engine here has no tables)
    code, _, err = governor("--file", "what_happened_to_function")
    assert code == 2 and ("needs a value for {function}" in err or "UNKNOWN_TABLE" in err)
