"""TLS and SASL settings: one parser, one mapping to librdkafka and one to aiokafka/Faust,
and every client built through them."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from agents import AgentSettings, ConfigurationError
from agents.kafka_security import (
    ENV_NAMES,
    PLAINTEXT,
    KafkaSecurity,
    parse_bootstrap,
    read_security,
)
from streams.errors import SettingsError
from streams.pipeline.kafka_auth import aiokafka_auth, faust_credentials
from streams.settings import Settings, env_names
from tests.pki import KEY_PASSWORD, Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
P = "GOVERNOR_KAFKA_"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def scram_ssl(pki: Pki, **more: str) -> dict[str, str]:
    return {f"{P}BOOTSTRAP": "b1:9096,b2:9096", f"{P}SECURITY_PROTOCOL": "sasl_ssl",
            f"{P}SSL_CA_LOCATION": str(pki.ca), f"{P}SSL_CERT_LOCATION": str(pki.client_cert),
            f"{P}SSL_KEY_LOCATION": str(pki.client_key),
            f"{P}SSL_KEY_PASSWORD_FILE": str(pki.key_password_file),
            f"{P}SASL_MECHANISM": "scram-sha-512", f"{P}SASL_USERNAME": "governor",
            f"{P}SASL_PASSWORD": "s3cret", **more}


def test_the_settings_map_to_librdkafka(pki: Pki) -> None:
    security, problems = read_security(scram_ssl(pki))
    assert problems == []
    assert security.client_config("b1:9096", {"linger.ms": 20}) == {
        "bootstrap.servers": "b1:9096", "linger.ms": 20, "security.protocol": "sasl_ssl",
        "ssl.ca.location": str(pki.ca), "ssl.certificate.location": str(pki.client_cert),
        "ssl.key.location": str(pki.client_key), "ssl.key.password": KEY_PASSWORD,
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "governor",
        "sasl.password": "s3cret"}
    assert "s3cret" not in repr(security) and KEY_PASSWORD not in repr(security)
    assert "s3cret" not in security.describe()
    # a client's own properties never override the security settings
    assert security.client_config("b", {"security.protocol": "plaintext"})[
        "security.protocol"] == "sasl_ssl"
    assert PLAINTEXT.client_config("b") == {"bootstrap.servers": "b",
                                            "security.protocol": "plaintext"}


def test_oauthbearer_is_an_oidc_client_credentials_grant() -> None:
    security, problems = read_security({
        f"{P}SECURITY_PROTOCOL": "SASL_SSL", f"{P}SASL_MECHANISM": "OAUTHBEARER",
        f"{P}OAUTH_TOKEN_URL": "https://idp.example/token", f"{P}OAUTH_CLIENT_ID": "gov",
        f"{P}OAUTH_CLIENT_SECRET": "shh", f"{P}OAUTH_SCOPE": "kafka"})
    assert problems == []
    assert security.librdkafka() == {
        "security.protocol": "sasl_ssl", "ssl.ca.location": "probe",
        "sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.oauthbearer.client.id": "gov", "sasl.oauthbearer.client.secret": "shh",
        "sasl.oauthbearer.scope": "kafka"}


def test_secrets_are_read_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-mount\n")
    env = {f"{P}SECURITY_PROTOCOL": "SASL_PLAINTEXT", f"{P}SASL_MECHANISM": "PLAIN",
           f"{P}SASL_USERNAME": "u", f"{P}SASL_PASSWORD_FILE": str(secret)}
    security, problems = read_security(env)
    assert (security.sasl_password, problems) == ("from-a-mount", [])
    _, problems = read_security({**env, f"{P}SASL_PASSWORD": "also"})
    assert problems == [f"both {P}SASL_PASSWORD and {P}SASL_PASSWORD_FILE are set; keep one"]
    _, [problem, _] = read_security({**env, f"{P}SASL_PASSWORD_FILE": str(tmp_path / "no")})
    assert problem.startswith(f"{P}SASL_PASSWORD_FILE=") and "cannot be read" in problem


@pytest.mark.parametrize(("raw", "servers", "protocol"), [
    ("kafka://127.0.0.1:9092", "127.0.0.1:9092", ""),
    ("PLAINTEXT://a:1, kafka://b:2/", "a:1,b:2", ""),
    ("ssl://a:9093,kafka+ssl://b:9093", "a:9093,b:9093", "SSL"),
    ("SASL_SSL://broker:9096", "broker:9096", "SASL_SSL"),
    ("sasl_plaintext://broker:9095", "broker:9095", "SASL_PLAINTEXT"),
])
def test_a_bootstrap_prefix_says_the_protocol(raw: str, servers: str, protocol: str) -> None:
    assert parse_bootstrap(raw) == (servers, protocol)


def test_bootstrap_prefixes_that_disagree_are_refused() -> None:
    with pytest.raises(ValueError, match="different protocols"):
        parse_bootstrap("ssl://a:1,sasl_ssl://b:2")
    with pytest.raises(ValueError, match="http:// is not a Kafka address"):
        parse_bootstrap("http://a:1")
    [problem] = read_security({f"{P}SECURITY_PROTOCOL": "SSL"}, hint="SASL_SSL")[1]
    assert "make them agree" in problem


@pytest.mark.parametrize(("env", "named", "advice"), [
    ({f"{P}SECURITY_PROTOCOL": "TLS"}, f"{P}SECURITY_PROTOCOL='TLS'",
     "use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    ({f"{P}SECURITY_PROTOCOL": "SASL_SSL", f"{P}SASL_MECHANISM": "GSSAPI"},
     f"{P}SASL_MECHANISM='GSSAPI'", "use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"),
    ({f"{P}SECURITY_PROTOCOL": "SASL_SSL"}, f"{P}SASL_MECHANISM is not set", "use PLAIN"),
    ({f"{P}SECURITY_PROTOCOL": "SASL_SSL", f"{P}SASL_MECHANISM": "SCRAM-SHA-256",
      f"{P}SASL_PASSWORD": "p"}, f"set {P}SASL_USERNAME", "needs a user"),
    ({f"{P}SECURITY_PROTOCOL": "SASL_SSL", f"{P}SASL_MECHANISM": "PLAIN",
      f"{P}SASL_USERNAME": "u"}, f"set {P}SASL_PASSWORD", f"{P}SASL_PASSWORD_FILE"),
    ({f"{P}SASL_MECHANISM": "PLAIN", f"{P}SASL_USERNAME": "u", f"{P}SASL_PASSWORD": "p"},
     f"{P}SASL_MECHANISM is set but the security protocol is PLAINTEXT",
     f"set {P}SECURITY_PROTOCOL=SASL_SSL"),
    ({f"{P}SECURITY_PROTOCOL": "SSL", f"{P}SSL_CA_LOCATION": "/no/such/ca.pem"},
     f"{P}SSL_CA_LOCATION='/no/such/ca.pem': no such file", "the CA certificate"),
    ({f"{P}SECURITY_PROTOCOL": "SASL_SSL", f"{P}SASL_MECHANISM": "OAUTHBEARER",
      f"{P}OAUTH_CLIENT_ID": "c"}, f"{P}OAUTH_TOKEN_URL, {P}OAUTH_CLIENT_SECRET",
     "client-credentials"),
])
def test_a_bad_setting_is_named_with_what_to_do(env: dict[str, str], named: str,
                                                advice: str) -> None:
    _, problems = read_security(env)
    assert any(named in p and advice in p for p in problems), problems
    # the workers and the CLI refuse it, naming the same variable
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace("?", r"\?")):
        Settings.from_env({f"{P}BOOTSTRAP": "b:9092", **env})


def test_tls_files_without_tls_and_half_a_client_certificate_are_refused(pki: Pki) -> None:
    _, problems = read_security({f"{P}SSL_CA_LOCATION": str(pki.ca)})
    assert problems == [f"{P}SSL_CA_LOCATION is set but the security protocol is PLAINTEXT; "
                        f"set {P}SECURITY_PROTOCOL=SSL (or SASL_SSL)"]
    _, problems = read_security({f"{P}SECURITY_PROTOCOL": "SSL",
                                 f"{P}SSL_CERT_LOCATION": str(pki.client_cert)})
    assert problems == [f"{P}SSL_CERT_LOCATION is set without {P}SSL_KEY_LOCATION; a client "
                        "certificate needs both"]


def test_the_agent_turns_telemetry_off_rather_than_connect_otherwise(pki: Pki) -> None:
    good = AgentSettings.from_env(scram_ssl(pki))
    assert (good.kafka_bootstrap, good.kafka_security.protocol, good.problems) == (
        "b1:9096,b2:9096", "SASL_SSL", ())
    bad = AgentSettings.from_env(scram_ssl(pki, **{f"{P}SASL_USERNAME": ""}))
    assert bad.kafka_bootstrap == "" and bad.kafka_security == PLAINTEXT
    [problem] = bad.problems
    assert f"set {P}SASL_USERNAME" in problem and "telemetry stays in memory" in problem
    with pytest.raises(ConfigurationError, match=f"{P}SASL_USERNAME.*FAIL_CLOSED"):
        AgentSettings.from_env(scram_ssl(pki, **{f"{P}SASL_USERNAME": "",
                                                 "GOVERNOR_FAIL_CLOSED": "1"}))
    prefixed = AgentSettings.from_env({f"{P}BOOTSTRAP": "ssl://b:9093",
                                       f"{P}SSL_CA_LOCATION": str(pki.ca)})
    assert (prefixed.kafka_bootstrap, prefixed.kafka_security.protocol) == ("b:9093", "SSL")


def test_the_workers_read_the_same_variables(pki: Pki) -> None:
    settings = Settings.from_env(scram_ssl(pki))
    assert settings.kafka_security == AgentSettings.from_env(scram_ssl(pki)).kafka_security
    assert "s3cret" not in repr(settings)
    assert [n for n in ENV_NAMES if n not in env_names()] == []
    prefixed = Settings.from_env({f"{P}BOOTSTRAP": "kafka+ssl://b:9093"})
    assert (prefixed.kafka_bootstrap, prefixed.kafka_security.protocol) == ("b:9093", "SSL")
    with pytest.raises(SettingsError, match="make them agree"):
        Settings.from_env({f"{P}BOOTSTRAP": "ssl://b:9093", f"{P}SECURITY_PROTOCOL": "PLAINTEXT"})
    with pytest.raises(SettingsError, match="needs GOVERNOR_KAFKA_BOOTSTRAP"):
        Settings.from_env({f"{P}SECURITY_PROTOCOL": "SSL"})


def test_the_same_settings_map_to_aiokafka_and_faust(pki: Pki) -> None:
    security, _ = read_security(scram_ssl(pki))
    auth = aiokafka_auth(security)
    context = auth.pop("ssl_context")
    assert auth == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_plain_username": "governor", "sasl_plain_password": "s3cret"}
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED and context.cert_store_stats()["x509_ca"] == 1
    credentials = faust_credentials(security)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value, credentials.username) == (
        "SASL_SSL", "SCRAM-SHA-512", "governor")
    # what Faust's aiokafka driver hands its consumers and producers, from the app's
    # settings (faust-streaming#794: credentials lost on the way to a producer)
    app = faust.App("governor-test", broker="kafka://b1:9096", broker_credentials=credentials)
    handed = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert handed.pop("ssl_context") is credentials.ssl_context
    assert handed == auth
    tls_only, _ = read_security({f"{P}SECURITY_PROTOCOL": "SSL",
                                 f"{P}SSL_CA_LOCATION": str(pki.ca)})
    assert isinstance(faust_credentials(tls_only), faust.SSLCredentials)
    assert aiokafka_auth(PLAINTEXT) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(PLAINTEXT) is None


def test_a_wrong_key_password_is_a_settings_error_naming_the_files(pki: Pki) -> None:
    security = KafkaSecurity(protocol="SSL", ssl_ca_location=str(pki.ca),
                             ssl_cert_location=str(pki.client_cert),
                             ssl_key_location=str(pki.client_key), ssl_key_password="wrong")
    with pytest.raises(SettingsError, match="GOVERNOR_KAFKA_SSL_KEY_LOCATION"):
        aiokafka_auth(security)


CLIENTS = {"Producer", "Consumer", "AdminClient"}


def test_every_kafka_client_is_configured_through_the_one_mapping() -> None:
    """librdkafka clients take ``<security>.client_config(...)``; aiokafka consumers take
    the auth keywords; the Faust app its credentials. A new client without them fails."""
    unmapped = []
    for path in [*ROOT.glob("agents/**/*.py"), *ROOT.glob("streams/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name in CLIENTS:
                arg = node.args[0] if node.args else None
                if not (isinstance(arg, ast.Call)
                        and getattr(arg.func, "attr", "") == "client_config"):
                    unmapped.append(where)
            elif name in ("AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"):
                if not any(k.arg is None for k in node.keywords):  # **auth
                    unmapped.append(where)
            elif name == "App" and not any(k.arg == "broker_credentials"
                                           for k in node.keywords):
                unmapped.append(where)
    assert unmapped == []
