from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agents import AgentSettings, ConfigurationError
from streams.errors import SettingsError
from streams.settings import Settings, env_names


def test_agent_settings_from_environment() -> None:
    s = AgentSettings.from_env({
        "GOVERNOR_KAFKA_BOOTSTRAP": " k:9092 ", "GOVERNOR_VERDICT_KEY": "secret",
        "GOVERNOR_DISABLED": "off", "GOVERNOR_MEMORY_MB": "512", "GOVERNOR_TEAM": "payments",
        "GOVERNOR_TOPIC_PREFIX": "acme"})
    assert (s.kafka_bootstrap, s.verdict_key, s.disabled, s.memory_mb, s.team) == (
        "k:9092", b"secret", False, 512, "payments")
    assert s.topic("verdicts") == "acme.verdicts"


def test_agent_settings_fall_back_to_lambda_variables() -> None:
    s = AgentSettings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "f",
                                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
                                "AWS_LAMBDA_FUNCTION_VERSION": "12"})
    assert (s.memory_mb, s.version, s.flush_on_return) == (1769, "12", True)
    assert not AgentSettings.from_env({}).flush_on_return


@pytest.mark.parametrize(("name", "value", "message"), [
    ("GOVERNOR_DISABLED", "maybe", "is not a boolean"),
    ("GOVERNOR_MEMORY_MB", "lots", "is not an integer"),
    ("GOVERNOR_QUEUE_SIZE", "0", "must be >= 1"),
])
def test_a_bad_agent_setting_is_a_problem_named_with_the_default_used_not_an_error(
        name: str, value: str, message: str) -> None:
    settings = AgentSettings.from_env({name: value})
    [problem] = settings.problems
    assert name in problem and value in problem
    assert message in problem and "using" in problem
    assert dataclasses.replace(settings, problems=()) == AgentSettings.from_env({})
    # fail-closed functions refuse to run misconfigured
    with pytest.raises(ConfigurationError, match=f"{name}.*{message}.*FAIL_CLOSED"):
        AgentSettings.from_env({name: value, "GOVERNOR_FAIL_CLOSED": "1"})


@pytest.mark.parametrize(("raw", "servers", "problem"), [
    ("kafka://127.0.0.1:9092", "127.0.0.1:9092", ""),
    ("PLAINTEXT://a:1, kafka://b:2/", "a:1,b:2", ""),
    ("SSL://broker:9093", "broker:9093", ""),  # and the protocol: test_kafka_security
    ("http://broker:9092", "", "http:// is not a Kafka address"),
])
def test_bootstrap_schemes_are_accepted_or_refused_clearly(raw: str, servers: str,
                                                           problem: str) -> None:
    settings = AgentSettings.from_env({"GOVERNOR_KAFKA_BOOTSTRAP": raw})
    assert settings.kafka_bootstrap == servers
    assert (problem in settings.problems[0]) if problem else settings.problems == ()


def test_worker_settings_from_environment_and_overrides() -> None:
    s = Settings.from_env({"GOVERNOR_WINDOW_SECONDS": "2.5", "GOVERNOR_QUERY_PORT": "7000",
                           "GOVERNOR_DATA_DIR": "/tmp/g"}, topic_prefix="x")
    assert (s.window_seconds, s.query_port, s.data_dir, s.topic_prefix) == (
        2.5, 7000, Path("/tmp/g"), "x")
    assert s.embedded_broker and s.embedded_clickhouse
    assert s.clickhouse_dsn == "chdb:///tmp/g/chdb"
    remote = Settings.from_env({"GOVERNOR_CLICKHOUSE_URL": "http://ch:8123"})
    assert not remote.embedded_clickhouse and remote.clickhouse_dsn == "http://ch:8123"


@pytest.mark.parametrize(("env", "message"), [
    ({"GOVERNOR_QUERY_PORT": "x"}, "GOVERNOR_QUERY_PORT='x' is not an integer"),
    ({"GOVERNOR_WINDOW_SECONDS": "0"}, "GOVERNOR_WINDOW_SECONDS must be > 0"),
    ({"GOVERNOR_LOG_LEVEL": "loud"}, "use debug, info, warn or error"),
    ({"GOVERNOR_LOG_FORMAT": "xml"}, "use text or json"),
    ({"GOVERNOR_CLICKHOUSE_URL": "mysql://x"}, "use http"),
    ({"GOVERNOR_BROKER_PORT": "70000"}, "GOVERNOR_BROKER_PORT=70000; use a port"),
    ({"GOVERNOR_QUERY_BACKLOG_ROWS_PER_SECOND": "-1"},
     "GOVERNOR_QUERY_BACKLOG_ROWS_PER_SECOND must be >= 0"),
    ({"GOVERNOR_MAX_FUNCTIONS": "-5"}, "GOVERNOR_MAX_FUNCTIONS must be >= 0"),
])
def test_worker_settings_reject_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_every_worker_setting_is_documented() -> None:
    import streams.settings

    doc = streams.settings.__doc__ or ""
    assert [name for name in env_names() if name not in doc] == []


def test_drops_are_reported_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    from agents._stats import Stats

    stats = Stats()
    stats.add("produced", 5)
    stats.report()
    assert caplog.records == []
    stats.add("dropped_queue_full", 3)
    stats.add("dropped_delivery_failed")
    stats.report()
    [record] = caplog.records
    assert "dropped 4 telemetry records (queue_full: 3, delivery_failed: 1)" in record.message
    stats.report()
    assert len(caplog.records) == 1


def test_a_query_endpoint_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(SettingsError, match="GOVERNOR_QUERY_TOKEN"):
        Settings.from_env({"GOVERNOR_QUERY_HOST": "0.0.0.0"})
    with pytest.raises(SettingsError, match="at least 32"):
        Settings.from_env({"GOVERNOR_QUERY_HOST": "0.0.0.0", "GOVERNOR_QUERY_TOKEN": "short"})
    token = "t" * 32
    assert Settings.from_env({"GOVERNOR_QUERY_HOST": "0.0.0.0",
                              "GOVERNOR_QUERY_TOKEN": token}).query_token == token
    assert Settings.from_env({"GOVERNOR_QUERY_HOST": "localhost"}).query_token == ""
