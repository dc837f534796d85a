"""How Governor's Kafka clients connect: TLS and SASL from one set of settings.

Read by the agent (:mod:`agents._settings`, leniently) and by the workers and the CLI
(:mod:`streams.settings`, strictly) with the same parser, so a variable means the same
thing everywhere; every librdkafka client (the agent's producer and verdict follower,
the Lambda extension, the workers' and operator commands' confluent-kafka clients) is
configured by :meth:`KafkaSecurity.client_config`, the one mapping to librdkafka.
The workers' aiokafka clients (Faust) get theirs from :mod:`streams.kafka`.

===========================================  =============================================
variable                                     meaning (default)
===========================================  =============================================
GOVERNOR_KAFKA_SECURITY_PROTOCOL             ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or
                                             ``SASL_SSL`` (PLAINTEXT; an ``ssl://``,
                                             ``kafka+ssl://``, ``sasl_ssl://`` or
                                             ``sasl_plaintext://`` bootstrap prefix says
                                             the same)
GOVERNOR_KAFKA_SSL_CA_LOCATION               CA certificate(s) (PEM) the broker's
                                             certificate must chain to (the system's CAs)
GOVERNOR_KAFKA_SSL_CERT_LOCATION             client certificate (PEM), for brokers that
                                             authenticate clients by certificate (none)
GOVERNOR_KAFKA_SSL_KEY_LOCATION              the client certificate's private key (PEM)
GOVERNOR_KAFKA_SSL_KEY_PASSWORD[_FILE]       the private key's password, or a file holding
                                             it (none: the key is not encrypted)
GOVERNOR_KAFKA_SASL_MECHANISM                ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``
                                             or ``OAUTHBEARER`` (required with SASL_*)
GOVERNOR_KAFKA_SASL_USERNAME                 SASL user (PLAIN, SCRAM)
GOVERNOR_KAFKA_SASL_PASSWORD[_FILE]          its password, or a file holding it (a
                                             secrets mount)
GOVERNOR_KAFKA_OAUTH_TOKEN_URL               OAUTHBEARER: the OIDC token endpoint
                                             (client-credentials grant)
GOVERNOR_KAFKA_OAUTH_CLIENT_ID               OAUTHBEARER: client id
GOVERNOR_KAFKA_OAUTH_CLIENT_SECRET[_FILE]    OAUTHBEARER: client secret, or a file
GOVERNOR_KAFKA_OAUTH_SCOPE                   OAUTHBEARER: scope to ask for (none)
===========================================  =============================================

Light on purpose: the agent imports it; nothing here imports a Kafka client.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
SCHEMES = {"kafka": "", "plaintext": "", "ssl": "SSL", "kafka+ssl": "SSL",
           "sasl_plaintext": "SASL_PLAINTEXT", "sasl_ssl": "SASL_SSL",
           "kafka+sasl_ssl": "SASL_SSL"}
"""Bootstrap prefixes understood, and the security protocol each implies ("": none)."""

_P = "GOVERNOR_KAFKA_"
ENV_NAMES = tuple(_P + n for n in (
    "SECURITY_PROTOCOL", "SSL_CA_LOCATION", "SSL_CERT_LOCATION", "SSL_KEY_LOCATION",
    "SSL_KEY_PASSWORD", "SSL_KEY_PASSWORD_FILE", "SASL_MECHANISM", "SASL_USERNAME",
    "SASL_PASSWORD", "SASL_PASSWORD_FILE", "OAUTH_TOKEN_URL", "OAUTH_CLIENT_ID",
    "OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_SECRET_FILE", "OAUTH_SCOPE"))
"""Every variable :func:`read_security` reads."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+_.-]*)://")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """A resolved, valid security configuration (see :func:`read_security`)."""

    protocol: str = "PLAINTEXT"
    ssl_ca_location: str = ""
    ssl_cert_location: str = ""
    ssl_key_location: str = ""
    ssl_key_password: str = dataclasses.field(default="", repr=False)
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = dataclasses.field(default="", repr=False)
    oauth_token_url: str = ""
    oauth_client_id: str = ""
    oauth_client_secret: str = dataclasses.field(default="", repr=False)
    oauth_scope: str = ""

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def librdkafka(self) -> dict[str, str]:
        """These settings as librdkafka configuration properties."""
        config = {"security.protocol": self.protocol.lower()}
        if self.tls:
            # no CA given: librdkafka looks for the system's bundle (its own OpenSSL
            # may not know where this system keeps it)
            config["ssl.ca.location"] = self.ssl_ca_location or "probe"
            if self.ssl_cert_location:
                config["ssl.certificate.location"] = self.ssl_cert_location
                config["ssl.key.location"] = self.ssl_key_location
            if self.ssl_key_password:
                config["ssl.key.password"] = self.ssl_key_password
        if self.sasl:
            config["sasl.mechanism"] = self.sasl_mechanism
            if self.sasl_mechanism == "OAUTHBEARER":
                config.update({
                    "sasl.oauthbearer.method": "oidc",
                    "sasl.oauthbearer.token.endpoint.url": self.oauth_token_url,
                    "sasl.oauthbearer.client.id": self.oauth_client_id,
                    "sasl.oauthbearer.client.secret": self.oauth_client_secret,
                    **({"sasl.oauthbearer.scope": self.oauth_scope}
                       if self.oauth_scope else {})})
            else:
                config["sasl.username"] = self.sasl_username
                config["sasl.password"] = self.sasl_password
        return config

    def client_config(self, bootstrap: str, own: Mapping[str, Any] | None = None
                      ) -> dict[str, Any]:
        """A librdkafka client configuration: ``bootstrap``, the client's ``own``
        properties, then these settings (which nothing overrides)."""
        return {"bootstrap.servers": bootstrap, **(own or {}), **self.librdkafka()}

    def describe(self) -> str:
        """One line for logs and errors, secrets left out."""
        parts = [self.protocol]
        if self.sasl:
            parts.append(self.sasl_mechanism + (f" as {self.sasl_username}"
                                                if self.sasl_username else ""))
        if self.tls:
            parts.append(f"CA {self.ssl_ca_location or 'of the system'}")
            if self.ssl_cert_location:
                parts.append(f"client certificate {self.ssl_cert_location}")
        return ", ".join(parts)


PLAINTEXT = KafkaSecurity()


def parse_bootstrap(raw: str) -> tuple[str, str]:
    """``host:port[,host:port]`` and the security protocol its prefix implies ("" for
    none): ``kafka://`` and ``plaintext://`` are dropped (``governor up`` prints the
    first), ``ssl://``/``kafka+ssl://``, ``sasl_ssl://`` and ``sasl_plaintext://`` say
    the protocol. Raises ``ValueError`` (with what to write instead) for another
    scheme or servers that disagree."""
    servers: list[str] = []
    protocols: set[str] = set()
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        match = _SCHEME.match(item)
        if match:
            scheme = match.group(1).lower()
            if scheme not in SCHEMES:
                raise ValueError(f"{scheme}:// is not a Kafka address (use host:port"
                                 "[,host:port], optionally with ssl:// or sasl_ssl://)")
            protocols.add(SCHEMES[scheme])
            item = item[match.end():]
        else:
            protocols.add("")
        servers.append(item.rstrip("/"))
    hinted = protocols - {""}
    if len(hinted) > 1:
        raise ValueError(f"its servers say different protocols ({', '.join(sorted(hinted))}); "
                         "give one, or set GOVERNOR_KAFKA_SECURITY_PROTOCOL")
    return ",".join(servers), hinted.pop() if hinted else ""


def read_security(env: Mapping[str, str], hint: str = "") -> tuple[KafkaSecurity, list[str]]:
    """The security settings in ``env`` (``GOVERNOR_KAFKA_*``; ``hint`` is the
    protocol the bootstrap prefix implied) and the problems found, each naming the
    variable and what to do. With problems the configuration returned is not usable."""
    problems: list[str] = []

    def get(name: str) -> str:
        return env.get(_P + name, "").strip()

    def secret(name: str) -> str:
        value, path = env.get(_P + name, ""), get(name + "_FILE")
        if value and path:
            problems.append(f"both {_P}{name} and {_P}{name}_FILE are set; keep one")
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    return fh.read().rstrip("\r\n")
            except OSError as exc:
                problems.append(f"{_P}{name}_FILE={path!r} cannot be read "
                                f"({exc.strerror or exc}); give the file holding the secret")
        return value

    def path(name: str, what: str) -> str:
        value = get(name)
        if value and not os.path.isfile(value):
            problems.append(f"{_P}{name}={value!r}: no such file; give the path of {what}")
        return value

    raw = get("SECURITY_PROTOCOL").upper()
    protocol = raw or hint or "PLAINTEXT"
    if raw and raw not in PROTOCOLS:
        problems.append(f"{_P}SECURITY_PROTOCOL={raw!r} is not a Kafka security protocol; "
                        f"use {', '.join(PROTOCOLS[:-1])} or {PROTOCOLS[-1]}")
        protocol = "PLAINTEXT"
    elif raw and hint and raw != hint:
        problems.append(f"{_P}SECURITY_PROTOCOL={raw} but the GOVERNOR_KAFKA_BOOTSTRAP prefix "
                        f"says {hint}; make them agree (or drop the prefix)")
    security = KafkaSecurity(
        protocol=protocol,
        ssl_ca_location=path("SSL_CA_LOCATION", "the CA certificate (PEM) that signed the "
                                                "broker's certificate"),
        ssl_cert_location=path("SSL_CERT_LOCATION", "the client certificate (PEM)"),
        ssl_key_location=path("SSL_KEY_LOCATION", "the client certificate's private key (PEM)"),
        ssl_key_password=secret("SSL_KEY_PASSWORD"),
        sasl_mechanism=get("SASL_MECHANISM").upper(),
        sasl_username=get("SASL_USERNAME"),
        sasl_password=secret("SASL_PASSWORD"),
        oauth_token_url=get("OAUTH_TOKEN_URL"),
        oauth_client_id=get("OAUTH_CLIENT_ID"),
        oauth_client_secret=secret("OAUTH_CLIENT_SECRET"),
        oauth_scope=get("OAUTH_SCOPE"))
    problems.extend(_inconsistencies(security))
    return security, problems


def _inconsistencies(s: KafkaSecurity) -> list[str]:
    """What does not fit together, with the variable to set."""
    found = []
    tls_set = [n for n, v in (("SSL_CA_LOCATION", s.ssl_ca_location),
                              ("SSL_CERT_LOCATION", s.ssl_cert_location),
                              ("SSL_KEY_LOCATION", s.ssl_key_location)) if v]
    if tls_set and not s.tls:
        found.append(f"{_P}{tls_set[0]} is set but the security protocol is {s.protocol}; "
                     f"set {_P}SECURITY_PROTOCOL=SSL (or SASL_SSL)")
    if bool(s.ssl_cert_location) != bool(s.ssl_key_location):
        given, missing = (("SSL_CERT_LOCATION", "SSL_KEY_LOCATION") if s.ssl_cert_location
                          else ("SSL_KEY_LOCATION", "SSL_CERT_LOCATION"))
        found.append(f"{_P}{given} is set without {_P}{missing}; a client certificate "
                     "needs both")
    mechanism = s.sasl_mechanism
    if mechanism and mechanism not in MECHANISMS:
        found.append(f"{_P}SASL_MECHANISM={mechanism!r} is not supported; use "
                     f"{', '.join(MECHANISMS[:-1])} or {MECHANISMS[-1]}")
    elif s.sasl and not mechanism:
        found.append(f"the security protocol is {s.protocol} but {_P}SASL_MECHANISM is not "
                     f"set; use {', '.join(MECHANISMS[:-1])} or {MECHANISMS[-1]}")
    elif mechanism and not s.sasl:
        found.append(f"{_P}SASL_MECHANISM is set but the security protocol is {s.protocol}; "
                     f"set {_P}SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)")
    elif mechanism == "OAUTHBEARER":
        unset = [n for n, v in (("OAUTH_TOKEN_URL", s.oauth_token_url),
                                ("OAUTH_CLIENT_ID", s.oauth_client_id),
                                ("OAUTH_CLIENT_SECRET", s.oauth_client_secret)) if not v]
        if unset:
            found.append(f"SASL OAUTHBEARER needs {', '.join(_P + n for n in unset)} "
                         "(an OIDC client-credentials grant)")
        elif not s.oauth_token_url.startswith(("https://", "http://")):
            found.append(f"{_P}OAUTH_TOKEN_URL={s.oauth_token_url!r} is not an http(s) URL")
    elif mechanism:
        if not s.sasl_username:
            found.append(f"SASL {mechanism} needs a user: set {_P}SASL_USERNAME")
        if not s.sasl_password:
            found.append(f"SASL {mechanism} needs a password: set {_P}SASL_PASSWORD "
                         f"(or {_P}SASL_PASSWORD_FILE)")
    return found
