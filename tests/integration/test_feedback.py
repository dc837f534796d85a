"""``governor feedback``: an incident found in the real ClickHouse engine, the judgement
published on the real broker, and a false alarm teaching the function its threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.compacted import read_to_end
from schemas import (
    Anomaly,
    Feedback,
    Incident,
    IncidentStatus,
    Judgement,
    decode,
)
from streams.control.commands import read_control
from streams.control.feedback import MARGIN, give_feedback, lookup
from streams.errors import ControlError
from streams.settings import Settings
from streams.storage.clickhouse import ClickHouseSink, migrate, read_only_query
from tests.integration.conftest import VERDICT_KEY

pytestmark = pytest.mark.integration

S = 1_000_000_000
T0 = 1_790_000_000 * S


@pytest.fixture
def settings(broker: str, prefix: str, tmp_path: Path) -> Settings:
    return Settings(kafka_bootstrap=broker, topic_prefix=prefix, data_dir=tmp_path,
                    actor="carol", verdict_key=VERDICT_KEY)


def _history(client: Any, function: str, ratio: float) -> str:
    """An incident of ``function`` whose anomaly showed ``ratio`` x its cost baseline."""
    migrate(client)
    incident_id = "ab12cd34ef56ab78"
    anomaly = Anomaly(function=function, detector="robust_zscore", score=9.0, threshold=6.0,
                      time_unix_nano=T0 + 5 * S, features={"cost_per_s_warm": 0.001 * ratio},
                      baseline={"cost_per_s": 0.001})
    common = {"function": function, "incident_id": incident_id, "team": "payments",
              "title": f"{function}: cost {ratio:.0f}x", "kind": "cost-anomaly",
              "opened_at_unix_nano": T0}
    ClickHouseSink(client).write([
        anomaly,
        Incident(status=IncidentStatus.OPEN, time_unix_nano=T0 + 5 * S, **common),
        Incident(status=IncidentStatus.RESOLVED, time_unix_nano=T0 + 90 * S,
                 resolved_at_unix_nano=T0 + 90 * S, **common)])
    return incident_id


def _published(settings: Settings) -> list[Feedback]:
    return [decode(m.value(), Feedback)
            for m in read_to_end(settings.kafka_bootstrap, settings.topic("feedback")).records]


def test_a_false_alarm_is_recorded_and_raises_the_function_s_min_ratio(
        clickhouse: Any, settings: Settings) -> None:
    incident_id = _history(clickhouse, "batch-report", 3.2)
    facts = lookup(lambda sql: read_only_query(clickhouse, sql), incident_id)
    assert (facts.function, facts.team, facts.kind) == ("batch-report", "payments",
                                                        "cost-anomaly")
    assert facts.detector == "robust_zscore" and abs(facts.ratio - 3.2) < 1e-9
    recorded = give_feedback(settings, facts, Judgement.FALSE_ALARM, "the nightly batch")
    [change] = recorded.changes
    assert (change.function, change.key, change.new) == ("batch-report", "min_ratio",
                                                         str(round(3.2 * MARGIN, 2)))
    assert change.actor == "carol" and incident_id in change.reason
    assert read_control(settings).values("batch-report")["min_ratio"] == round(3.2 * MARGIN, 2)
    [published] = _published(settings)
    assert published.judgement is Judgement.FALSE_ALARM and published.ratio == 3.2
    assert published.change_id == change.change_id and published.actor == "carol"


def test_a_confirmation_is_recorded_and_changes_nothing(clickhouse: Any,
                                                        settings: Settings) -> None:
    incident_id = _history(clickhouse, "checkout", 25.0)
    facts = lookup(lambda sql: read_only_query(clickhouse, sql), incident_id)
    recorded = give_feedback(settings, facts, Judgement.CONFIRMED, "a real loop", "dave")
    assert recorded.changes == []
    assert read_control(settings).values("checkout") == {}
    [published] = _published(settings)
    assert published.judgement is Judgement.CONFIRMED and published.actor == "dave"


def test_unknown_or_malformed_incidents_are_refused(clickhouse: Any) -> None:
    migrate(clickhouse)

    def query(sql: str) -> Any:
        return read_only_query(clickhouse, sql)

    with pytest.raises(ControlError, match="no incident"):
        lookup(query, "0123abcd")
    with pytest.raises(ControlError, match="hex id"):
        lookup(query, "x'; DROP TABLE incidents; --")
