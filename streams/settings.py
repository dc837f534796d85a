"""Every setting the workers and the ``governor`` CLI read, parsed once.

The agent's own variables live in :mod:`agents._settings`; names shared by both
(``GOVERNOR_KAFKA_BOOTSTRAP``, ``GOVERNOR_TOPIC_PREFIX``, ``GOVERNOR_VERDICT_KEY``, the
``GOVERNOR_KAFKA_*`` security settings) mean the same thing on both sides: the security
settings are read by one parser, :func:`agents.kafka_security.read_security`.

==================================  =====================================================
variable                            meaning (default)
==================================  =====================================================
GOVERNOR_KAFKA_BOOTSTRAP            Kafka bootstrap servers; empty: start the embedded
                                    broker (``governor up`` / ``demo``). A ``kafka://``
                                    prefix is dropped; ``ssl://``, ``kafka+ssl://``,
                                    ``sasl_ssl://`` set the security protocol
GOVERNOR_BROKER_PORT                the embedded broker's port on 127.0.0.1, the same
                                    at every start so running agents find it again
                                    (9192); 0: any free port
GOVERNOR_KAFKA_SECURITY_PROTOCOL    PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (PLAINTEXT)
GOVERNOR_KAFKA_SSL_CA_LOCATION      CA certificate (PEM) of the brokers' certificates
                                    (the system's CAs)
GOVERNOR_KAFKA_SSL_CERT_LOCATION    client certificate (PEM) (none)
GOVERNOR_KAFKA_SSL_KEY_LOCATION     its private key (PEM) (none)
GOVERNOR_KAFKA_SSL_KEY_PASSWORD     the key's password; ``…_FILE``: a file holding it
GOVERNOR_KAFKA_SSL_KEY_PASSWORD_FILE
GOVERNOR_KAFKA_SASL_MECHANISM       PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER
GOVERNOR_KAFKA_SASL_USERNAME        SASL user (PLAIN, SCRAM)
GOVERNOR_KAFKA_SASL_PASSWORD        its password; ``…_FILE``: a file holding it
GOVERNOR_KAFKA_SASL_PASSWORD_FILE
GOVERNOR_KAFKA_OAUTH_TOKEN_URL      OAUTHBEARER: OIDC token endpoint (client credentials)
GOVERNOR_KAFKA_OAUTH_CLIENT_ID      OAUTHBEARER: client id
GOVERNOR_KAFKA_OAUTH_CLIENT_SECRET  OAUTHBEARER: client secret; ``…_FILE``: a file
GOVERNOR_KAFKA_OAUTH_CLIENT_SECRET_FILE
GOVERNOR_KAFKA_OAUTH_SCOPE          OAUTHBEARER: scope to ask for (none)
GOVERNOR_CLICKHOUSE_URL             ``http(s)://user:pass@host:8123/db`` or
                                    ``chdb:///abs/path``; empty: embedded chDB in the
                                    data dir
GOVERNOR_DATA_DIR                   local state: chDB data, keys, stack file, the
                                    embedded broker's journal (.governor)
GOVERNOR_TOPIC_PREFIX               topic name prefix (governor)
GOVERNOR_VERDICT_KEY                HMAC-SHA256 key verdicts are signed with; empty with
                                    the embedded stack: generated into the data dir
GOVERNOR_STATE_KEY                  secret (32+ characters) the workers' state snapshots
                                    are authenticated with (HMAC-SHA256); workers only,
                                    never functions; empty with the embedded stack:
                                    generated into the data dir
GOVERNOR_TELEMETRY_AUTH             ``on``: telemetry decides only with its function's
                                    MAC (``GOVERNOR_FUNCTION_KEY`` on the function); the
                                    rest is stored flagged and counted. ``off``: trusted
                                    by the name it claims. Unset: on, except in the
                                    embedded stack
GOVERNOR_TELEMETRY_KEY              the workers' telemetry key, ``<id>:<secret>[,…]``,
                                    functions' keys are derived from; empty with the
                                    embedded stack: generated into the data dir
GOVERNOR_APP_ID                     Faust app id / consumer group (governor-worker)
GOVERNOR_WINDOW_SECONDS             feature window length (10)
GOVERNOR_LATENESS_SECONDS           windows close this long after their end; a cost
                                    event arriving later is stored but decides nothing
                                    (0.5)
GOVERNOR_MAX_EVENT_AGE_SECONDS      events dated further in the past go to the DLQ
                                    (604800: 7 days)
GOVERNOR_MAX_EVENT_LEAD_SECONDS     events dated further in the future go to the DLQ
                                    (300)
GOVERNOR_WARMUP_WINDOWS             windows of history before a function can be flagged (6)
GOVERNOR_BASELINE_WINDOWS           windows of history the baseline keeps (60)
GOVERNOR_ZSCORE_THRESHOLD           robust z-score that makes a window anomalous (6)
GOVERNOR_MIN_RATIO                  …and cost rate at least this × baseline (2)
GOVERNOR_ENFORCE_RATIO              a cost surge this × baseline or more is enforced;
                                    smaller ones are reported, not enforced (3)
GOVERNOR_ADAPT_WINDOWS              a lasting change below the enforcement ratio (a
                                    launch) becomes the new normal after this many
                                    windows (30)
GOVERNOR_LEARNING_WINDOWS           a function newly seen is watched this many windows
                                    (reported, learning its bursts) before Governor
                                    enforces on it (30)
GOVERNOR_MAX_FUNCTIONS              functions one worker holds decision state for,
                                    live or dormant (20000; about 80 KB each while
                                    active): room for a new one is made by dropping
                                    the function dormant longest, and when none is
                                    dormant the new one's telemetry is stored but not
                                    decided (``functions_refused``); 0: no limit
GOVERNOR_FAST_PATH_FACTOR           one invocation costing this × the baseline cost per
                                    invocation is reported at once, not at window close (20)
GOVERNOR_VERDICT_TTL_SECONDS        lifetime of every verdict (300)
GOVERNOR_HOLD_SECONDS               minimum time a throttle/isolate stays before release (30)
GOVERNOR_MIN_RPS                    a throttle below this rate isolates instead (0.2)
GOVERNOR_RELEASE_AFTER_SECONDS      a verdict is released once the function has looked
                                    normal this long (30)
GOVERNOR_COOLDOWN_SECONDS           a function flagged again this soon after a release
                                    holds twice as long as last time (120)
GOVERNOR_POLICY_DIR                 Rego policy bundle, reloaded when it changes
                                    (the bundle installed with Governor: policies/)
GOVERNOR_ALERTMANAGER_URL           Alertmanager v2 alerts endpoint for pages (none)
GOVERNOR_PAGERDUTY_URL              PagerDuty Events v2 endpoint (none; the public one is
                                    https://events.pagerduty.com/v2/enqueue)
GOVERNOR_PAGERDUTY_ROUTING_KEY      PagerDuty integration key (none)
GOVERNOR_PAGER_FILE                 append pages as JSON lines here; "-": the console
                                    (none)
GOVERNOR_PAGES_PER_HOUR             pages a team gets per hour before further incidents
                                    are folded into one summary page (6)
GOVERNOR_RUNBOOK_URL                runbook link put on every page; a relative one is
                                    taken from GOVERNOR_PUBLIC_URL (docs/runbook.md,
                                    which the worker serves; set your wiki page)
GOVERNOR_PUBLIC_URL                 the worker's HTTP address as on-call reach it, for the
                                    absolute links on pages: runbook, the incident's
                                    history (``/incidents/ID``: Alertmanager's
                                    ``generatorURL``) (http://QUERY_HOST:QUERY_PORT;
                                    localhost for 0.0.0.0)
GOVERNOR_PAGER_REFRESH_SECONDS      open incidents are re-asserted to Alertmanager this
                                    often, each alert's ``endsAt`` set 3 times as far
                                    ahead (60)
GOVERNOR_QUERY_HOST                 read-only query endpoint host (127.0.0.1)
GOVERNOR_QUERY_PORT                 read-only query endpoint port (6066)
GOVERNOR_QUERY_TOKEN                bearer token the query endpoint requires (none);
                                    needed when GOVERNOR_QUERY_HOST is not loopback
GOVERNOR_QUERY_THREADS              engine threads one analyst query may use (1), so
                                    a heavy query leaves the ingest its cores
GOVERNOR_QUERY_BACKLOG_ROWS_PER_SECOND
                                    while the ingest has a backlog, an analyst query
                                    started then reads at most this many rows a
                                    second (100000; 0: no limit), so the ingest
                                    catches up first
GOVERNOR_SINK_BATCH                 max events per ClickHouse insert (10000)
GOVERNOR_SINK_WITHIN_SECONDS        max wait to fill a batch (0.5)
GOVERNOR_REBALANCE_TIMEOUT_SECONDS  consumer-group rebalance timeout (3)
GOVERNOR_LOG_LEVEL                  worker log level: debug, info, warn, error (warn)
GOVERNOR_LOG_FORMAT                 worker log lines: ``text`` for people, ``json`` one
                                    object a line for log collectors (text)
GOVERNOR_ACTOR                      who operator commands are recorded as (the OS user)
GOVERNOR_INCIDENT_QUIET_SECONDS     an incident opened by anomalies alone resolves after
                                    this long without one (300)
GOVERNOR_PAGE_USD_PER_HOUR          a cost anomaly with at least this impact opens an
                                    incident without a verdict (1)
GOVERNOR_PAGE_CRITICAL_USD_PER_HOUR
                                    an incident with at least this impact is critical (10)
==================================  =====================================================
"""

from __future__ import annotations

import dataclasses
import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.kafka_security import KafkaSecurity, parse_bootstrap, read_security
from policies import POLICY_DIR
from streams.errors import SettingsError

ENV_PREFIX = "GOVERNOR_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved worker configuration; field ``x`` comes from ``GOVERNOR_X``."""

    kafka_bootstrap: str = ""
    broker_port: int = 9192
    kafka_security_protocol: str = ""
    kafka_ssl_ca_location: str = ""
    kafka_ssl_cert_location: str = ""
    kafka_ssl_key_location: str = ""
    kafka_ssl_key_password: str = dataclasses.field(default="", repr=False)
    kafka_ssl_key_password_file: str = ""
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = dataclasses.field(default="", repr=False)
    kafka_sasl_password_file: str = ""
    kafka_oauth_token_url: str = ""
    kafka_oauth_client_id: str = ""
    kafka_oauth_client_secret: str = dataclasses.field(default="", repr=False)
    kafka_oauth_client_secret_file: str = ""
    kafka_oauth_scope: str = ""
    clickhouse_url: str = ""
    data_dir: Path = Path(".governor")
    topic_prefix: str = "governor"
    verdict_key: str = ""
    state_key: str = ""
    telemetry_auth: str = ""
    telemetry_key: str = ""
    app_id: str = "governor-worker"
    window_seconds: float = 10.0
    lateness_seconds: float = 0.5
    max_event_age_seconds: float = 7 * 86400.0
    max_event_lead_seconds: float = 300.0
    warmup_windows: int = 6
    baseline_windows: int = 60
    zscore_threshold: float = 6.0
    min_ratio: float = 2.0
    enforce_ratio: float = 3.0
    adapt_windows: int = 30
    learning_windows: int = 30
    max_functions: int = 20_000
    fast_path_factor: float = 20.0
    verdict_ttl_seconds: float = 300.0
    hold_seconds: float = 30.0
    min_rps: float = 0.2
    release_after_seconds: float = 30.0
    cooldown_seconds: float = 120.0
    policy_dir: Path = POLICY_DIR
    alertmanager_url: str = ""
    pagerduty_url: str = ""
    pagerduty_routing_key: str = ""
    pager_file: str = ""
    pages_per_hour: int = 6
    runbook_url: str = "docs/runbook.md"
    public_url: str = ""
    pager_refresh_seconds: float = 60.0
    query_host: str = "127.0.0.1"
    query_port: int = 6066
    query_token: str = ""
    query_threads: int = 1
    query_backlog_rows_per_second: int = 100_000
    sink_batch: int = 10_000
    sink_within_seconds: float = 0.5
    rebalance_timeout_seconds: float = 3.0
    log_level: str = "warn"
    log_format: str = "text"
    actor: str = ""
    incident_quiet_seconds: float = 300.0
    page_usd_per_hour: float = 1.0
    page_critical_usd_per_hour: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``GOVERNOR_*`` variables; ``overrides`` (e.g. from CLI flags) win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = ENV_PREFIX + f.name.upper()
            raw = env.get(name, "").strip()
            if raw:
                values[f.name] = _parse(name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:  # a prefix on the servers says the protocol; the servers go on without it
            values["kafka_bootstrap"], hint = parse_bootstrap(values.get("kafka_bootstrap", ""))
        except ValueError as exc:
            raise SettingsError(f"{ENV_PREFIX}KAFKA_BOOTSTRAP: {exc}") from None
        given = str(values.get("kafka_security_protocol", "")).upper()
        if hint and given and given != hint:
            raise SettingsError(
                f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={given} but the {ENV_PREFIX}KAFKA_BOOTSTRAP "
                f"prefix says {hint}; make them agree (or drop the prefix)")
        if hint:
            values["kafka_security_protocol"] = hint
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = ("window_seconds", "lateness_seconds", "max_event_age_seconds",
                    "max_event_lead_seconds", "warmup_windows", "baseline_windows",
                    "zscore_threshold", "fast_path_factor",
                    "verdict_ttl_seconds", "sink_batch", "sink_within_seconds",
                    "rebalance_timeout_seconds")
        if not 0 <= self.broker_port <= 65535:
            raise SettingsError(f"{ENV_PREFIX}BROKER_PORT={self.broker_port}; use a port "
                                "(1-65535), or 0 for any free one")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be > 0")
        if self.enforce_ratio < 1 or self.adapt_windows < 1 or self.learning_windows < 0:
            raise SettingsError(
                f"{ENV_PREFIX}ENFORCE_RATIO must be >= 1, {ENV_PREFIX}ADAPT_WINDOWS >= 1 and "
                f"{ENV_PREFIX}LEARNING_WINDOWS >= 0")
        if self.max_functions < 0:
            raise SettingsError(f"{ENV_PREFIX}MAX_FUNCTIONS must be >= 0 (0: no limit)")
        if self.query_threads < 0 or self.query_backlog_rows_per_second < 0:
            raise SettingsError(
                f"{ENV_PREFIX}QUERY_THREADS and {ENV_PREFIX}QUERY_BACKLOG_ROWS_PER_SECOND must "
                "be >= 0 (0: the engine's default threads, no read limit)")
        if self.telemetry_auth not in ("", "on", "off"):
            raise SettingsError(
                f"{ENV_PREFIX}TELEMETRY_AUTH={self.telemetry_auth!r}; use on or off")
        if self.log_level not in ("debug", "info", "warn", "error"):
            raise SettingsError(
                f"{ENV_PREFIX}LOG_LEVEL={self.log_level!r}; use debug, info, warn or error")
        if self.log_format not in ("text", "json"):
            raise SettingsError(
                f"{ENV_PREFIX}LOG_FORMAT={self.log_format!r}; use text or json")
        loopback = self.query_host in ("127.0.0.1", "::1", "localhost")
        if not loopback and len(self.query_token) < 32:
            raise SettingsError(
                f"{ENV_PREFIX}QUERY_HOST={self.query_host} exposes the query endpoint beyond "
                f"this host: set {ENV_PREFIX}QUERY_TOKEN to a random token of at least 32 "
                "characters (clients send it as `Authorization: Bearer <token>`; governor "
                "query reads it from the same variable)")
        if self.kafka_bootstrap:
            self.kafka_security  # noqa: B018  (raises naming what is wrong)
        elif self.kafka_security_protocol.upper() not in ("", "PLAINTEXT"):
            raise SettingsError(
                f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                f"{ENV_PREFIX}KAFKA_BOOTSTRAP: the embedded broker is plaintext on loopback")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"{ENV_PREFIX}PUBLIC_URL={self.public_url!r}; use http(s)://host[:port]")
        if self.pager_refresh_seconds < 0:
            raise SettingsError(f"{ENV_PREFIX}PAGER_REFRESH_SECONDS must be >= 0 (0: never)")
        url = self.clickhouse_url
        if url and not url.startswith(("chdb://", "http://", "https://")):
            raise SettingsError(
                f"{ENV_PREFIX}CLICKHOUSE_URL={url!r}; use http(s)://host:8123 or chdb:///path")

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How every Kafka client of the workers and the CLI connects (TLS, SASL); a
        :class:`SettingsError` naming the variable when the settings do not fit."""
        env = {f"{ENV_PREFIX}{f.name.upper()}": str(getattr(self, f.name))
               for f in dataclasses.fields(self) if f.name.startswith("kafka_")}
        security, problems = read_security(env)
        if problems:
            raise SettingsError("; ".join(problems))
        return security

    @property
    def public_base(self) -> str:
        """``GOVERNOR_PUBLIC_URL`` without a trailing slash, or the worker's own address
        (``localhost`` when it listens on every interface)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.query_host in ("0.0.0.0", "::") else self.query_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.query_port}"

    def public_link(self, url: str) -> str:
        """``url`` made absolute against :attr:`public_base` (an absolute one as it is)."""
        return urllib.parse.urljoin(self.public_base + "/", url)

    @property
    def embedded_broker(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def authenticates_telemetry(self) -> bool:
        """Whether telemetry must carry its function's MAC to decide (see
        ``GOVERNOR_TELEMETRY_AUTH``)."""
        return self.telemetry_auth == "on" or (not self.telemetry_auth
                                               and not self.embedded_broker)

    @property
    def clickhouse_dsn(self) -> str:
        """The ClickHouse DSN in force (the embedded chDB path when none is set)."""
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'chdb').resolve()}"

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb://")

    def topic(self, kind: str) -> str:
        """Full topic name for ``spans``, ``costs``, ``verdicts`` …"""
        return f"{self.topic_prefix}.{kind}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def env_names() -> list[str]:
    """Every ``GOVERNOR_*`` variable this module reads."""
    return [ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)]


def _parse(name: str, raw: str, kind: Any) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            number = float(raw)
            if math.isfinite(number):
                return number
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a{'n integer' if kind == 'int' else ' number'}"
                            ) from None
    if kind == "Path":
        return Path(raw)
    return raw
