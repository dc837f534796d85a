"""The gate's reports: SARIF validated against the official 2.1.0 schema, JUnit XML,
JSON and the table, from a real evaluation of the shipped policies."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from agents import load_prices
from streams.decisions.policy import PolicyEngine
from streams.gate.formats import as_json, as_junit, as_sarif, as_table
from streams.gate.history import History
from streams.gate.predict import Predictor
from streams.gate.result import GateReport, Level
from streams.gate.run import GateRequest, gate
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "sarif-schema-2.1.0.json").read_text())


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(Settings().policy_dir)


def _report(engine: PolicyEngine, *paths: str, stage: str = "pre-deploy") -> GateReport:
    request = GateRequest(paths=tuple(ROOT / "examples" / "gate" / p for p in paths),
                          stage=stage)
    return gate(request, engine, Predictor(History.empty(), load_prices()))


def test_sarif_validates_and_points_at_the_manifest_line(engine: PolicyEngine) -> None:
    report = _report(engine, "sam/deny/template.yaml", "terraform/deny/plan.json")
    sarif = json.loads(as_sarif(report, "0.1.0"))
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    results = sarif["runs"][0]["results"]
    errors = {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
               .rsplit("examples/", 1)[1],
               r["locations"][0]["physicalLocation"]["region"]["startLine"])
              for r in results if r["level"] == "error"}
    assert errors == {("deploy.memory", "gate/sam/deny/template.yaml", 19),
                      ("deploy.egress", "gate/sam/deny/template.yaml", 19),
                      ("deploy.timeout", "gate/terraform/deny/plan.json", 6)}
    rules = [rule["id"] for rule in sarif["runs"][0]["tool"]["driver"]["rules"]]
    assert all(rules[r["ruleIndex"]] == r["ruleId"] for r in results)
    notes = [r for r in results if r["ruleId"] == "gate.prediction"]
    assert len(notes) == 5 and all(r["level"] == "note" for r in notes)


def test_a_passing_report_is_valid_sarif_too(engine: PolicyEngine) -> None:
    sarif = json.loads(as_sarif(_report(engine, "kubernetes/pass/functions.yaml")))
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    assert all(r["level"] == "note" for r in sarif["runs"][0]["results"])


def test_the_schema_catches_a_broken_log() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMA).validate(
            {"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]})


def test_junit_fails_the_denied_function_only(engine: PolicyEngine) -> None:
    report = _report(engine, "serverless/deny/serverless.yml")
    suite = ET.fromstring(as_junit(report)).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["rank (current)"].find("failure")
    assert failure is not None and failure.get("message") == "deploy.responsible_ai"
    assert "fairness_report, data_provenance" in (failure.text or "")
    assert cases["refresh (current)"].find("failure") is None


def test_json_and_exit_codes(engine: PolicyEngine) -> None:
    denied = _report(engine, "terraform/deny/plan.json")
    document = json.loads(as_json(denied))
    assert document["result"] == "deny" and document["stage"] == "pre-deploy"
    thumbnail = next(f for f in document["functions"] if f["name"] == "thumbnail")
    assert thumbnail["findings"][0]["policy"] == "deploy.timeout"
    assert thumbnail["prediction"]["method"] == "catalogue"
    assert {s["why"] for s in document["skipped"]} == {"not a function", "deleted by this plan"}
    assert denied.exit_code() == 1
    passed = _report(engine, "terraform/pass/plan.json")
    assert (passed.level, passed.exit_code()) == (Level.PASS, 0)


def test_pre_commit_warns_where_pre_deploy_denies(engine: PolicyEngine) -> None:
    early = _report(engine, "serverless/deny/serverless.yml", stage="pre-commit")
    assert early.level is Level.WARN
    assert (early.exit_code(Level.DENY), early.exit_code(Level.WARN)) == (0, 1)


def test_the_table_lists_functions_findings_and_skipped(engine: PolicyEngine) -> None:
    text = as_table(_report(engine, "sam/deny/template.yaml"))
    assert "checkout" in text and "DENY" in text and "deploy.memory" in text
    assert "skipped 2:" in text and "OrdersTable (AWS::DynamoDB::Table)" in text
