"""On-call's word on an incident (``governor feedback``): recorded, and used.

Every judgement becomes a :class:`~schemas.Feedback` on the feedback topic (and the
``feedback`` table), so each function's and each detector's precision is one query
away (``infra/clickhouse/queries/feedback_precision.sql``). A *false alarm* on a cost
incident also teaches the function: its ``min_ratio`` is raised above the largest cost
ratio the incident's anomalies showed (× :data:`MARGIN`), so the same pattern does not
page again. That is an ordinary live-threshold change — audited under the actor, with a
reason naming the incident, undone by ``governor thresholds undo``. A confirmation
changes nothing. Incidents of other kinds (error rate, latency, policies) are recorded
only: their evidence is not a cost ratio.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from schemas import Feedback, Judgement, ThresholdChange, encode
from streams.control.commands import (
    bootstrap_for,
    default_actor,
    publish_records,
    read_control,
    set_thresholds,
)
from streams.errors import ControlError
from streams.settings import Settings
from streams.storage.clickhouse import QueryResult

MARGIN = 1.25
"""A false alarm's ``min_ratio`` is this × the largest ratio its anomalies showed."""
MAX_RATIO = 1000.0
"""The most a false alarm may raise ``min_ratio`` to (the registry's bound is higher)."""
_INCIDENT_ID = re.compile(r"^[0-9a-f]{1,64}$")

Query = Callable[[str], QueryResult]


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What the history says of one incident."""

    incident_id: str
    function: str
    team: str
    kind: str
    detector: str  # of the anomaly with the largest cost ratio ("" if none)
    ratio: float  # that ratio (0.0 if no cost anomaly)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The feedback published, and the threshold change it made (if any)."""

    feedback: Feedback
    changes: list[ThresholdChange]


def lookup(query: Query, incident_id: str) -> IncidentFacts:
    """The incident ``incident_id`` and its strongest cost anomaly, from ClickHouse."""
    if not _INCIDENT_ID.match(incident_id):
        raise ControlError(f"incident id {incident_id!r}: expected the hex id a page carries "
                           "(the Alertmanager label incident_id, the PagerDuty dedup_key)")
    found = query(
        "SELECT function, argMax(team, time), argMax(kind, time), min(opened_at), max(time) "
        f"FROM incidents WHERE incident_id = '{incident_id}' GROUP BY function").rows
    if not found:
        raise ControlError(f"no incident {incident_id} in the history (incidents table); "
                           "check the id on the page")
    function, team, kind, opened, last = found[0]
    anomalies = query(
        "SELECT detector, features, baseline FROM anomalies "
        f"WHERE function = {_quote(str(function))} "
        f"AND time >= toDateTime64('{_iso(opened)}', 9, 'UTC') - INTERVAL 1 MINUTE "
        f"AND time <= toDateTime64('{_iso(last)}', 9, 'UTC')").rows
    detector, ratio = "", 0.0
    for name, features, baseline in anomalies:
        observed = _figure(features, "cost_per_s_warm") or _figure(features, "cost_per_s")
        base = _figure(baseline, "cost_per_s")
        if base > 0 and observed / base > ratio:
            detector, ratio = str(name), observed / base
    return IncidentFacts(incident_id, str(function), str(team), str(kind), detector, ratio)


def give_feedback(settings: Settings, facts: IncidentFacts, judgement: Judgement,
                  reason: str, actor: str | None = None) -> Recorded:
    """Record ``judgement`` on the incident; a false alarm on a cost incident raises the
    function's ``min_ratio`` above what the incident showed."""
    if not reason.strip():
        raise ControlError("feedback needs a reason (--reason TEXT)")
    actor = actor or default_actor(settings)
    changes: list[ThresholdChange] = []
    if judgement is Judgement.FALSE_ALARM and facts.ratio > 0:
        current = float(read_control(settings).effective(facts.function, facts.team)
                        ["min_ratio"] or settings.min_ratio)
        wanted = round(min(MAX_RATIO, facts.ratio * MARGIN), 2)
        if wanted > current:
            changes = set_thresholds(
                settings, facts.function, {"min_ratio": wanted}, actor,
                reason=f"false alarm on incident {facts.incident_id} ({facts.detector}, "
                       f"{facts.ratio:.1f}x): {reason.strip()}")
    feedback = Feedback(
        function=facts.function, incident_id=facts.incident_id, judgement=judgement,
        detector=facts.detector, kind=facts.kind, ratio=round(facts.ratio, 4), actor=actor,
        reason=reason.strip(), change_id=changes[0].change_id if changes else "")
    publish_records(bootstrap_for(settings), [
        (settings.topic("feedback"), facts.function.encode(), encode(feedback), None)],
        security=settings.kafka_security)
    return Recorded(feedback, changes)


def _figure(values: Any, key: str) -> float:
    """``values[key]`` of a features/baseline map as a number (0.0 when absent)."""
    if isinstance(values, str):
        values = orjson.loads(values)
    value = values.get(key) if isinstance(values, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _iso(value: Any) -> str:
    """A DateTime64 cell (a datetime, or its text through the query endpoint)."""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text.replace("T", " ").removesuffix("+00:00").removesuffix("Z")
