"""The shipped policies' own Rego tests (policies/*_test.rego), one case per test rule.

regorus has no test runner; :func:`streams.decisions.policy.run_rego_tests` evaluates every
``test_*`` rule and this module turns each into a pytest case.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.decisions.policy import RegoTestResult, run_rego_tests

POLICIES = Path(__file__).resolve().parents[2] / "policies"
RESULTS = run_rego_tests(POLICIES)


@pytest.mark.parametrize("result", RESULTS, ids=[r.name for r in RESULTS])
def test_rego(result: RegoTestResult) -> None:
    assert result.passed, result.message


def test_every_policy_has_tests() -> None:
    tested = {r.name.split(".test_")[0] for r in RESULTS}
    for path in sorted(POLICIES.glob("*.rego")):
        if path.name.endswith("_test.rego") or path.stem in {"lib", "main"}:
            continue
        package = re.search(r"^package\s+(\S+)", path.read_text(), re.MULTILINE)
        assert package, path
        assert f"{package.group(1)}_test" in tested, f"{path.name} has no {path.stem}_test.rego"


def test_the_runner_found_the_shipped_tests() -> None:
    assert len(RESULTS) >= 50
    assert any(r.name == "governor.main_test.test_quiet_function_gets_no_decision"
               for r in RESULTS)
