"""What a worker needs before its app starts: topics, migrations, the verdict and
state keys, the verdict partitions, the functions' saved decision state, the policy bundle and
the live thresholds."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from streams.control.follower import ControlFollower
from streams.decisions.policy import PolicyEngine
from streams.decisions.snapshots import load_snapshots
from streams.errors import StackError
from streams.kafka import ensure_topics, partition_count, wait_for_kafka
from streams.keys import load_state_key, load_telemetry_keys, load_verdict_key
from streams.pipeline.authn import TelemetryAuth
from streams.settings import Settings
from streams.storage.clickhouse import connect, migrate

log = logging.getLogger("governor.worker")


@dataclass(frozen=True)
class Prepared:
    """What a worker needs before its app starts."""

    clickhouse: Any
    verdict_key: bytes
    state_key: bytes  # the snapshots' (workers only)
    verdict_partitions: int
    snapshots: dict[str, bytes]
    policies: PolicyEngine
    control: ControlFollower  # live thresholds, followed from the control topic
    telemetry_auth: TelemetryAuth | None = None  # None: telemetry trusted by its name


def prepare(settings: Settings) -> Prepared:
    """Everything :class:`Prepared` holds, checked before the app starts.

    A missing or weak verdict or state key, or a malformed policy bundle, stops the
    worker here, saying what to fix.
    """
    key = load_verdict_key(settings)
    state_key = load_state_key(settings)
    telemetry_keys = load_telemetry_keys(settings)
    policies = PolicyEngine(settings.policy_dir)
    security = settings.kafka_security
    wait_for_kafka(settings.kafka_bootstrap, timeout_s=30, security=security)
    created = ensure_topics(settings.kafka_bootstrap, settings.topic_prefix, security=security)
    if created:
        log.info("created topics: %s", ", ".join(created))
    client = connect(settings.clickhouse_dsn)
    applied = migrate(client)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    partitions = partition_count(settings.kafka_bootstrap, settings.topic("verdicts"),
                                 security=security)
    if not partitions:
        raise StackError(f"topic {settings.topic('verdicts')} does not exist; run "
                         "'governor up' or create it from infra/kafka/topics.toml")
    snapshots = load_snapshots(settings.kafka_bootstrap, settings.topic("state"),
                               security=security)
    log.info("restoring the state of %d functions", len(snapshots))
    control = ControlFollower(settings.kafka_bootstrap, settings, key).start()
    if not control.wait_synced(30):
        log.warning("live thresholds not fully read in 30s; defaults apply until they are")
    return Prepared(client, key, state_key, partitions, snapshots, policies, control,
                    TelemetryAuth(telemetry_keys) if telemetry_keys else None)
