"""A function's manifest as policy input, evaluated by the same bundle the workers run.

The input has the runtime's sections that a manifest can fill (``function``,
``egress`` as declared, ``data``, ``ai``, ``thresholds``) plus ``stage``,
``revision``, ``change`` and ``ai_predictions`` (see ``policies/README.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.decisions.policy import PolicyEngine
from streams.gate.diff import Change, ChangeKind
from streams.gate.predict import Prediction
from streams.gate.result import FunctionResult, GateFinding

STAGES = ("pre-commit", "pre-deploy")
"""The stages ``governor gate`` evaluates at (the workers are ``runtime``)."""


def policy_input(change: Change, prediction: Prediction | None, stage: str, revision: str,
                 thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """The document the bundle is evaluated on for one function."""
    spec = change.spec
    return {
        "stage": stage,
        "revision": revision,
        "function": spec.policy_function(),
        "change": change.policy_input(),
        "egress": {"hosts": list(spec.egress)},
        "data": {"datasets": list(spec.datasets)},
        "ai": {"model_card": spec.model_card, "fairness_report": spec.fairness_report,
               "explanation": spec.explanation, "data_provenance": spec.data_provenance,
               "fairness_disparity": spec.fairness_disparity},
        "ai_predictions": {spec.name: prediction.policy_input()} if prediction else {},
        "thresholds": dict(thresholds),
    }


def evaluate(engine: PolicyEngine, change: Change, prediction: Prediction | None, stage: str,
             revision: str, thresholds: Mapping[str, Any]) -> FunctionResult:
    """The bundle's findings about one function (none for a removed one)."""
    if change.kind is ChangeKind.REMOVED:
        return FunctionResult(change, None, ())
    document = policy_input(change, prediction, stage, revision, thresholds)
    findings = tuple(
        GateFinding(function=change.spec.name, source=change.spec.source, policy=f.policy,
                    decision=f.decision, severity=f.severity, reason=f.reason,
                    inputs=f.inputs)
        for f in sorted(engine.evaluate(document), key=lambda f: f.policy))
    return FunctionResult(change, prediction, findings)
