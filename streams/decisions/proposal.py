"""What detection hands to the decision step: a typed, unsigned proposal.

Detection (:mod:`streams.decisions.detection`) proposes; the policies weigh the
proposal (``cost_guard``), and the verdict lifecycle (:mod:`streams.decisions.lifecycle`)
alone turns orders into signed verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from schemas import Action, Anomaly, Driver, SchemaError, decode, encode
from streams.state import MIN_INT, Reader, StateError


@dataclass(frozen=True, slots=True)
class Proposal:
    """Throttle a function to ``rate_rps`` calls per second, or isolate it.

    ``anomaly`` carries the figures behind it (score, threshold, features, baseline,
    cost impact); ``explanation`` says them in a sentence, for people and policies.
    """

    action: Action  # THROTTLE or ISOLATE
    driver: Driver
    anomaly: Anomaly
    explanation: str
    rate_rps: float | None = None
    since_ns: int = 0  # when detection first proposed it (the decision step's clock)
    evidence_ns: int = 0  # the last window whose admitted calls bore it out

    @property
    def anomaly_id(self) -> str:
        return self.anomaly.event_id

    def to_state(self) -> dict[str, Any]:
        """Plain data; the anomaly as its event contract encodes it."""
        return {"action": self.action.value, "driver": self.driver.value,
                "anomaly": orjson.loads(encode(self.anomaly)), "explanation": self.explanation,
                "rate_rps": self.rate_rps, "since_ns": self.since_ns,
                "evidence_ns": self.evidence_ns}

    @classmethod
    def from_state(cls, r: Reader) -> Proposal:
        action = r.choice("action", Action)
        if action not in (Action.THROTTLE, Action.ISOLATE):
            raise StateError(f"{r.where}.action: a proposal throttles or isolates")
        try:  # the event contract's own validation
            anomaly = decode(orjson.dumps(r.raw("anomaly")), Anomaly)
        except SchemaError as exc:
            raise StateError(f"{r.where}.anomaly: {exc}") from None
        return cls(action, r.choice("driver", Driver), anomaly, r.text("explanation"),
                   rate_rps=r.number("rate_rps", 0.0) if r.has("rate_rps") else None,
                   since_ns=r.integer("since_ns", MIN_INT),
                   evidence_ns=r.integer("evidence_ns", MIN_INT))


class Detection(NamedTuple):
    """One closed window's detection: anomalies to publish and the proposal standing
    after it (``None``: the function looks normal); ``new`` when it was made now."""

    anomalies: list[Anomaly]
    proposal: Proposal | None = None
    new: bool = False
