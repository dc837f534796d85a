"""The in-function agent: ``from agents import govern``.

>>> from agents import govern
>>> @govern(function="hello", memory_mb=256)
... def handler(event, context):
...     return {"statusCode": 200}
>>> handler({}, None)
{'statusCode': 200}
"""

import logging

from agents._context import record_cost
from agents._cost import Price, load_prices
from agents._decorator import govern, http_fallback
from agents._egress import EgressPolicy
from agents._errors import (
    ConfigurationError,
    EgressBlocked,
    FunctionBlocked,
    FunctionIsolated,
    FunctionThrottled,
    GovernorError,
)
from agents._export import BatchProcessor, Exporter, ExportResult, InMemoryExporter, KafkaExporter
from agents._runtime import Runtime, configure, get_runtime, shutdown
from agents._settings import AgentSettings
from agents._verdicts import TokenBucket, VerdictCache
from agents._wire import Wire

logging.getLogger("governor").addHandler(logging.NullHandler())


def stats() -> dict[str, int]:
    """The agent's self-metrics, in events: ``produced`` (handed to Kafka), ``dropped_*``
    by reason (queue full, buffer full, delivery failed, no broker …), verdicts accepted
    and rejected by reason."""
    return get_runtime().stats.snapshot()


def flush(timeout_s: float = 1.0) -> bool:
    """Export queued telemetry now; ``True`` if delivered within ``timeout_s``."""
    return get_runtime().flush(timeout_s)


__all__ = [
    "AgentSettings",
    "BatchProcessor",
    "ConfigurationError",
    "EgressBlocked",
    "EgressPolicy",
    "ExportResult",
    "Exporter",
    "FunctionBlocked",
    "FunctionIsolated",
    "FunctionThrottled",
    "GovernorError",
    "InMemoryExporter",
    "KafkaExporter",
    "Price",
    "Runtime",
    "TokenBucket",
    "VerdictCache",
    "Wire",
    "configure",
    "flush",
    "get_runtime",
    "govern",
    "http_fallback",
    "load_prices",
    "record_cost",
    "shutdown",
    "stats",
]
