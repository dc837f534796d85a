"""The monitoring configuration docker-compose.yml mounts: Prometheus and Alertmanager
files pass their own tools' checks (``promtool``, ``amtool`` from Debian's
``prometheus`` and ``prometheus-alertmanager``, installed by ``.ci/run``), and the
Grafana dashboards and provisioning hang together. Each ClickHouse panel's SQL runs on
the demo's data in ``tests/integration/test_dashboards.py``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.grafana import ALL, CLICKHOUSE, clickhouse_panels, expand

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
DASHBOARDS = sorted((INFRA / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = INFRA / "grafana" / "provisioning" / "datasources" / "governor.yml"
PROMETHEUS = "prometheus"
METRICS = {
    "governor_events_in_total", "governor_events_out_total", "governor_dlq_total",
    "governor_consumer_lag", "governor_decisions_total", "governor_verdicts_total",
    "governor_pages_total", "governor_sink_write_seconds_bucket",
    "governor_sink_errors_total", "governor_detector_seconds_bucket",
    "governor_window_backlog", "governor_ready", "governor_worker_events_total", "up"}
"""What the workers' /metrics exposes (and Prometheus's own ``up``): every series a
panel or rule names must be one of these."""
PANEL_TYPES = {"stat", "timeseries", "table", "piechart", "barchart"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"no {name}: apt-get install prometheus prometheus-alertmanager")
    return path


def _check(argv: list[str]) -> str:
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    listed = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return {str(d["uid"]): d for d in listed}


def test_prometheus_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    """The config names the token file compose mounts at /etc/prometheus/query_token;
    the check runs on a copy that names a token file in a temporary directory."""
    source = (INFRA / "prometheus" / "prometheus.yml").read_text()
    assert "/etc/prometheus/query_token" in source
    token = tmp_path / "query_token"
    token.write_text("t" * 32)
    (tmp_path / "prometheus.yml").write_text(
        source.replace("/etc/prometheus/query_token", str(token)))
    shutil.copy(INFRA / "prometheus" / "rules.yml", tmp_path / "rules.yml")
    out = _check([_tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")])
    assert "SUCCESS: 6 rules found" in out


def test_alertmanager_config_passes_amtool() -> None:
    out = _check([_tool("amtool"), "check-config",
                  str(INFRA / "alertmanager" / "alertmanager.yml")])
    assert "SUCCESS" in out


def test_alerts_name_only_metrics_the_workers_expose() -> None:
    rules = yaml.safe_load((INFRA / "prometheus" / "rules.yml").read_text())
    exprs = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    assert _series(exprs) <= METRICS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path, datasources: dict[str, dict[str, Any]]) -> None:
    board = orjson.loads(path.read_bytes())
    assert board["uid"] == path.stem and board["title"].startswith("Governor: ")
    assert isinstance(board["schemaVersion"], int) and board["panels"]
    for key in ("id", "title"):
        values = [p[key] for p in board["panels"]]
        assert len(values) == len(set(values)), f"panel {key}s are unique"
    variables = {v["name"] for v in board["templating"]["list"]}
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["type"] in PANEL_TYPES and panel["title"] and panel["description"]
        assert panel["datasource"]["uid"] in datasources
        assert panel["datasource"]["type"] == datasources[panel["datasource"]["uid"]]["type"]
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            text = target["rawSql"] if panel["datasource"]["type"] == CLICKHOUSE \
                else target["expr"]
            used = set(re.findall(r"\$\{?(\w+)", text)) - {"__timeFilter", "__timeInterval",
                                                          "__rate_interval"}
            assert used <= variables, f"{panel['title']}: undefined {used - variables}"
            if panel["datasource"]["type"] == CLICKHOUSE:
                assert target["editorType"] == "sql"
                assert target["queryType"] in ("table", "timeSeries")
                assert target["format"] == (0 if target["queryType"] == "timeSeries" else 1)


def test_the_spend_dashboard_covers_spend_anomalies_verdicts_and_incidents() -> None:
    board = orjson.loads((INFRA / "grafana" / "dashboards" / "governor-spend.json").read_bytes())
    tables = {t for _, sql in clickhouse_panels(board)
              for t in re.findall(r"FROM (\w+)", sql)}
    assert {"cost_events", "anomalies", "verdicts", "incidents"} <= tables


def test_worker_panels_are_valid_promql_on_the_workers_metrics(tmp_path: Path) -> None:
    """promtool has no expression check of its own: each panel's expression becomes a
    recording rule (Grafana's ``$__rate_interval`` as 5m, ``$instance`` as ``.*``)."""
    board = orjson.loads((INFRA / "grafana" / "dashboards" / "governor-workers.json")
                         .read_bytes())
    exprs = [t["expr"].replace("$__rate_interval", "5m").replace("$instance", ".*")
             for p in board["panels"] for t in p["targets"]]
    assert _series(exprs) <= METRICS
    assert {"governor_ready", "governor_consumer_lag", "governor_dlq_total",
            "governor_sink_write_seconds_bucket"} <= _series(exprs)
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(rules))
    _check([_tool("promtool"), "check", "rules", str(tmp_path / "panels.yml")])


def test_datasources_reach_the_compose_services(datasources: dict[str, dict[str, Any]]
                                                ) -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    clickhouse = datasources["clickhouse"]
    assert clickhouse["type"] == CLICKHOUSE
    env = services["clickhouse"]["environment"]
    data = clickhouse["jsonData"]
    assert (data["host"], data["port"], data["protocol"]) == ("clickhouse", 8123, "http")
    assert data["username"] == env["CLICKHOUSE_USER"]
    assert clickhouse["secureJsonData"]["password"] == env["CLICKHOUSE_PASSWORD"]
    assert data["defaultDatabase"] == env["CLICKHOUSE_DB"]
    assert datasources[PROMETHEUS]["url"] == "http://prometheus:9090"
    assert PROMETHEUS in services


def test_macros_expand_as_grafana_and_the_plugin_do() -> None:
    sql = ("SELECT $__timeInterval(time) AS t FROM x WHERE $__timeFilter(time) AND "
           "function IN (${function:singlequote}) AND $__interval_s > 0")
    assert expand(sql, 100, 200, 30, {"function": (["a", "o'b"], "'*'")}) == (
        "SELECT toStartOfInterval(toDateTime(time), INTERVAL 30 second) AS t FROM x WHERE "
        "time >= toDateTime(100) AND time <= toDateTime(200) AND "
        "function IN ('a','o\\'b') AND 30 > 0")
    assert expand("f IN (${function:singlequote})", 0, 1, 1,
                  {"function": (ALL, "'*'")}) == "f IN ('*')"
    with pytest.raises(ValueError, match="unexpanded"):
        expand("SELECT $__unknown", 0, 1, 1, {})


def _series(exprs: list[str]) -> set[str]:
    """The metric names PromQL expressions read (not functions, labels or keywords)."""
    names: set[str] = set()
    for expr in exprs:
        expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
        expr = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", expr)  # grouping labels
        expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
        names |= {m for m in re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", expr)}
    return names
