"""Kafka security end to end: the agent, a real worker and operator commands over TLS
with client certificates and over SASL, and TLS and SASL refusals that are errors at
once.

Brokers of this module's own, each a real Tansu behind a relay (this Tansu does not
terminate TLS itself, nor can it accept a SASL login: see ``tls_endpoint.py`` and
``kafka_relay.py``):

* ``tls_broker``: mutual TLS (``TlsEndpoint``);
* ``sasl_ssl_broker`` and ``sasl_plaintext_broker``: a ``SaslRelay`` that runs the
  broker's side of the SASL login (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, with Kafka's
  refusal) for its users and then hands each connection to Tansu, over TLS or not.
  Every connection a client makes logs in there, so the logins it records say which
  client completed which mechanism;
* ``tansu_sasl_broker``: Tansu's own SASL (``tansu broker --authentication``), for
  OAUTHBEARER: the token is fetched and presented, and the broker's refusal (it
  accepts none) reaches the operator as a clear error, not a hang.
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
from tests.integration.kafka_relay import SaslRelay, start_sasl_broker
from tests.integration.tls_endpoint import SecuredBroker, TlsEndpoint, start_secured_broker
from tests.oidc import TokenEndpoint
from tests.pki import Pki, make_pki

pytestmark = pytest.mark.integration

SASL_USER, SASL_PASSWORD = "governor", "governor-sasl-password-3f9a1c"
"""The one user the SASL relays know (every mechanism)."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[SecuredBroker[TlsEndpoint]]:
    broker = start_secured_broker(pki, tmp_path_factory.mktemp("tls") / "broker.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def sasl_ssl_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[SecuredBroker[SaslRelay]]:
    broker = start_sasl_broker({SASL_USER: SASL_PASSWORD},
                               tmp_path_factory.mktemp("sasl-ssl") / "broker.log", pki)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def sasl_plaintext_broker(tmp_path_factory: pytest.TempPathFactory
                          ) -> Iterator[SecuredBroker[SaslRelay]]:
    broker = start_sasl_broker({SASL_USER: SASL_PASSWORD},
                               tmp_path_factory.mktemp("sasl-plaintext") / "broker.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def tansu_sasl_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[SecuredBroker[TlsEndpoint]]:
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
        pki: Pki, tls_broker: SecuredBroker[TlsEndpoint]) -> None:
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


def test_a_worker_consumes_over_tls(pki: Pki, tls_broker: SecuredBroker[TlsEndpoint],
                                    tmp_path: Path) -> None:
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


def test_operator_commands_work_over_tls(pki: Pki,
                                        tls_broker: SecuredBroker[TlsEndpoint]) -> None:
    env = {**tls_env(pki, tls_broker.bootstrap), "GOVERNOR_VERDICT_KEY": VERDICT_KEY,
           "GOVERNOR_TOPIC_PREFIX": f"c{uuid.uuid4().hex[:10]}", "GOVERNOR_ACTOR": "ops"}
    changed = governor(env, "thresholds", "set", "checkout", "min_ratio=3.5", "--reason", "tls")
    assert changed.returncode == 0, changed.stderr
    shown = governor(env, "thresholds", "show", "checkout")
    assert shown.returncode == 0, shown.stderr
    assert "3.5" in shown.stdout
    isolated = governor(env, "verdict", "isolate", "checkout", "--reason", "over tls",
                        "--force")
    assert isolated.returncode == 0, isolated.stderr
    verdicts = read_to_end(tls_broker.bootstrap, f"{env['GOVERNOR_TOPIC_PREFIX']}.verdicts",
                           security=security_of(env)).records
    assert [m.key() for m in verdicts] == [b"checkout"]


def test_without_the_ca_the_broker_is_refused_at_once(
        pki: Pki, tls_broker: SecuredBroker[TlsEndpoint], tmp_path: Path,
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


def sasl_env(bootstrap: str, mechanism: str, pki: Pki | None = None,
             password: str = SASL_PASSWORD, **more: str) -> dict[str, str]:
    """SASL as :data:`SASL_USER`: SASL_SSL with the test CA given ``pki`` (no client
    certificate: SASL says who), SASL_PLAINTEXT without."""
    env = {"GOVERNOR_KAFKA_BOOTSTRAP": f"{'sasl_ssl' if pki else 'sasl_plaintext'}://{bootstrap}",
           "GOVERNOR_KAFKA_SASL_MECHANISM": mechanism,
           "GOVERNOR_KAFKA_SASL_USERNAME": SASL_USER,
           "GOVERNOR_KAFKA_SASL_PASSWORD": password,
           "GOVERNOR_VERDICT_KEY": VERDICT_KEY,
           "GOVERNOR_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:10]}"}
    if pki is not None:
        env["GOVERNOR_KAFKA_SSL_CA_LOCATION"] = str(pki.ca)
    return {**env, **more}


def logins(relay: SaslRelay, since: int) -> set[tuple[str, str, str]]:
    """(user, mechanism, client id) of the relay's logins after the first ``since``."""
    return {(login.user, login.mechanism, login.client_id) for login in relay.logins[since:]}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_an_agent_reports_and_follows_verdicts_over_sasl_ssl(
        pki: Pki, sasl_ssl_broker: SecuredBroker[SaslRelay], mechanism: str) -> None:
    """The agent's producer and verdict follower log in (librdkafka); a verdict issued by
    an operator command over SASL reaches the function."""
    relay, bootstrap = sasl_ssl_broker.endpoint, sasl_ssl_broker.bootstrap
    env = {**sasl_env(bootstrap, mechanism, pki), "GOVERNOR_EXPORT_INTERVAL_MS": "50"}
    security = security_of(env)
    ensure_topics(bootstrap, env["GOVERNOR_TOPIC_PREFIX"], security=security)
    seen = len(relay.logins)
    settings = agents.AgentSettings.from_env(env)
    assert (settings.problems, settings.kafka_security) == ((), security)
    runtime = agents.configure(settings)
    try:
        @agents.govern(function="sasl-checkout", memory_mb=512)
        def handler(n: int) -> int:
            return n

        assert [handler(n) for n in range(10)] == list(range(10))
        assert agents.flush(10)
        prefix = env["GOVERNOR_TOPIC_PREFIX"]
        spans = read_to_end(bootstrap, f"{prefix}.spans", security=security).records
        costs = read_to_end(bootstrap, f"{prefix}.costs", security=security).records
        assert len(spans) == len(costs) == 10
        assert {decode(m.value(), CostEvent).function for m in costs} == {"sasl-checkout"}
        wait_for(runtime.in_sync, 20)  # the verdict follower read its partition
        assert logins(relay, seen) == {(SASL_USER, mechanism, "rdkafka")}, relay.trace
        isolated = governor(env, "verdict", "isolate", "sasl-checkout", "--reason", "sasl",
                            "--force")
        assert isolated.returncode == 0, isolated.stderr

        def refused() -> bool:
            try:
                handler(0)
            except agents.FunctionIsolated:
                return True
            return False

        wait_for(refused, 20)
        assert not [k for k in agents.stats() if k.startswith("dropped_")]
    finally:
        agents.shutdown(2.0)
    assert relay.refusals == []


def test_a_worker_consumes_over_sasl_ssl(
        pki: Pki, sasl_ssl_broker: SecuredBroker[SaslRelay], tmp_path: Path) -> None:
    """The worker (Faust: aiokafka; the batched ingest and its other clients: librdkafka)
    logs in with SCRAM-SHA-512, its password from a file, and stores what an agent
    sends over SASL_SSL."""
    relay = sasl_ssl_broker.endpoint
    password = tmp_path / "sasl-password"
    password.write_text(SASL_PASSWORD + "\n")
    env = sasl_env(sasl_ssl_broker.bootstrap, "SCRAM-SHA-512", pki)
    worker_env = {**{k: v for k, v in env.items() if k != "GOVERNOR_KAFKA_SASL_PASSWORD"},
                  "GOVERNOR_KAFKA_SASL_PASSWORD_FILE": str(password)}
    seen = len(relay.logins)
    stack = start_worker(env["GOVERNOR_KAFKA_BOOTSTRAP"], env["GOVERNOR_TOPIC_PREFIX"],
                         tmp_path, extra_env=worker_env)
    try:
        agents.configure(agents.AgentSettings.from_env(
            {**env, "GOVERNOR_EXPORT_INTERVAL_MS": "50"}))

        @agents.govern(function="sasl-search", memory_mb=256)
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
    clients = {client for user, mechanism, client in logins(relay, seen)
               if (user, mechanism) == (SASL_USER, "SCRAM-SHA-512")}
    assert "rdkafka" in clients, clients  # the worker's other librdkafka clients, the agent's
    assert any(c.startswith("faust-") for c in clients), clients  # Faust's aiokafka
    assert any(c.endswith(".ingest-consumer") for c in clients), clients  # batched ingest
    assert relay.refusals == []


@pytest.mark.parametrize(("mechanism", "tls"), [("SCRAM-SHA-512", True), ("PLAIN", True),
                                                ("SCRAM-SHA-256", False)],
                         ids=["SASL_SSL-SCRAM-SHA-512", "SASL_SSL-PLAIN",
                              "SASL_PLAINTEXT-SCRAM-SHA-256"])
def test_operator_commands_log_in_with_sasl(
        pki: Pki, request: pytest.FixtureRequest, mechanism: str, tls: bool) -> None:
    broker: SecuredBroker[SaslRelay] = request.getfixturevalue(
        "sasl_ssl_broker" if tls else "sasl_plaintext_broker")
    env = {**sasl_env(broker.bootstrap, mechanism, pki if tls else None),
           "GOVERNOR_ACTOR": "ops"}
    seen = len(broker.endpoint.logins)
    changed = governor(env, "thresholds", "set", "checkout", "min_ratio=4.5", "--reason", "sasl")
    assert changed.returncode == 0, changed.stderr
    shown = governor(env, "thresholds", "show", "checkout")
    assert shown.returncode == 0, shown.stderr
    assert "4.5" in shown.stdout
    assert logins(broker.endpoint, seen) == {(SASL_USER, mechanism, "rdkafka")}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_the_workers_kafka_client_logs_in_with_each_mechanism(
        pki: Pki, sasl_ssl_broker: SecuredBroker[SaslRelay], mechanism: str) -> None:
    """aiokafka with the workers' own settings (``aiokafka_auth``) writes a record over
    SASL_SSL; librdkafka reads it back."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    relay, bootstrap = sasl_ssl_broker.endpoint, sasl_ssl_broker.bootstrap
    env = sasl_env(bootstrap, mechanism, pki)
    security = security_of(env)
    topic = f"{env['GOVERNOR_TOPIC_PREFIX']}.spans"
    ensure_topics(bootstrap, env["GOVERNOR_TOPIC_PREFIX"], security=security)
    seen = len(relay.logins)

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="workers-aiokafka",
                                    **aiokafka_auth(security))
        await producer.start()
        try:
            await producer.send_and_wait(topic, mechanism.encode(), partition=0)
        finally:
            await producer.stop()

    asyncio.run(produce())
    assert (SASL_USER, mechanism, "workers-aiokafka") in logins(relay, seen)
    records = read_to_end(bootstrap, topic, security=security).records
    assert [m.value() for m in records] == [mechanism.encode()]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_a_wrong_password_is_refused_at_once_with_the_reason(
        pki: Pki, sasl_ssl_broker: SecuredBroker[SaslRelay], mechanism: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The user exists, the password is not its own: the broker's refusal
    (SASL_AUTHENTICATION_FAILED and its message) stops a command and a worker at once,
    and the agent counts it."""
    relay = sasl_ssl_broker.endpoint
    env = sasl_env(sasl_ssl_broker.bootstrap, mechanism, pki, password="not-the-password",
                   GOVERNOR_DATA_DIR=str(tmp_path), GOVERNOR_STATE_KEY=STATE_KEY,
                   GOVERNOR_TELEMETRY_AUTH="off")
    reason = ("Invalid username or password" if mechanism == "PLAIN" else
              f"invalid credentials with SASL mechanism {mechanism}")
    seen, refused = len(relay.logins), len(relay.refusals)
    shown = governor(env, "thresholds", "show", "checkout")
    assert shown.returncode == 2
    assert f"refused the connection (SASL_SSL, {mechanism} as {SASL_USER}" in shown.stderr
    assert "SASL authentication error: Authentication failed" in shown.stderr
    assert reason in shown.stderr and "GOVERNOR_KAFKA_SASL_" in shown.stderr
    assert any(f"{mechanism} login of {SASL_USER!r} refused" in r
               for r in relay.refusals[refused:]), relay.refusals[refused:]
    if mechanism == "SCRAM-SHA-512":
        worker = governor(env, "worker")
        assert worker.returncode == 2 and reason in worker.stderr, worker.stderr

        caplog.set_level(logging.WARNING, "governor.agent")
        agents.configure(agents.AgentSettings.from_env(
            {**env, "GOVERNOR_EXPORT_INTERVAL_MS": "50"}))
        try:
            @agents.govern(function="wrong-password")
            def handler() -> str:
                return "ran"

            # the function runs on, its telemetry refused (the agent hears of the refusal
            # when it next exports, so the function is called while waiting)
            wait_for(lambda: handler() == "ran" and agents.stats().get("broker_refused"), 15)
        finally:
            agents.shutdown(1.0)
        assert any("Kafka refused the connection" in r.getMessage() and reason in r.getMessage()
                   for r in caplog.records)
    assert relay.logins[seen:] == []


def test_an_oauthbearer_token_is_fetched_presented_and_its_refusal_reported(
        pki: Pki, tansu_sasl_broker: SecuredBroker[TlsEndpoint]) -> None:
    with TokenEndpoint() as idp:
        env = {**tls_env(pki, tansu_sasl_broker.bootstrap),
               "GOVERNOR_KAFKA_BOOTSTRAP": f"sasl_ssl://{tansu_sasl_broker.bootstrap}",
               "GOVERNOR_VERDICT_KEY": VERDICT_KEY, "GOVERNOR_TOPIC_PREFIX": "never",
               "GOVERNOR_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
               "GOVERNOR_KAFKA_OAUTH_TOKEN_URL": idp.url,
               "GOVERNOR_KAFKA_OAUTH_CLIENT_ID": "governor",
               "GOVERNOR_KAFKA_OAUTH_CLIENT_SECRET": "idp-secret"}
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

            producer = AIOKafkaProducer(bootstrap_servers=tansu_sasl_broker.bootstrap,
                                        **aiokafka_auth(security_of(env)))
            try:
                await producer.start()
            finally:
                await producer.stop()

        from aiokafka.errors import KafkaConnectionError  # type: ignore[import-untyped]

        with pytest.raises(KafkaConnectionError):
            asyncio.run(start_aiokafka())
        assert len(idp.requests) > fetched
