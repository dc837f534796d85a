"""docker-compose.yml stays consistent with the settings the code reads and the files
it mounts. There is no Docker engine on the build machines, so compose itself cannot
run here: the file is parsed as YAML and checked service by service."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import agents._settings
from streams.settings import env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = "infra/docker/Dockerfile"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return loaded


def env_of(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment, given as a mapping or as a list of ``KEY=VALUE``."""
    raw = service.get("environment") or {}
    if isinstance(raw, dict):
        return {str(k): None if v is None else str(v) for k, v in raw.items()}
    pairs = (str(item).partition("=") for item in raw)
    return {key: value if sep else None for key, sep, value in pairs}


def known_names() -> set[str]:
    agent = set(re.findall(r'"(GOVERNOR_[A-Z_]+)"', inspect.getsource(agents._settings)))
    return set(env_names()) | agent


def test_env_of_accepts_mapping_and_list() -> None:
    assert env_of({"environment": {"A": 1, "B": None}}) == {"A": "1", "B": None}
    assert env_of({"environment": ["A=x=y", "B"]}) == {"A": "x=y", "B": None}


def test_the_services_exist(services: dict[str, Any]) -> None:
    assert {"kafka", "clickhouse", "worker", "demo", "prometheus", "alertmanager",
            "grafana"} <= services.keys()


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts of files in the checkout: {target: source}."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) \
            else str(volume).split(":")[:2]
        if source.startswith("."):
            found[target] = source
    return found


def test_every_mounted_file_exists(services: dict[str, Any]) -> None:
    sources = [source for service in services.values() for source in mounts(service).values()]
    assert len(sources) >= 5
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert not missing


def test_prometheus_mounts_its_config_and_rules_and_the_query_token(
        services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    mounted = mounts(prometheus)
    assert mounted["/etc/prometheus/prometheus.yml"] == "./infra/prometheus/prometheus.yml"
    assert mounted["/etc/prometheus/rules.yml"] == "./infra/prometheus/rules.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())
    [worker] = [job for job in config["scrape_configs"] if job["job_name"] == "governor-worker"]
    [token] = prometheus["configs"]
    assert token["target"] == worker["authorization"]["credentials_file"]
    source = yaml.safe_load(COMPOSE.read_text())["configs"][token["source"]]
    assert source["environment"] == "GOVERNOR_QUERY_TOKEN"
    port = env_of(services["worker"])["GOVERNOR_QUERY_PORT"]
    assert worker["static_configs"][0]["targets"] == [f"worker:{port}"]
    [alerting] = config["alerting"]["alertmanagers"]
    assert alerting["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_the_worker_pages_the_compose_alertmanager(services: dict[str, Any]) -> None:
    assert env_of(services["worker"])["GOVERNOR_ALERTMANAGER_URL"] == "http://alertmanager:9093"
    assert mounts(services["alertmanager"])["/etc/alertmanager/alertmanager.yml"] == \
        "./infra/alertmanager/alertmanager.yml"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in \
        services["alertmanager"]["command"]


def test_grafana_has_the_clickhouse_plugin_its_provisioning_and_dashboards(
        services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    assert "grafana-clickhouse-datasource" in env_of(grafana)["GF_INSTALL_PLUGINS"].split(",")
    mounted = mounts(grafana)
    assert mounted["/etc/grafana/provisioning"] == "./infra/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "infra/grafana/provisioning/dashboards/governor.yml").read_text())
    [dashboards] = provider["providers"]
    assert mounted[dashboards["options"]["path"]] == "./infra/grafana/dashboards"
    home = env_of(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] or ""
    assert (ROOT / "infra/grafana/dashboards" / Path(home).name).is_file()


def test_kafka_is_the_apache_image_in_kraft_mode(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    roles = {r.strip() for r in (env_of(kafka)["KAFKA_PROCESS_ROLES"] or "").split(",")}
    assert {"broker", "controller"} <= roles
    assert "zookeeper" not in COMPOSE.read_text().lower()


def test_clickhouse_publishes_http_port(services: dict[str, Any]) -> None:
    ports = services["clickhouse"].get("ports", [])
    targets = {
        str(p["target"]) if isinstance(p, dict) else str(p).split(":")[-1].split("/")[0]
        for p in ports
    }
    assert "8123" in targets


@pytest.mark.parametrize("name", ["worker", "demo"])
def test_governor_services_build_the_project_image(services: dict[str, Any], name: str) -> None:
    build = services[name]["build"]
    assert isinstance(build, dict) and build.get("dockerfile") == DOCKERFILE
    dockerfile = (ROOT / build.get("context", ".") / DOCKERFILE).resolve()
    assert dockerfile.is_file()
    assert '".[streams]"' in dockerfile.read_text()


def test_worker_waits_for_healthy_kafka_and_clickhouse(services: dict[str, Any]) -> None:
    depends = services["worker"]["depends_on"]
    assert isinstance(depends, dict)
    for dep in ("kafka", "clickhouse"):
        assert depends[dep]["condition"] == "service_healthy"


def test_service_healthy_dependencies_define_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dep, spec in depends.items() if isinstance(depends, dict) else ():
            if spec.get("condition") == "service_healthy":
                check = services[dep].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{name} -> {dep}"


def test_every_governor_variable_is_a_known_setting(services: dict[str, Any]) -> None:
    known = known_names()
    assert {"GOVERNOR_KAFKA_BOOTSTRAP", "GOVERNOR_DISABLED", "GOVERNOR_LOG_LEVEL"} <= known
    unknown = {
        f"{name}: {key}"
        for name, service in services.items()
        for key in env_of(service)
        if key.startswith("GOVERNOR_") and key not in known
    }
    assert not unknown


def test_bootstrap_points_at_the_internal_kafka_listener(services: dict[str, Any]) -> None:
    listeners = env_of(services["kafka"])["KAFKA_LISTENERS"] or ""
    ports = {item.rsplit(":", 1)[-1] for item in listeners.split(",")}
    for name in ("worker", "demo"):
        for server in (env_of(services[name])["GOVERNOR_KAFKA_BOOTSTRAP"] or "").split(","):
            host, _, port = server.strip().rpartition(":")
            assert host == "kafka" and port in ports, f"{name}: {server}"


def test_clickhouse_url_matches_the_clickhouse_service(services: dict[str, Any]) -> None:
    ch = env_of(services["clickhouse"])
    for name in ("worker", "demo"):
        url = urlsplit(env_of(services[name])["GOVERNOR_CLICKHOUSE_URL"] or "")
        assert (url.hostname, url.port) == ("clickhouse", 8123), name
        assert url.username == ch["CLICKHOUSE_USER"] and url.password == ch["CLICKHOUSE_PASSWORD"]
        assert url.path.strip("/") == ch["CLICKHOUSE_DB"], name
