"""The SASL relay the Kafka security tests rely on (``kafka_relay.py``), on the paths
the real clients do not take there: librdkafka and aiokafka both use SaslHandshake v1
and SaslAuthenticate v1, so the bare tokens after a v0 handshake, the flexible v2
SaslAuthenticate and the refusals before a login are exercised here by hand, the SCRAM
client side being aiokafka's own. Responses are checked byte by byte, not with the
relay's decoder.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tests.integration.kafka_relay import (
    API_VERSIONS,
    MECHANISMS,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    LoginFailed,
    PlainServer,
    SaslRelay,
    ScramCredential,
    ScramServer,
    frame,
    int16,
    int32,
    int64,
    start_sasl_broker,
    string,
)
from tests.integration.tls_endpoint import SecuredBroker

pytestmark = pytest.mark.integration

USER, PASSWORD = "governor", "relay-test-password"
METADATA = 3
ENABLED = int32(len(MECHANISMS)) + b"".join(map(string, MECHANISMS))


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslRelay]:
    broker: SecuredBroker[SaslRelay] = start_sasl_broker(
        {USER: PASSWORD}, tmp_path_factory.mktemp("relay") / "broker.log")
    yield broker.endpoint
    broker.stop()


class Wire:
    """A bare Kafka connection to the relay (SASL_PLAINTEXT)."""

    def __init__(self, relay: SaslRelay) -> None:
        self.sock = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
        self.correlation = 100

    def send(self, api_key: int, version: int, body: bytes, flexible: bool = False) -> int:
        self.correlation += 1
        header = int16(api_key) + int16(version) + int32(self.correlation) + string("wire")
        self.sock.sendall(frame(header + (b"\x00" if flexible else b"") + body))
        return self.correlation

    def call(self, api_key: int, version: int, body: bytes, flexible: bool = False) -> bytes:
        """The response's body; its header (v1 with empty tagged fields when
        ``flexible``) checked to carry the request's correlation id."""
        correlation = self.send(api_key, version, body, flexible)
        payload = self.read()
        header = int32(correlation) + (b"\x00" if flexible else b"")
        assert payload[:len(header)] == header
        return payload[len(header):]

    def bare(self, token: bytes) -> bytes:
        self.sock.sendall(frame(token))
        return self.read()

    def read(self) -> bytes:
        size = int.from_bytes(self._exactly(4), "big")
        return self._exactly(size)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, f"the connection closed after {len(data)} of {n} bytes"
            data += chunk
        return data

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def scram_client(mechanism: str, password: str) -> Generator[tuple[bytes, bool], bytes, None]:
    """aiokafka's SCRAM client: yields its messages, is sent the server's; ends
    (StopIteration) once the server's signature checks."""
    from aiokafka.conn import ScramAuthenticator  # type: ignore[import-untyped]

    client: Any = ScramAuthenticator(loop=None, sasl_plain_username=USER,
                                     sasl_plain_password=password, sasl_mechanism=mechanism)
    scram: Generator[tuple[bytes, bool], bytes, None] = client.authenticator_scram()
    return scram


def test_scram_gives_rfc_7677s_example_exchange() -> None:
    credential = ScramCredential.derive("pencil", "sha256",
                                        base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    server = ScramServer("SCRAM-SHA-256", {"user": credential},
                         nonce=lambda: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    assert server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO") == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,"
        b"i=4096")
    final = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
             b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert server.step(final) == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert (server.user, server.done) == ("user", True)

    other = ScramServer("SCRAM-SHA-256", {"user": ScramCredential.derive(
        "not-pencil", "sha256", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))},
        nonce=lambda: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    other.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    with pytest.raises(LoginFailed, match="invalid credentials with SASL mechanism SCRAM-SHA"):
        other.step(final)  # the proof of another password
    with pytest.raises(LoginFailed):
        ScramServer("SCRAM-SHA-256", {"user": credential}).step(b"n,,n=nobody,r=abc")


def test_plain_takes_only_the_users_own_password() -> None:
    assert PlainServer({USER: PASSWORD}).step(f"\0{USER}\0{PASSWORD}".encode()) == b""
    assert PlainServer({USER: PASSWORD}).step(f"{USER}\0{USER}\0{PASSWORD}".encode()) == b""
    for token in (f"\0{USER}\0wrong", f"\0nobody\0{PASSWORD}", f"ops\0{USER}\0{PASSWORD}",
                  f"{USER}\0{PASSWORD}"):
        with pytest.raises(LoginFailed):
            PlainServer({USER: PASSWORD}).step(token.encode())


def test_after_a_v0_handshake_bare_tokens_log_in_and_requests_then_reach_the_broker(
        relay: SaslRelay) -> None:
    wire = Wire(relay)
    assert wire.call(SASL_HANDSHAKE, 0, string("SCRAM-SHA-256")) == int16(0) + ENABLED
    client = scram_client("SCRAM-SHA-256", PASSWORD)
    token, _ = next(client)
    token, _ = client.send(wire.bare(token))
    with pytest.raises(StopIteration):  # the server's signature checked
        client.send(wire.bare(token))
    versions = wire.call(API_VERSIONS, 0, b"")  # Tansu's answer, correlation id kept
    assert versions[:2] == int16(0) and int16(SASL_AUTHENTICATE) in versions
    assert relay.logins[-1].client_id == "wire" and relay.logins[-1].handshake_version == 0

    refused = Wire(relay)
    assert refused.call(SASL_HANDSHAKE, 0, string("PLAIN")) == int16(0) + ENABLED
    refused.sock.sendall(frame(f"\0{USER}\0wrong".encode()))
    assert refused.closed()  # after a v0 handshake a refusal can only close


def test_flexible_sasl_authenticate_logs_in_and_refuses_with_error_58(relay: SaslRelay) -> None:
    def authenticate(wire: Wire, token: bytes) -> bytes:  # v2: COMPACT_BYTES, tagged fields
        n = len(token) + 1  # an UNSIGNED_VARINT: a client-final message takes two bytes
        size = bytes([n]) if n < 0x80 else bytes([n & 0x7F | 0x80, n >> 7])
        return wire.call(SASL_AUTHENTICATE, 2, size + token + b"\x00", flexible=True)

    def auth_bytes(body: bytes) -> bytes:  # error 0, null message, COMPACT_BYTES, lifetime 0
        assert body[:3] == int16(0) + b"\x00"
        size = body[3] - 1
        assert body[4 + size:] == int64(0) + b"\x00"
        return body[4:4 + size]

    wire = Wire(relay)
    assert wire.call(SASL_HANDSHAKE, 1, string("SCRAM-SHA-512")) == int16(0) + ENABLED
    client = scram_client("SCRAM-SHA-512", PASSWORD)
    token, _ = next(client)
    token, _ = client.send(auth_bytes(authenticate(wire, token)))
    with pytest.raises(StopIteration):
        client.send(auth_bytes(authenticate(wire, token)))
    assert wire.call(API_VERSIONS, 0, b"")[:2] == int16(0)

    refused = Wire(relay)
    refused.call(SASL_HANDSHAKE, 1, string("SCRAM-SHA-512"))
    client = scram_client("SCRAM-SHA-512", "not-the-password")
    token, _ = next(client)
    token, _ = client.send(auth_bytes(authenticate(refused, token)))
    message = (b"Authentication failed during authentication due to invalid credentials "
               b"with SASL mechanism SCRAM-SHA-512")
    assert authenticate(refused, token) == (int16(58) + bytes([len(message) + 1]) + message
                                            + b"\x01" + int64(0) + b"\x00")
    assert refused.closed()


def test_before_the_login_only_api_versions_and_the_sasl_exchange_are_answered(
        relay: SaslRelay) -> None:
    wire = Wire(relay)
    assert wire.call(API_VERSIONS, 0, b"")[:2] == int16(0)  # relayed to Tansu
    wire.send(METADATA, 1, int32(-1))
    assert wire.closed()  # no answer: the connection is closed, as a broker does

    early = Wire(relay)
    early.send(SASL_AUTHENTICATE, 1, int32(0))  # no handshake yet
    assert early.closed()

    unknown = Wire(relay)
    assert unknown.call(SASL_HANDSHAKE, 1, string("GSSAPI")) == int16(33) + ENABLED
    assert unknown.closed()
