"""Policies as a codebase: ``governor policy test`` and ``governor policy lint``.

``test`` runs the ``*_test.rego`` files as ``opa test`` does (each ``test_*`` rule
passes when true) and reports, per rule of the policies, the share of its lines the
tests evaluated (regorus' line coverage). ``lint`` reports the policy ids a bundle can
decide that never fired over a period of ``policy_decisions``, ids that fired only
beside a stronger decision of another policy (shadowed), and input fields a policy
reads that no stage provides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regorus

from streams.decisions.policy import RegoTestResult, run_rego_tests

STAGE_INPUTS: dict[str, frozenset[str]] = {
    "runtime": frozenset({
        "stage", "function", "window", "spend", "anomaly", "egress", "data", "ai",
        "baseline", "thresholds"}),
    "pre-deploy": frozenset({
        "stage", "revision", "function", "change", "egress", "data", "ai",
        "ai_predictions", "thresholds"}),
}
"""The top-level input sections each stage provides (pre-commit as pre-deploy)."""

_HEAD = re.compile(r"^(?P<name>[a-z_][a-zA-Z0-9_]*)\s*(\(|:=|=|contains\b|if\b|\{|$)",
                   re.MULTILINE)
_INPUT_PATH = re.compile(r"\binput\.([a-z_][a-z0-9_]*)")
_OBJECT_GET = re.compile(r'object\.get\(\s*input\s*,\s*(?:\[\s*)?"([a-z_][a-z0-9_]*)"')


@dataclass(frozen=True, slots=True)
class RuleCoverage:
    """One rule of one policy file and the share of its lines the tests evaluated."""

    path: str
    rule: str
    line: int
    covered: int
    lines: int

    @property
    def share(self) -> float:
        return self.covered / self.lines if self.lines else 1.0


@dataclass(frozen=True, slots=True)
class LintFinding:
    path: str
    line: int
    check: str
    """``never_fired``, ``shadowed`` or ``unprovided_input``."""
    message: str


def _rules(text: str) -> list[tuple[str, int]]:
    """(rule name, 1-based line) of each rule head at the start of a line."""
    skip = {"package", "import", "default", "else"}
    return [(m["name"], text.count("\n", 0, m.start()) + 1) for m in _HEAD.finditer(text)
            if m["name"] not in skip]


def coverage(directory: str | Path) -> list[RuleCoverage]:
    """Per rule of the policies in ``directory``: lines the tests evaluated."""
    directory = Path(directory)
    engine = regorus.Engine()
    engine.set_enable_coverage(True)
    files = sorted(directory.glob("*.rego"))
    for path in files:
        engine.add_policy(str(path), path.read_text(encoding="utf-8"))
    for path in sorted(directory.glob("*.json")):
        engine.add_data(json.loads(path.read_text(encoding="utf-8")))
    for result in run_rego_tests(directory):
        if "." in result.name and "test_" in result.name:
            try:
                engine.eval_rule_as_json(f"data.{result.name}")
            except RuntimeError:
                continue  # the failing test is reported by the run itself
    report = json.loads(engine.get_coverage_report_as_json())
    found = []
    for entry in report["files"]:
        path = Path(entry["path"])
        if path.name.endswith("_test.rego"):
            continue
        covered, missed = set(entry["covered"]), set(entry["not_covered"])
        heads = _rules(entry["code"])
        ends = [line for _, line in heads[1:]] + [entry["code"].count("\n") + 2]
        for (rule, start), end in zip(heads, ends, strict=True):
            span = set(range(start, end))
            hit, total = len(covered & span), len((covered | missed) & span)
            if total:
                found.append(RuleCoverage(path.name, rule, start, hit, total))
    return found


def policy_ids(directory: str | Path) -> dict[str, tuple[str, int]]:
    """Every policy id the bundle's policies can decide, with the file and line naming it."""
    found: dict[str, tuple[str, int]] = {}
    for path in sorted(Path(directory).glob("*.rego")):
        if path.name.endswith("_test.rego"):
            continue
        text = path.read_text(encoding="utf-8")
        package = re.search(r"^package\s+governor\.policies\.(\w+)", text, re.MULTILINE)
        if package is None:
            continue
        for m in re.finditer(rf'"({package[1]}\.[a-z_]+)"', text):
            found.setdefault(m[1], (path.name, text.count("\n", 0, m.start()) + 1))
    return found


def unprovided_inputs(directory: str | Path,
                      stages: Mapping[str, frozenset[str]] = STAGE_INPUTS
                      ) -> list[LintFinding]:
    """Input sections a policy reads that no stage provides."""
    provided = frozenset().union(*stages.values())
    found = []
    for path in sorted(Path(directory).glob("*.rego")):
        if path.name.endswith("_test.rego"):
            continue
        text = path.read_text(encoding="utf-8")
        for m in [*_INPUT_PATH.finditer(text), *_OBJECT_GET.finditer(text)]:
            if m[1] not in provided:
                found.append(LintFinding(
                    path.name, text.count("\n", 0, m.start()) + 1, "unprovided_input",
                    f"reads input.{m[1]}, which no stage provides ({', '.join(stages)})"))
    return sorted(set(found), key=lambda f: (f.path, f.line))


_RANK = {"warn": 1, "throttle": 2, "isolate": 3}


def fired_lint(ids: Mapping[str, tuple[str, int]], rows: Iterable[Sequence[Any]],
               days: int) -> list[LintFinding]:
    """Never-fired and shadowed policy ids, from ``policy_decisions`` rows
    ``(policy, decision, function, window_start, stage)``."""
    by_window: dict[tuple[Any, Any, Any], list[tuple[str, int]]] = {}
    for policy, decision, function, window, stage in rows:
        by_window.setdefault((function, window, stage), []).append(
            (str(policy), _RANK.get(str(decision), 0)))
    fired: dict[str, int] = {}
    alone: dict[str, int] = {}
    for decisions in by_window.values():
        for policy, rank in decisions:
            fired[policy] = fired.get(policy, 0) + 1
            if not any(other != policy and r > rank for other, r in decisions):
                alone[policy] = alone.get(policy, 0) + 1
    found = []
    for policy, (path, line) in sorted(ids.items()):
        if policy not in fired:
            found.append(LintFinding(path, line, "never_fired",
                                     f"{policy} made no decision in the last {days} days"))
        elif not alone.get(policy):
            found.append(LintFinding(
                path, line, "shadowed", f"{policy} fired {fired[policy]} times, each time "
                "beside a stronger decision of another policy: it never decided anything"))
    return found


def format_tests(results: Sequence[RegoTestResult], rules: Sequence[RuleCoverage]
                 ) -> list[str]:
    """``opa test``-like lines: each test, the totals, then coverage per rule."""
    lines = [f"{'PASS' if r.passed else 'FAIL'}: {r.name}" + ("" if r.passed else
                                                             f"\n  {r.message}")
             for r in results]
    passed = sum(r.passed for r in results)
    lines.append(f"{passed} passed, {len(results) - passed} failed")
    lines.append("coverage per rule (lines the tests evaluated):")
    lines += [f"  {c.path}:{c.line} {c.rule:<28} {100 * c.share:5.1f} % "
              f"({c.covered}/{c.lines})" for c in rules]
    total = sum(c.lines for c in rules)
    if total:
        lines.append(f"  total {100 * sum(c.covered for c in rules) / total:.1f} %")
    return lines
