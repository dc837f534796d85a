"""``governor policy test`` and ``governor policy lint`` on small bundles and the shipped one."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import main
from streams.gate.codebase import coverage, fired_lint, policy_ids, unprovided_inputs
from streams.settings import Settings

POLICY = """package governor.policies.spare

import rego.v1

decisions contains d if {
\tinput.function.memory_mb > 100
\td := {"policy": "spare.memory", "decision": "warn", "rate_rps": null,
\t\t"severity": "info", "reason": "big"}
}

decisions contains d if {
\tinput.windoww.seconds > 1
\td := {"policy": "spare.typo", "decision": "warn", "rate_rps": null,
\t\t"severity": "info", "reason": "never"}
}
"""

TESTS = """package governor.policies.spare_test

import data.governor.policies.spare
import rego.v1

test_big if {
\tcount(spare.decisions) == 1 with input as {"function": {"memory_mb": 512}}
}
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "spare.rego").write_text(POLICY)
    (tmp_path / "spare_test.rego").write_text(TESTS)
    return tmp_path


def test_coverage_per_rule_shows_the_untested_one(bundle: Path) -> None:
    rules = coverage(bundle)
    assert [(r.rule, r.line) for r in rules] == [("decisions", 5), ("decisions", 11)]
    assert rules[0].share == 1.0 and rules[1].share < 0.5


def test_inputs_no_stage_provides_are_named(bundle: Path) -> None:
    [finding] = unprovided_inputs(bundle)
    assert (finding.path, finding.line, finding.check) == ("spare.rego", 12, "unprovided_input")
    assert "input.windoww" in finding.message
    assert unprovided_inputs(Settings().policy_dir) == []  # the shipped bundle reads none


def test_never_fired_and_shadowed_from_the_decision_history(bundle: Path) -> None:
    ids = policy_ids(bundle)
    assert ids == {"spare.memory": ("spare.rego", 7), "spare.typo": ("spare.rego", 13)}
    rows = [("spare.memory", "warn", "f", 1, "runtime"),
            ("egress.allow_list", "isolate", "f", 1, "runtime")]
    found = {(f.check, f.message.split()[0]) for f in fired_lint(ids, rows, 30)}
    assert found == {("shadowed", "spare.memory"), ("never_fired", "spare.typo")}
    alone = [*rows, ("spare.memory", "warn", "g", 2, "runtime")]
    assert {f.check for f in fired_lint(ids, alone, 30)} == {"never_fired"}


def test_the_shipped_bundle_names_its_deploy_policies() -> None:
    ids = policy_ids(Settings().policy_dir)
    assert {"deploy.cost_risk", "deploy.memory", "deploy.responsible_ai", "deploy.egress",
            "budget.function_hour", "resources.in_flight"} <= ids.keys()


def test_policy_commands(bundle: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test"]) == 0
    out = capsys.readouterr().out
    assert "PASS: governor.policies.deploy_test.test_a_modest_change_passes" in out
    assert "deploy.rego" in out and "coverage per rule" in out
    assert main(["--data-dir", str(tmp_path / "state"), "policy", "lint", str(bundle)]) == 1
    captured = capsys.readouterr()
    assert "spare.rego:12: unprovided_input" in captured.out
    assert "no decision history" in captured.err
    (bundle / "spare_test.rego").write_text(TESTS.replace("== 1", "== 2"))
    assert main(["policy", "test", str(bundle)]) == 1
    assert "FAIL: governor.policies.spare_test.test_big" in capsys.readouterr().out


def test_the_deploy_stage_inputs_are_what_the_gate_provides() -> None:
    from streams.gate.codebase import STAGE_INPUTS
    from streams.gate.diff import Change, ChangeKind
    from streams.gate.evaluate import policy_input
    from streams.gate.spec import FunctionSpec, Source

    spec = FunctionSpec(name="f", provider="aws", kind="t", source=Source("t.yaml", 1))
    document = policy_input(Change(ChangeKind.NEW, spec), None, "pre-deploy", "", {})
    assert set(document) == STAGE_INPUTS["pre-deploy"]
