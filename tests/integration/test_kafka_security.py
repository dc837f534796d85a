"""Kafka security end to end: the agent, a real worker and operator commands over TLS
with client certificates, and TLS and SASL refusals that are errors at once.

Two brokers of this module's own, each a real Tansu behind a TLS endpoint (see
``tls_endpoint.py``: this Tansu does not terminate TLS itself); the second requires
SASL (``tansu broker --authentication``). What this Tansu offers for SASL, found by
trying: SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER are negotiated (PLAIN is not:
"no shared mechanism"), but no login can succeed — users can only be registered over
a connection that is already authenticated, and OAUTHBEARER tokens are never
accepted. So SASL is shown here up to the broker's verdict: the credentials are
presented (the SCRAM exchange runs, the OIDC token is fetched and sent) and the
refusal reaches the operator as a clear error, not a hang.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import agents
from agents.compacted import read_to_end
from agents.kafka_security import KafkaSecurity, parse_bootstrap, read_security
from schemas import CostEvent, Span, decode
from streams.kafka import ensure_topics
from streams.pipeline.kafka_auth import aiokafka_auth
from tests.integration.conftest import STATE_KEY, VERDICT_KEY, start_worker, stop_worker, wait_for
from tests.integration.tls_endpoint import SecuredBroker, start_secured_broker
from tests.oidc import TokenEndpoint
from tests.pki import Pki, make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(pki, tmp_path_factory.mktemp("tls") / "broker.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def sasl_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(pki, tmp_path_factory.mktemp("sasl") / "broker.log",
                                  authentication=True)
    yield broker
    broker.stop()


def tls_env(pki: Pki, bootstrap: str) -> dict[str, str]:
    """TLS with a client certificate whose key is encrypted (password from a file), the
    protocol said by the bootstrap prefix."""
    return {"GOVERNOR_KAFKA_BOOTSTRAP": f"ssl://{bootstrap}",
            "GOVERNOR_KAFKA_SSL_CA_LOCATION": str(pki.ca),
            "GOVERNOR_KAFKA_SSL_CERT_LOCATION": str(pki.client_cert),
            "GOVERNOR_KAFKA_SSL_KEY_LOCATION": str(pki.client_key),
            "GOVERNOR_KAFKA_SSL_KEY_PASSWORD_FILE": str(pki.key_password_file),
            "GOVERNOR_STATE_KEY": STATE_KEY,
            "GOVERNOR_TELEMETRY_AUTH": "off"}  # telemetry authentication has its own tests


def security_of(env: dict[str, str]) -> KafkaSecurity:
    security, problems = read_security(env, parse_bootstrap(env["GOVERNOR_KAFKA_BOOTSTRAP"])[1])
    assert problems == []
    return security


def governor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    return subprocess.run([sys.executable, "-m", "streams", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_an_agent_reports_and_follows_verdicts_over_tls(
        pki: Pki, tls_broker: SecuredBroker) -> None:
    env = {**tls_env(pki, tls_broker.bootstrap), "GOVERNOR_VERDICT_KEY": VERDICT_KEY,
           "GOVERNOR_TOPIC_PREFIX": (prefix := f"s{uuid.uuid4().hex[:10]}"),
           "GOVERNOR_EXPORT_INTERVAL_MS": "50"}
    security = security_of(env)
    ensure_topics(tls_broker.bootstrap, prefix, security=security)
    settings = agents.AgentSettings.from_env(env)
    assert (settings.problems, settings.kafka_security) == ((), security)
    runtime = agents.configure(settings)
    try:
        @agents.govern(function="tls-checkout", memory_mb=512)
        def handler(n: int) -> int:
            return n

        assert [handler(n) for n in range(10)] == list(range(10))
        assert agents.flush(10)
        wait_for(runtime.in_sync, 20)  # the verdict follower read its partition over TLS
        assert not [k for k in agents.stats() if k.startswith("dropped_")]
    finally:
        agents.shutdown(2.0)
    spans = read_to_end(tls_broker.bootstrap, f"{prefix}.spans", security=security).records
    costs = read_to_end(tls_broker.bootstrap, f"{prefix}.costs", security=security).records
    assert len(spans) == len(costs) == 10
    assert {decode(m.value(), Span).function for m in spans} == {"tls-checkout"}
    assert {decode(m.value(), CostEvent).function for m in costs} == {"tls-checkout"}


def test_a_worker_consumes_over_tls(pki: Pki, tls_broker: SecuredBroker, tmp_path: Path) -> None:
    """The worker creates its topics, joins its groups (Faust and the batched ingest,
    aiokafka) and stores what an agent sends, all over TLS."""
    env = tls_env(pki, tls_broker.bootstrap)
    prefix = f"w{uuid.uuid4().hex[:10]}"
    stack = start_worker(env["GOVERNOR_KAFKA_BOOTSTRAP"], prefix, tmp_path, extra_env=env)
    try:
        agents.configure(agents.AgentSettings.from_env(
            {**env, "GOVERNOR_TOPIC_PREFIX": prefix, "GOVERNOR_VERDICT_KEY": VERDICT_KEY,
             "GOVERNOR_EXPORT_INTERVAL_MS": "50"}))

        @agents.govern(function="tls-search", memory_mb=256)
        def handler() -> str:
            return "ok"

        for _ in range(20):
            handler()
        assert agents.flush(10)
        def stored() -> dict[str, int]:
            counters: dict[str, int] = stack.health()["counters"]  # type: ignore[assignment]
            return counters if counters.get("rows_cost_events", 0) >= 20 else {}

        counters = wait_for(stored, 30)
        assert counters["in_cost"] >= 20 and counters.get("in_span", 0) >= 20
    finally:
        agents.shutdown(2.0)
        stop_worker(stack)


def test_operator_commands_work_over_tls(pki: Pki, tls_broker: SecuredBroker) -> None:
    env = {**tls_env(pki, tls_broker.bootstrap), "GOVERNOR_VERDICT_KEY": VERDICT_KEY,
           "GOVERNOR_TOPIC_PREFIX": f"c{uuid.uuid4().hex[:10]}", "GOVERNOR_ACTOR": "ops"}
    changed = governor(env, "thresholds", "set", "checkout", "min_ratio=3.5", "--reason", "tls")
    assert changed.returncode == 0, changed.stderr
    shown = governor(env, "thresholds", "show", "checkout")
    assert shown.returncode == 0, shown.stderr
    assert "3.5" in shown.stdout
    isolated = governor(env, "verdict", "isolate", "checkout", "--reason", "over tls")
    assert isolated.returncode == 0, isolated.stderr
    verdicts = read_to_end(tls_broker.bootstrap, f"{env['GOVERNOR_TOPIC_PREFIX']}.verdicts",
                           security=security_of(env)).records
    assert [m.key() for m in verdicts] == [b"checkout"]


def test_without_the_ca_the_broker_is_refused_at_once(
        pki: Pki, tls_broker: SecuredBroker, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    env = {**tls_env(pki, tls_broker.bootstrap), "GOVERNOR_VERDICT_KEY": VERDICT_KEY,
           "GOVERNOR_DATA_DIR": str(tmp_path), "GOVERNOR_TOPIC_PREFIX": "never"}
    del env["GOVERNOR_KAFKA_SSL_CA_LOCATION"]  # the system's CAs did not sign this broker
    shown = governor(env, "thresholds", "show", "checkout")
    assert shown.returncode == 2
    assert "refused the connection (SSL, CA of the system" in shown.stderr
    assert "certificate verify failed" in shown.stderr
    worker = governor(env, "worker")
    assert worker.returncode == 2 and "certificate verify failed" in worker.stderr
    wrong_ca = governor({**env, "GOVERNOR_KAFKA_SSL_CA_LOCATION": str(pki.other_ca)},
                        "thresholds", "show", "checkout")
    assert wrong_ca.returncode == 2 and "certificate verify failed" in wrong_ca.stderr

    caplog.set_level(logging.WARNING, "governor.agent")
    agents.configure(agents.AgentSettings.from_env({**env, "GOVERNOR_EXPORT_INTERVAL_MS": "50"}))
    try:
        @agents.govern(function="no-ca")
        def handler() -> str:
            return "ran"

        assert handler() == "ran"  # the function runs; its telemetry is refused
        wait_for(lambda: agents.stats().get("broker_refused"), 15)
    finally:
        agents.shutdown(1.0)
    assert any("Kafka refused the connection" in r.getMessage()
               and "GOVERNOR_KAFKA_SECURITY_PROTOCOL" in r.getMessage() for r in caplog.records)


def sasl_env(pki: Pki, bootstrap: str, **more: str) -> dict[str, str]:
    return {**tls_env(pki, bootstrap), "GOVERNOR_KAFKA_BOOTSTRAP": f"sasl_ssl://{bootstrap}",
            "GOVERNOR_VERDICT_KEY": VERDICT_KEY, "GOVERNOR_TOPIC_PREFIX": "never", **more}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_scram_login_the_broker_does_not_accept_is_a_clear_error(
        pki: Pki, sasl_broker: SecuredBroker, mechanism: str, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("not-the-password\n")
    env = sasl_env(pki, sasl_broker.bootstrap, GOVERNOR_KAFKA_SASL_MECHANISM=mechanism,
                   GOVERNOR_KAFKA_SASL_USERNAME="governor",
                   GOVERNOR_KAFKA_SASL_PASSWORD_FILE=str(password),
                   GOVERNOR_DATA_DIR=str(tmp_path))
    shown = governor(env, "thresholds", "show", "checkout")
    assert shown.returncode == 2
    assert f"refused the connection (SASL_SSL, {mechanism} as governor" in shown.stderr
    assert "SASL SCRAM authentication failed" in shown.stderr
    assert "GOVERNOR_KAFKA_SASL_" in shown.stderr
    if mechanism == "SCRAM-SHA-512":
        worker = governor(env, "worker")
        assert worker.returncode == 2 and "SASL SCRAM authentication failed" in worker.stderr


def test_an_oauthbearer_token_is_fetched_presented_and_its_refusal_reported(
        pki: Pki, sasl_broker: SecuredBroker) -> None:
    with TokenEndpoint() as idp:
        env = sasl_env(pki, sasl_broker.bootstrap, GOVERNOR_KAFKA_SASL_MECHANISM="OAUTHBEARER",
                       GOVERNOR_KAFKA_OAUTH_TOKEN_URL=idp.url,
                       GOVERNOR_KAFKA_OAUTH_CLIENT_ID="governor",
                       GOVERNOR_KAFKA_OAUTH_CLIENT_SECRET="idp-secret")
        shown = governor(env, "thresholds", "show", "checkout")
        assert shown.returncode == 2
        assert "refused the connection (SASL_SSL, OAUTHBEARER" in shown.stderr
        assert "SASL authentication error" in shown.stderr
        fetched = len(idp.requests)
        assert fetched and all(
            form["grant_type"] == ["client_credentials"]
            and auth == idp.basic("governor", "idp-secret") for form, auth in idp.requests)

        async def start_aiokafka() -> None:  # the workers' client, with its token provider
            from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

            producer = AIOKafkaProducer(bootstrap_servers=sasl_broker.bootstrap,
                                        **aiokafka_auth(security_of(env)))
            try:
                await producer.start()
            finally:
                await producer.stop()

        from aiokafka.errors import KafkaConnectionError  # type: ignore[import-untyped]

        with pytest.raises(KafkaConnectionError):
            asyncio.run(start_aiokafka())
        assert len(idp.requests) > fetched
