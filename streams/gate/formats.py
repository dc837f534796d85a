"""A :class:`~streams.gate.result.GateReport` for people and for CI: a table (rich),
JSON, SARIF 2.1.0 (GitHub code scanning annotates the manifest line) and JUnit XML
(one test case per function)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from streams.gate.result import FunctionResult, GateFinding, GateReport, Level
from streams.gate.spec import Source

TOOL = "governor-gate"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {Level.DENY: "error", Level.WARN: "warning", Level.PASS: "note"}


def _money(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 else f"${x:.4f}"


def _prediction(result: FunctionResult) -> dict[str, Any] | None:
    p = result.prediction
    return None if p is None else {**p.policy_input(), "cost_per_call_usd": p.cost_per_call_usd}


def _finding(f: GateFinding) -> dict[str, Any]:
    return {"policy": f.policy, "level": f.level.value, "decision": f.decision.value,
            "severity": f.severity.value, "reason": f.reason, "source": str(f.source),
            "inputs": dict(f.inputs)}


def as_json(report: GateReport, version: str = "") -> str:
    """Everything the gate found, as one JSON document."""
    document = {
        "stage": report.stage, "revision": report.revision, "base": report.base,
        "bundle": report.bundle, "result": report.level.value, "files": list(report.files),
        "functions": [{
            "name": r.change.spec.name, "provider": r.change.spec.provider,
            "source": str(r.change.spec.source), "change": r.change.policy_input(),
            "result": r.level.value, "prediction": _prediction(r),
            "findings": [_finding(f) for f in r.findings],
        } for r in report.results],
        "skipped": [{"source": str(s.source), "what": s.what, "why": s.why}
                    for s in report.skipped],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def _artifact(path: str) -> dict[str, str]:
    """A file as SARIF names it: relative to the checkout (``%SRCROOT%``) when it can be."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path.cwd())
        except ValueError:
            return {"uri": p.as_uri()}
    return {"uri": p.as_posix(), "uriBaseId": "%SRCROOT%"}


def _location(source: Source) -> dict[str, Any]:
    return {"physicalLocation": {"artifactLocation": _artifact(source.path),
                                 "region": {"startLine": max(1, source.line)}}}


def as_sarif(report: GateReport, version: str = "") -> str:
    """SARIF 2.1.0: a result per finding (error for deny, warning for warn) and a note
    per prediction, each on the manifest line of its function."""
    findings = report.findings
    rule_ids = sorted({f.policy for f in findings} | (
        {"gate.prediction"} if any(r.prediction for r in report.results) else set()))
    index = {rule: i for i, rule in enumerate(rule_ids)}
    results: list[dict[str, Any]] = [{
        "ruleId": f.policy, "ruleIndex": index[f.policy], "level": _SARIF_LEVEL[f.level],
        "message": {"text": f.reason}, "locations": [_location(f.source)],
        "properties": {"function": f.function, "decision": f.decision.value,
                       "severity": f.severity.value},
    } for f in findings]
    for r in report.results:
        p = r.prediction
        if p is not None:
            results.append({
                "ruleId": "gate.prediction", "ruleIndex": index["gate.prediction"],
                "level": "note",
                "message": {"text": f"{r.change.spec.name} ({r.change.kind.value}): predicted "
                                    f"{_money(p.monthly_usd)} a month (80 % interval "
                                    f"{_money(p.low_usd)}–{_money(p.high_usd)}), risk "
                                    f"{p.score:.2f}; {p.basis}"},
                "locations": [_location(r.change.spec.source)],
                "properties": {"function": r.change.spec.name, **p.policy_input()},
            })
    rules = [{"id": rule, "name": rule.replace(".", "_"),
              "shortDescription": {"text": f"Governor policy {rule}" if rule != "gate.prediction"
                                   else "Predicted monthly cost of a new or changed function"},
              "help": {"text": "policies/README.md describes each policy and its inputs"}}
             for rule in rule_ids]
    sarif = {
        "$schema": SARIF_SCHEMA, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL, "version": version or "0", "rules": rules}},
            "automationDetails": {"id": f"governor-gate/{report.stage}/"},
            "invocations": [{"executionSuccessful": True}],
            "results": results,
            "properties": {"stage": report.stage, "revision": report.revision,
                           "base": report.base, "bundle": report.bundle,
                           "skipped": [f"{s.source}: {s.what}: {s.why}"
                                       for s in report.skipped]},
        }],
    }
    return orjson.dumps(sarif, option=orjson.OPT_INDENT_2).decode() + "\n"


def as_junit(report: GateReport, version: str = "") -> str:
    """JUnit XML: a test case per function, failing on a deny (its reasons), its
    warnings and prediction in ``system-out``."""
    suite = ET.Element("testsuite", name=f"{TOOL} ({report.stage})",
                       tests=str(len(report.results)),
                       failures=str(sum(r.level is Level.DENY for r in report.results)),
                       errors="0", skipped="0")
    properties = ET.SubElement(suite, "properties")
    for key in ("stage", "revision", "base", "bundle"):
        ET.SubElement(properties, "property", name=key, value=getattr(report, key))
    for r in report.results:
        spec = r.change.spec
        case = ET.SubElement(suite, "testcase", classname=spec.source.path,
                             name=f"{spec.name} ({r.change.kind.value})")
        denied = [f for f in r.findings if f.level is Level.DENY]
        if denied:
            failure = ET.SubElement(case, "failure", type="deny",
                                    message="; ".join(f.policy for f in denied))
            failure.text = "\n".join(f"{f.source}: {f.policy}: {f.reason}" for f in denied)
        out = [f"{f.source}: {f.policy} (warn): {f.reason}" for f in r.findings
               if f.level is Level.WARN]
        if r.prediction is not None:
            p = r.prediction
            out.append(f"predicted {_money(p.monthly_usd)} a month ({_money(p.low_usd)}–"
                       f"{_money(p.high_usd)}), risk {p.score:.2f}: {p.basis}")
        if out:
            ET.SubElement(case, "system-out").text = "\n".join(out)
    if report.skipped:
        ET.SubElement(suite, "system-out").text = "\n".join(
            f"skipped {s.source}: {s.what} ({s.why})" for s in report.skipped)
    buffer = io.BytesIO()
    root = ET.Element("testsuites", name=TOOL)
    root.append(suite)
    ET.ElementTree(root).write(buffer, encoding="utf-8", xml_declaration=True)
    return buffer.getvalue().decode() + "\n"


def as_table(report: GateReport, version: str = "", width: int | None = None) -> str:
    """A readable summary: one row per function, then the findings and what was skipped."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"governor gate — {report.stage}, revision {report.revision or '-'}"
                        + (f", base {report.base[:12]}" if report.base else ""),
                  caption=f"bundle {report.bundle}; result: {report.level.value}")
    for column in ("function", "change", "where", "predicted / month", "80 % interval",
                   "risk", "result"):
        table.add_column(column)
    for r in report.results:
        p = r.prediction
        change = r.change.kind.value + ("" if not r.change.fields else ": " + ", ".join(
            f"{c.field} {c.old}→{c.new}" for c in r.change.fields))
        table.add_row(Text(r.change.spec.name), Text(change), Text(str(r.change.spec.source)),
                      Text(_money(p.monthly_usd) if p else "-"),
                      Text(f"{_money(p.low_usd)}–{_money(p.high_usd)}" if p else "-"),
                      Text(f"{p.score:.2f}" if p else "-"), Text(r.level.value.upper()))
    console = Console(file=io.StringIO(), width=width or 160, force_terminal=False,
                      no_color=True)
    console.print(table)
    for r in report.results:
        if r.prediction is not None:
            console.print(Text(f"{r.change.spec.name}: {r.prediction.basis}"))
        for f in r.findings:
            console.print(Text(f"{f.source}: {f.level.value.upper()} {f.policy}: {f.reason}"))
    if report.skipped:
        console.print(Text(f"skipped {len(report.skipped)}: " + "; ".join(
            f"{s.source} {s.what} ({s.why})" for s in report.skipped)))
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()


FORMATS: dict[str, Callable[[GateReport, str], str]] = {
    "table": as_table, "json": as_json, "sarif": as_sarif, "junit": as_junit,
}
