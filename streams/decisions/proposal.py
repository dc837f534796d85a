"""What detection hands to the decision step: a typed, unsigned proposal.

Detection (:mod:`streams.decisions.detection`) proposes; the policies weigh the
proposal (``cost_guard``), and the verdict lifecycle (:mod:`streams.decisions.lifecycle`)
alone turns orders into signed verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from schemas import Action, Anomaly, Driver


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


class Detection(NamedTuple):
    """One closed window's detection: anomalies to publish and the proposal standing
    after it (``None``: the function looks normal); ``new`` when it was made now."""

    anomalies: list[Anomaly]
    proposal: Proposal | None = None
    new: bool = False
