"""Every setting the agent reads, parsed once from the environment.

=============================  ==========================================================
variable                       meaning (default)
=============================  ==========================================================
GOVERNOR_DISABLED              ``1``/``true``: the decorator calls the handler untouched
GOVERNOR_KAFKA_BOOTSTRAP       Kafka bootstrap servers, ``host:port[,host:port]`` (a
                               ``kafka://`` prefix is dropped; ``ssl://`` and
                               ``sasl_ssl://`` also say the security protocol); empty:
                               telemetry stays in memory
GOVERNOR_KAFKA_SECURITY_*,     TLS and SASL: see :mod:`agents.kafka_security` (the same
GOVERNOR_KAFKA_SSL_*,          variables as the workers'); a bad one turns telemetry
GOVERNOR_KAFKA_SASL_*,         off (never plaintext instead), with the problem named
GOVERNOR_KAFKA_OAUTH_*
GOVERNOR_TOPIC_PREFIX          topic name prefix (``governor`` → ``governor.spans`` …)
GOVERNOR_VERDICT_KEY           HMAC-SHA256 key verdicts must be signed with; unset:
                               every verdict is rejected (and counted)
GOVERNOR_REGION                cloud region (else ``AWS_REGION``, ``AWS_DEFAULT_REGION``,
                               ``FUNCTION_REGION``, ``GOOGLE_CLOUD_REGION``,
                               ``REGION_NAME``)
GOVERNOR_FUNCTION              function name (else the Lambda context, else handler name)
GOVERNOR_VERSION               function version (else ``AWS_LAMBDA_FUNCTION_VERSION``,
                               else the context; outside Lambda ``unknown``)
GOVERNOR_TEAM                  owning team (empty)
GOVERNOR_MEMORY_MB             configured memory (else ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``,
                               else the context, else 128)
GOVERNOR_PROVIDER              price catalogue entry: ``aws``, ``aws-arm64``, ``gcp``,
                               ``azure`` (``aws``)
GOVERNOR_PRICES_FILE           TOML file overriding/adding price entries (none)
GOVERNOR_TENANT                tenant label (empty)
GOVERNOR_EGRESS                ``1``: count outbound bytes per invocation (off)
GOVERNOR_EGRESS_INTERNAL       comma-separated CIDRs not counted as egress (loopback,
                               private and link-local ranges)
GOVERNOR_FAIL_CLOSED           ``1``: refuse calls until the verdicts are known and fresh
                               (off: fail-open, run when no verdict is known)
GOVERNOR_VERDICT_STALE_SECONDS fail-closed: verdicts older than this count as unknown (60)
GOVERNOR_QUEUE_SIZE            invocations held for export before dropping (2000)
GOVERNOR_EXPORT_INTERVAL_MS    background export period (200)
GOVERNOR_FLUSH_ON_RETURN       flush telemetry before returning (on inside AWS Lambda)
GOVERNOR_FLUSH_TIMEOUT_MS      time budget of that flush (50)
GOVERNOR_EXTENSION             ``0``: do not use the Lambda extension even where the
                               layer runs it (on: hand telemetry to it when its socket
                               is there; no flush-on-return then)
GOVERNOR_EXTENSION_SOCKET      the extension's socket (/tmp/governor-extension.sock)
GOVERNOR_REDACT                ``0``: export span attributes as they are (on: personal
                               data is scrubbed before export, see ``agents._redact``)
GOVERNOR_REDACT_VALUES         value patterns scrubbed inside strings, comma-separated
                               (``email,card,token,ip``; ``none``)
GOVERNOR_REDACT_KEYS           extra attribute-key regex whose values are scrubbed whole
GOVERNOR_REDACT_PATTERNS       extra value regexes, as a JSON list of strings
GOVERNOR_FUNCTION_KEY          this function's telemetry key (``governor keys function
                               NAME --team TEAM``): records carry its MAC, so workers
                               trust them as this function's (and its team's);
                               unset: sent unauthenticated
=============================  ==========================================================

A bad value is never fatal: it is logged once (naming the variable, the value and what
is accepted) and the default is used — unless ``GOVERNOR_FAIL_CLOSED`` is on, when it is
a :class:`~agents.ConfigurationError`. The platform's own variables are read here too,
once: ``AWS_LAMBDA_FUNCTION_NAME``,
``AWS_LAMBDA_FUNCTION_VERSION``, ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``,
``AWS_LAMBDA_LOG_STREAM_NAME`` and the region.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from agents._auth import parse_function_key
from agents._errors import ConfigurationError
from agents._redact import VALUES
from agents.kafka_security import PLAINTEXT, KafkaSecurity, parse_bootstrap, read_security

REDACT_VALUES = tuple(VALUES)
EXTENSION_SOCKET = "/tmp/governor-extension.sock"
"""Where the Lambda extension listens (Lambda's ``/tmp`` is shared with the function)."""
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Resolved agent configuration. Build with :meth:`from_env` or directly in tests.

    ``problems`` lists the variables that had a bad value, each with what was used
    instead; the runtime logs them once. With ``fail_closed`` set they are raised
    (:class:`ConfigurationError`) instead: a function that must not run ungoverned
    must not run misconfigured either.
    """

    disabled: bool = False
    kafka_bootstrap: str = ""
    kafka_security: KafkaSecurity = PLAINTEXT
    topic_prefix: str = "governor"
    verdict_key: bytes = b""
    function: str = ""
    version: str = ""
    team: str = ""
    memory_mb: int = 0
    provider: str = "aws"
    tenant: str = ""
    prices_file: str = ""
    egress: bool = False
    egress_internal: tuple[str, ...] | None = None
    fail_closed: bool = False
    verdict_stale_seconds: int = 60
    queue_size: int = 2_000
    export_interval_ms: int = 200
    flush_on_return: bool = False
    flush_timeout_ms: int = 50
    platform_function: str = ""  # the platform's name for the function, if it says
    region: str = ""
    instance: str = ""  # the platform's name for this instance (its log stream)
    extension_socket: str = ""  # the Lambda extension's socket, when it is there
    redact: bool = True
    redact_values: tuple[str, ...] = REDACT_VALUES
    redact_keys: str = ""
    redact_patterns: tuple[str, ...] = ()
    function_key: str = ""
    problems: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        """Read every ``GOVERNOR_*`` variable the agent knows. A bad value is a problem
        (the default is used) — or, when fail-closed, a :class:`ConfigurationError`."""
        env = os.environ if env is None else env
        r = _Reader(env)
        in_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        bootstrap, security = r.kafka("GOVERNOR_KAFKA_BOOTSTRAP")
        settings = cls(
            disabled=r.flag("GOVERNOR_DISABLED", False),
            kafka_bootstrap=bootstrap,
            kafka_security=security,
            topic_prefix=env.get("GOVERNOR_TOPIC_PREFIX", "governor").strip() or "governor",
            verdict_key=env.get("GOVERNOR_VERDICT_KEY", "").encode(),
            function=env.get("GOVERNOR_FUNCTION", "").strip(),
            version=env.get("GOVERNOR_VERSION", env.get("AWS_LAMBDA_FUNCTION_VERSION", "")),
            team=env.get("GOVERNOR_TEAM", ""),
            memory_mb=r.integer("GOVERNOR_MEMORY_MB",
                            r.integer("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0)),
            provider=env.get("GOVERNOR_PROVIDER", "aws").strip() or "aws",
            tenant=env.get("GOVERNOR_TENANT", ""),
            prices_file=env.get("GOVERNOR_PRICES_FILE", "").strip(),
            egress=r.flag("GOVERNOR_EGRESS", False),
            egress_internal=tuple(n.strip() for n in env["GOVERNOR_EGRESS_INTERNAL"].split(",")
                                  if n.strip()) if "GOVERNOR_EGRESS_INTERNAL" in env else None,
            fail_closed=r.flag("GOVERNOR_FAIL_CLOSED", False),
            verdict_stale_seconds=r.integer("GOVERNOR_VERDICT_STALE_SECONDS", 60, minimum=1),
            queue_size=r.integer("GOVERNOR_QUEUE_SIZE", 2_000, minimum=1),
            export_interval_ms=r.integer("GOVERNOR_EXPORT_INTERVAL_MS", 200, minimum=1),
            flush_on_return=r.flag("GOVERNOR_FLUSH_ON_RETURN", in_lambda),
            flush_timeout_ms=r.integer("GOVERNOR_FLUSH_TIMEOUT_MS", 50),
            platform_function=env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            region=(env.get("GOVERNOR_REGION") or env.get("AWS_REGION")
                    or env.get("AWS_DEFAULT_REGION") or env.get("FUNCTION_REGION")
                    or env.get("GOOGLE_CLOUD_REGION") or env.get("REGION_NAME") or ""),
            instance=env.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
            extension_socket=_extension(env, r.flag("GOVERNOR_EXTENSION", True)),
            redact=r.flag("GOVERNOR_REDACT", True),
            redact_values=r.choices("GOVERNOR_REDACT_VALUES", REDACT_VALUES),
            redact_keys=r.regex("GOVERNOR_REDACT_KEYS"),
            redact_patterns=r.regexes("GOVERNOR_REDACT_PATTERNS"),
            function_key=r.function_key("GOVERNOR_FUNCTION_KEY"),
            problems=tuple(r.problems),
        )
        if settings.verdict_key.startswith(b"ed25519:"):
            settings = dataclasses.replace(settings, problems=(*settings.problems, (
                "GOVERNOR_VERDICT_KEY holds the workers' private key: this function could "
                "sign verdicts for every other; give it the public key (ed25519-pub:…, "
                "printed by `governor up`)")))
        if settings.fail_closed and settings.problems:
            raise ConfigurationError("; ".join(settings.problems)
                                     + " (GOVERNOR_FAIL_CLOSED is set: refusing to run)")
        return settings

    def topic(self, kind: str) -> str:
        """Full topic name for ``spans``, ``costs``, ``verdicts`` …"""
        return f"{self.topic_prefix}.{kind}"


def _extension(env: Mapping[str, str], wanted: bool) -> str:
    """The Lambda extension's socket if it is listening (the layer is installed)."""
    path = env.get("GOVERNOR_EXTENSION_SOCKET", EXTENSION_SOCKET)
    return path if wanted and os.path.exists(path) else ""


class _Reader:
    """Parses variables leniently, noting each bad value and the default used."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        self.problems.append(f"{name}={raw!r} is not a boolean (use 1/0, true/false, "
                             f"on/off); using {'on' if default else 'off'}")
        return default

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not an integer; using {default}")
            return default
        if value < minimum:
            self.problems.append(f"{name}={value} must be >= {minimum}; using {default}")
            return default
        return value

    def choices(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self.env.get(name)
        if raw is None:
            return default
        chosen = tuple(c.strip().lower() for c in raw.split(",") if c.strip())
        if chosen == ("none",):
            return ()
        unknown = [c for c in chosen if c not in default]
        if unknown:
            self.problems.append(f"{name}={raw!r}: unknown {', '.join(unknown)} (use some of "
                                 f"{', '.join(default)}, or none); using all")
            return default
        return chosen

    def regex(self, name: str) -> str:
        raw = self.env.get(name, "").strip()
        try:
            re.compile(raw)
        except re.error as exc:
            self.problems.append(f"{name}={raw!r} is not a regular expression ({exc}); "
                                 "ignored")
            return ""
        return raw

    def function_key(self, name: str) -> str:
        raw = self.env.get(name, "").strip()
        if raw:
            try:
                parse_function_key(raw)
            except ValueError as exc:
                self.problems.append(f"{name} is malformed ({exc}); telemetry is sent "
                                     "unauthenticated: workers store it flagged and it "
                                     "drives no verdict")
                return ""
        return raw

    def regexes(self, name: str) -> tuple[str, ...]:
        raw = self.env.get(name, "").strip()
        if not raw:
            return ()
        try:
            patterns = json.loads(raw)
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ValueError("not a list of strings")
            for pattern in patterns:
                re.compile(pattern)
        except (ValueError, re.error) as exc:
            self.problems.append(f"{name}={raw!r} is not a JSON list of regular expressions "
                                 f"({exc}); ignored")
            return ()
        return tuple(patterns)

    def kafka(self, name: str) -> tuple[str, KafkaSecurity]:
        """The bootstrap servers (host:port[,host:port]; a ``kafka://`` prefix is
        dropped, ``ssl://`` and the like say the security protocol) and how to connect
        (:mod:`agents.kafka_security`). A problem with either turns telemetry off:
        never plaintext instead of the protocol asked for."""
        raw = self.env.get(name, "")
        try:
            bootstrap, hint = parse_bootstrap(raw)
        except ValueError as exc:
            self.problems.append(f"{name}={raw!r}: {exc}; telemetry stays in memory")
            return "", PLAINTEXT
        if not bootstrap:
            return "", PLAINTEXT
        security, problems = read_security(self.env, hint)
        if problems:
            self.problems.extend(f"{p}; telemetry stays in memory" for p in problems)
            return "", PLAINTEXT
        return bootstrap, security
