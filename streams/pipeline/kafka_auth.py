"""The workers' aiokafka clients (Faust's) connect with the same TLS and SASL settings
as every librdkafka client (the batched ingest's among them): this is the one mapping
from :class:`~agents.kafka_security.KafkaSecurity` to aiokafka and Faust.

* TLS: one :class:`ssl.SSLContext` (the CA, the client certificate and its key, the
  key's password), hostname checked, as :func:`aiokafka.helpers.create_ssl_context`
  makes it;
* SASL PLAIN and SCRAM: user and password; OAUTHBEARER: :class:`OidcTokenProvider`,
  a client-credentials grant at the OIDC token endpoint (as librdkafka's ``oidc``
  method does), the token reused until shortly before it expires;
* Faust takes them as ``broker_credentials`` (``SSLCredentials``, ``SASLCredentials``,
  ``OAuthCredentials``), which its aiokafka driver hands to every consumer, producer
  and admin client it makes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import urllib.parse
import urllib.request
from typing import Any

import faust
from aiokafka.abc import AbstractTokenProvider  # type: ignore[import-untyped]
from aiokafka.helpers import create_ssl_context  # type: ignore[import-untyped]

from agents.kafka_security import KafkaSecurity
from streams.errors import SettingsError

REFRESH_BEFORE_S = 30.0
"""A token is fetched again this long before the endpoint said it expires."""


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """The TLS context of ``security`` (system CAs when it names none); a
    :class:`SettingsError` naming the files when they cannot be used."""
    try:
        return create_ssl_context(
            cafile=security.ssl_ca_location or None,
            certfile=security.ssl_cert_location or None,
            keyfile=security.ssl_key_location or None,
            password=security.ssl_key_password or None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise SettingsError(
            f"the TLS files cannot be used ({exc}): check GOVERNOR_KAFKA_SSL_CA_LOCATION="
            f"{security.ssl_ca_location!r}, GOVERNOR_KAFKA_SSL_CERT_LOCATION="
            f"{security.ssl_cert_location!r}, GOVERNOR_KAFKA_SSL_KEY_LOCATION="
            f"{security.ssl_key_location!r} and the key's password") from None


def aiokafka_auth(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for an aiokafka consumer, producer or admin client."""
    auth: dict[str, Any] = {"security_protocol": security.protocol}
    if security.tls:
        auth["ssl_context"] = ssl_context(security)
    if security.sasl:
        auth["sasl_mechanism"] = security.sasl_mechanism
        if security.sasl_mechanism == "OAUTHBEARER":
            auth["sasl_oauth_token_provider"] = OidcTokenProvider(security)
        else:
            auth["sasl_plain_username"] = security.sasl_username
            auth["sasl_plain_password"] = security.sasl_password
    return auth


def faust_credentials(security: KafkaSecurity) -> Any:
    """Faust's ``broker_credentials`` for ``security`` (``None``: plaintext)."""
    context = ssl_context(security) if security.tls else None
    if not security.sasl:
        return faust.SSLCredentials(context) if context is not None else None
    if security.sasl_mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(oauth_cb=OidcTokenProvider(security),
                                      ssl_context=context)
    return faust.SASLCredentials(username=security.sasl_username,
                                 password=security.sasl_password, ssl_context=context,
                                 mechanism=security.sasl_mechanism)


class OidcTokenProvider(AbstractTokenProvider):
    """OAUTHBEARER tokens from an OIDC token endpoint (client-credentials grant, the
    client authenticated with HTTP Basic, as librdkafka does), reused until
    :data:`REFRESH_BEFORE_S` before they expire."""

    def __init__(self, security: KafkaSecurity, timeout_s: float = 10.0) -> None:
        self._url = security.oauth_token_url
        self._client = (security.oauth_client_id, security.oauth_client_secret)
        self._scope = security.oauth_scope
        self._timeout_s = timeout_s
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if not self._token or time.monotonic() >= self._renew_at:
                token, lifetime = await asyncio.to_thread(self.fetch)
                self._token = token
                self._renew_at = time.monotonic() + max(0.0, lifetime - REFRESH_BEFORE_S)
            return self._token

    def fetch(self) -> tuple[str, float]:
        """A new token and its lifetime in seconds, from the endpoint."""
        form = {"grant_type": "client_credentials", **({"scope": self._scope}
                                                       if self._scope else {})}
        basic = base64.b64encode(":".join(self._client).encode()).decode()
        request = urllib.request.Request(
            self._url, data=urllib.parse.urlencode(form).encode(), method="POST",
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json",
                     "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                body = json.loads(response.read())
            return str(body["access_token"]), float(body.get("expires_in", 300))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConnectionError(f"no OAUTHBEARER token from GOVERNOR_KAFKA_OAUTH_TOKEN_URL="
                                  f"{self._url}: {exc}") from None
