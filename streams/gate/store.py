"""The gate and ClickHouse: the history it predicts from, and its decisions recorded
as ``policy_decisions`` rows like the workers' own, with the stage, the git revision
and the bundle digest.

``governor gate`` needs no running stack: it reads the ClickHouse the settings name
(a server, or the local chDB directory, through a running worker's query endpoint
when one owns it) and, without one, predicts from the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from schemas import PolicyDecision
from streams.errors import GateError, QueryError, StackError
from streams.gate.history import History
from streams.gate.result import GateReport
from streams.ops.query import run_query
from streams.ops.stackfile import read_stack_file
from streams.settings import Settings
from streams.storage.clickhouse import ClickHouseSink, connect, migrate


def load_history(settings: Settings) -> tuple[History, str]:
    """The history, and a note when there is none to read (empty when there is)."""
    dsn = settings.clickhouse_dsn
    if settings.embedded_clickhouse and not Path(dsn.removeprefix("chdb://")).is_dir():
        return History.empty(), f"no history: {dsn} does not exist"

    def query(sql: str, params: Mapping[str, str]) -> Sequence[Sequence[Any]]:
        return run_query(settings, sql, params=params).rows

    try:
        return History.load(query), ""
    except (QueryError, StackError) as exc:
        return History.empty(), f"no history: {exc}"


def decisions(report: GateReport) -> list[PolicyDecision]:
    """One event per finding; a prediction's figures go with each of its function's."""
    events = []
    for result in report.results:
        predicted: dict[str, Any] = {}
        if result.prediction is not None:
            p = result.prediction
            predicted = {"predicted_monthly_cost": p.monthly_usd, "predicted_low": p.low_usd,
                         "predicted_high": p.high_usd, "cost_risk": p.score,
                         "prediction_method": p.method}
        for f in result.findings:
            events.append(PolicyDecision(
                function=f.function, policy=f.policy, decision=f.decision, rate_rps=None,
                reason=f.reason, severity=f.severity, team=result.change.spec.team,
                version=report.revision, bundle=report.bundle, stage=report.stage,
                revision=report.revision, inputs={**predicted, **f.inputs,
                                                  "source": str(f.source)}))
    return events


def writable(settings: Settings) -> Any:
    """A client on the ClickHouse of ``settings`` to record into, migrated.

    The embedded engine cannot be written while a running stack owns it.
    """
    if settings.embedded_clickhouse and read_stack_file(settings):
        raise GateError(f"--record: {settings.clickhouse_dsn} is owned by a running "
                        "`governor up`; stop it, or set GOVERNOR_CLICKHOUSE_URL to a server")
    client = connect(settings.clickhouse_dsn)
    migrate(client)
    return client


def record(client: Any, report: GateReport) -> int:
    """Write the report's decisions; the rows written."""
    events = decisions(report)
    if events:
        ClickHouseSink(client).write(events)
    return len(events)
