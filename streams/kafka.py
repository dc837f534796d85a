"""Kafka administration the workers and operator commands share: is the broker up,
do the topics exist, how many partitions has one. Any Kafka (Apache Kafka, MSK,
Confluent, Redpanda) or the embedded Tansu broker; each function connects with the
``security`` it is given (``Settings.kafka_security``: TLS, SASL).
"""

from __future__ import annotations

import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

from agents.kafka_security import PLAINTEXT, KafkaSecurity
from infra import TOPICS_FILE
from streams.errors import StackError


def _admin(bootstrap: str, security: KafkaSecurity, **own: Any) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient(security.client_config(bootstrap, {"log_level": 0, **own}))


def wait_for_kafka(bootstrap: str, timeout_s: float,
                   process: subprocess.Popen[bytes] | None = None,
                   security: KafkaSecurity = PLAINTEXT) -> None:
    """Block until the broker at ``bootstrap`` answers a metadata request; a broker
    that refuses the TLS handshake or the SASL login is an error at once."""
    from confluent_kafka import KafkaError

    refused: list[str] = []

    def on_error(err: Any) -> None:
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            refused.append(err.str())

    admin = _admin(bootstrap, security, error_cb=on_error)
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise StackError(f"the broker exited with status {process.returncode} at start")
        try:
            admin.list_topics(timeout=1.0)
            return
        except Exception as exc:
            admin.poll(0)
            if refused:
                raise StackError(
                    f"Kafka at {bootstrap} refused the connection ({security.describe()}): "
                    f"{refused[0]}; check GOVERNOR_KAFKA_SECURITY_PROTOCOL and the "
                    "GOVERNOR_KAFKA_SSL_* / GOVERNOR_KAFKA_SASL_* settings") from None
            if time.monotonic() > deadline:
                raise StackError(f"no Kafka broker answered at {bootstrap} within "
                                 f"{timeout_s:.0f}s ({security.describe()}): {exc}") from None
            time.sleep(0.1)


def topic_spec(path: Path = TOPICS_FILE) -> dict[str, dict[str, Any]]:
    """The topic spec: ``{name: {"partitions": n, "config": {...}}}``."""
    with path.open("rb") as fh:
        return tomllib.load(fh)


def ensure_topics(bootstrap: str, prefix: str, path: Path = TOPICS_FILE,
                  security: KafkaSecurity = PLAINTEXT) -> list[str]:
    """Create the spec's topics that do not exist yet; return the ones created."""
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap, security)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [NewTopic(f"{prefix}.{name}", int(spec["partitions"]), 1,
                       config={k: str(v) for k, v in spec.get("config", {}).items()})
              for name, spec in topic_spec(path).items()
              if f"{prefix}.{name}" not in existing]
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=10).items() if wanted else ():
        try:
            future.result()
            created.append(name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"cannot create topic {name}: {exc}") from exc
    return created


def partition_count(bootstrap: str, topic: str, timeout_s: float = 10.0,
                    security: KafkaSecurity = PLAINTEXT) -> int:
    """Partitions of ``topic``; 0 if it does not exist."""
    meta = _admin(bootstrap, security).list_topics(topic, timeout=timeout_s)
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        return 0
    return len(found.partitions)
