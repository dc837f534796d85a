"""What the gate concluded: per function its change, prediction and findings.

At deploy time a policy's ``isolate`` denies the change; ``throttle`` (which needs
traffic, so cannot apply yet) and ``warn`` are warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from schemas import Decision, Severity
from schemas.events import AttributeValue
from streams.gate.diff import Change
from streams.gate.predict import Prediction
from streams.gate.spec import Skipped, Source


class Level(StrEnum):
    PASS = "pass"
    WARN = "warn"
    DENY = "deny"

    @classmethod
    def of(cls, decision: Decision) -> Level:
        return cls.DENY if decision is Decision.ISOLATE else (
            cls.PASS if decision is Decision.ALLOW else cls.WARN)

    @property
    def rank(self) -> int:
        return list(Level).index(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class GateFinding:
    """One policy's decision about one function's manifest."""

    function: str
    source: Source
    policy: str
    decision: Decision
    severity: Severity
    reason: str
    inputs: Mapping[str, AttributeValue] = field(default_factory=dict)

    @property
    def level(self) -> Level:
        return Level.of(self.decision)


@dataclass(frozen=True, slots=True)
class FunctionResult:
    change: Change
    prediction: Prediction | None
    findings: tuple[GateFinding, ...]

    @property
    def level(self) -> Level:
        return max((f.level for f in self.findings), key=lambda lv: lv.rank,
                   default=Level.PASS)


@dataclass(frozen=True, slots=True)
class GateReport:
    """The whole run: every function of every manifest read, and what was skipped."""

    stage: str
    revision: str
    base: str
    bundle: str
    files: tuple[str, ...]
    results: tuple[FunctionResult, ...]
    skipped: tuple[Skipped, ...] = ()

    @property
    def findings(self) -> list[GateFinding]:
        return [f for r in self.results for f in r.findings]

    @property
    def level(self) -> Level:
        return max((r.level for r in self.results), key=lambda lv: lv.rank,
                   default=Level.PASS)

    def exit_code(self, fail_on: Level = Level.DENY) -> int:
        """0 pass, 1 when a finding reaches ``fail_on`` (deny, or warn)."""
        return 1 if self.level.rank >= fail_on.rank else 0
