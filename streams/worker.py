"""Running a worker: prepare topics and ClickHouse, then run the Faust app."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.clickhouse import connect, migrate
from streams.control import ControlFollower
from streams.errors import StackError
from streams.policy import PolicyEngine
from streams.settings import Settings
from streams.snapshots import load_snapshots
from streams.stack import ensure_topics, removing, verdict_key, wait_for_kafka, write_stack_file

log = logging.getLogger("governor.worker")


def verdict_partitions(bootstrap: str, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    found = meta.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise StackError(f"topic {topic} does not exist; run 'governor up' or create it "
                         "from infra/kafka/topics.toml")
    return len(found.partitions)


@dataclass(frozen=True)
class Prepared:
    """What a worker needs before its app starts."""

    clickhouse: Any
    verdict_key: str
    verdict_partitions: int
    snapshots: dict[str, bytes]
    policies: PolicyEngine
    control: ControlFollower  # live thresholds, followed from the control topic


def prepare(settings: Settings) -> Prepared:
    """Topics, migrations, signing key, verdict partitions, the functions' saved
    decision state, the policy bundle and the live thresholds, before the app starts.

    A malformed policy bundle stops the worker here, with the file and line.
    """
    policies = PolicyEngine(settings.policy_dir)
    wait_for_kafka(settings.kafka_bootstrap, timeout_s=30)
    created = ensure_topics(settings.kafka_bootstrap, settings.topic_prefix)
    if created:
        log.info("created topics: %s", ", ".join(created))
    client = connect(settings.clickhouse_dsn)
    applied = migrate(client)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    snapshots = load_snapshots(settings.kafka_bootstrap, settings.topic("state"))
    log.info("restoring the state of %d functions", len(snapshots))
    control = ControlFollower(settings.kafka_bootstrap, settings).start()
    if not control.wait_synced(30):
        log.warning("live thresholds not fully read in 30s; defaults apply until they are")
    return Prepared(client, verdict_key(settings),
                    verdict_partitions(settings.kafka_bootstrap, settings.topic("verdicts")),
                    snapshots, policies, control)


def run_worker(settings: Settings, extra_info: dict[str, Any] | None = None) -> int:
    """Run the worker until interrupted; return its exit code.

    Writes the stack file (where the query endpoint and broker are) while it runs.
    """
    import faust

    from streams.app import create_app

    app = create_app(settings, prepare(settings))
    info = {"bootstrap": settings.kafka_bootstrap, "clickhouse": settings.clickhouse_dsn,
            "query_url": f"http://{settings.query_host}:{settings.query_port}",
            "topic_prefix": settings.topic_prefix, **(extra_info or {})}
    stack_file: Path = write_stack_file(settings, **info)
    with removing(stack_file):
        worker = faust.Worker(app, loglevel=settings.log_level, quiet=True,
                              redirect_stdouts=False, override_logging=True)
        worker.spinner = None  # its terminal animation garbles `governor up` output
        try:
            worker.execute_from_commandline()
        except SystemExit as exit_:
            return int(exit_.code or 0)
        finally:  # after the timers and the ingest have stopped: nothing more is paged
            app.governor.pager.close(5.0)  # type: ignore[attr-defined]
            app.governor.control.stop()  # type: ignore[attr-defined]
    return 0
