"""Every setting the agent reads, parsed once from the environment.

=============================  ==========================================================
variable                       meaning (default)
=============================  ==========================================================
GOVERNOR_DISABLED              ``1``/``true``: the decorator calls the handler untouched
GOVERNOR_KAFKA_BOOTSTRAP       Kafka bootstrap servers; empty: telemetry stays in memory
GOVERNOR_TOPIC_PREFIX          topic name prefix (``governor`` → ``governor.spans`` …)
GOVERNOR_VERDICT_KEY           HMAC-SHA256 key verdicts must be signed with; unset:
                               every verdict is rejected (and counted)
GOVERNOR_FUNCTION              function name (else the Lambda context, else handler name)
GOVERNOR_VERSION               function version (else ``AWS_LAMBDA_FUNCTION_VERSION``)
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
=============================  ==========================================================

The platform's own variables are read here too, once: ``AWS_LAMBDA_FUNCTION_NAME``,
``AWS_LAMBDA_FUNCTION_VERSION``, ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``,
``AWS_LAMBDA_LOG_STREAM_NAME`` and the region (``AWS_REGION``, ``FUNCTION_REGION``,
``REGION_NAME``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from agents._errors import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Resolved agent configuration. Build with :meth:`from_env` or directly in tests."""

    disabled: bool = False
    kafka_bootstrap: str = ""
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        """Read every ``GOVERNOR_*`` variable the agent knows; reject bad values."""
        env = os.environ if env is None else env
        in_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        return cls(
            disabled=_flag(env, "GOVERNOR_DISABLED", False),
            kafka_bootstrap=env.get("GOVERNOR_KAFKA_BOOTSTRAP", "").strip(),
            topic_prefix=env.get("GOVERNOR_TOPIC_PREFIX", "governor").strip() or "governor",
            verdict_key=env.get("GOVERNOR_VERDICT_KEY", "").encode(),
            function=env.get("GOVERNOR_FUNCTION", "").strip(),
            version=env.get("GOVERNOR_VERSION", env.get("AWS_LAMBDA_FUNCTION_VERSION", "")),
            team=env.get("GOVERNOR_TEAM", ""),
            memory_mb=_int(env, "GOVERNOR_MEMORY_MB",
                           _int(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0)),
            provider=env.get("GOVERNOR_PROVIDER", "aws").strip() or "aws",
            tenant=env.get("GOVERNOR_TENANT", ""),
            prices_file=env.get("GOVERNOR_PRICES_FILE", "").strip(),
            egress=_flag(env, "GOVERNOR_EGRESS", False),
            egress_internal=tuple(n.strip() for n in env["GOVERNOR_EGRESS_INTERNAL"].split(",")
                                  if n.strip()) if "GOVERNOR_EGRESS_INTERNAL" in env else None,
            fail_closed=_flag(env, "GOVERNOR_FAIL_CLOSED", False),
            verdict_stale_seconds=_int(env, "GOVERNOR_VERDICT_STALE_SECONDS", 60, minimum=1),
            queue_size=_int(env, "GOVERNOR_QUEUE_SIZE", 2_000, minimum=1),
            export_interval_ms=_int(env, "GOVERNOR_EXPORT_INTERVAL_MS", 200, minimum=1),
            flush_on_return=_flag(env, "GOVERNOR_FLUSH_ON_RETURN", in_lambda),
            flush_timeout_ms=_int(env, "GOVERNOR_FLUSH_TIMEOUT_MS", 50),
            platform_function=env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            region=(env.get("AWS_REGION") or env.get("FUNCTION_REGION")
                    or env.get("REGION_NAME") or ""),
            instance=env.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
        )

    def topic(self, kind: str) -> str:
        """Full topic name for ``spans``, ``costs``, ``verdicts`` …"""
        return f"{self.topic_prefix}.{kind}"


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use 1/0, true/false, on/off")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be >= {minimum}")
    return value
