"""``governor gate`` in-process: the examples through the CLI, a real git base, history
in the embedded ClickHouse, decisions recorded, and the hook under real pre-commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents import load_prices
from streams.cli import main
from streams.decisions.policy import PolicyEngine
from streams.gate.history import History
from streams.gate.predict import Predictor
from streams.gate.run import GateRequest, gate
from streams.gate.store import record
from streams.settings import Settings
from streams.sim.history import SimFunction, aggregates, cost, cost_events, simulate
from streams.storage.clickhouse import ClickHouseSink, migrate, read_only_query

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "gate"
Governor = Callable[..., tuple[int, str, str]]


@pytest.fixture
def governor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Governor:
    """``governor gate …`` → (exit code, stdout, stderr), without any history."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--data-dir", str(tmp_path / "state"), "gate", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize("example", ["sam/{}/template.yaml", "serverless/{}/serverless.yml",
                                     "terraform/{}/plan.json", "kubernetes/{}/functions.yaml"])
def test_each_example_passes_and_its_change_is_denied(governor: Governor, example: str) -> None:
    code, out, _ = governor(str(EXAMPLES / example.format("pass")))
    assert code == 0, out
    assert "result: pass" in out
    code, out, _ = governor(str(EXAMPLES / example.format("deny")), "--format", "json")
    assert code == 1
    assert json.loads(out)["result"] == "deny"


def test_a_malformed_manifest_exits_2_naming_file_and_line(governor: Governor,
                                                            tmp_path: Path) -> None:
    broken = tmp_path / "template.yaml"
    broken.write_text("AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Fn:\n"
                      "    Type: AWS::Serverless::Function\n    Properties:\n"
                      "      Timeout: soon\n")
    code, out, err = governor(str(broken))
    assert (code, out) == (2, "")
    assert f"{broken}:6: expected a number for Timeout, got 'soon'" in err


def test_fail_on_warn_and_the_report_file(governor: Governor, tmp_path: Path) -> None:
    denied = str(EXAMPLES / "serverless/deny/serverless.yml")
    assert governor(denied, "--stage", "pre-commit")[0] == 0  # a warning at pre-commit
    out = tmp_path / "gate.sarif"
    code, stdout, _ = governor(denied, "--stage", "pre-commit", "--fail-on", "warn",
                               "--format", "sarif", "--output", str(out))
    assert (code, stdout) == (1, "")
    assert json.loads(out.read_text())["runs"][0]["results"][0]["level"] == "warning"
    assert governor(denied, "--threshold", "oops")[0] == 2


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "infra").mkdir(parents=True)
    shutil.copy(EXAMPLES / "sam/pass/template.yaml", repo / "infra" / "template.yaml")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "ci@example.com")
    _git(repo, "config", "user.name", "CI")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    return repo


def test_base_knows_what_is_new_changed_and_removed(governor: Governor, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo(tmp_path)
    template = yaml.safe_load((EXAMPLES / "sam/pass/template.yaml").read_text()
                              .replace("!GetAtt", "").replace("!Ref", "").replace("!Sub", ""))
    resources = template["Resources"]
    resources["Checkout"]["Properties"]["MemorySize"] = 1024
    resources["Checkout"]["Properties"]["Timeout"] = 20
    resources["Payouts"] = {"Type": "AWS::Serverless::Function", "Properties": {
        "FunctionName": "payouts", "Handler": "payouts.handler", "MemorySize": 256,
        "Tags": {"team": "payments", "governor.egress": "api.stripe.com"}}}
    del resources["Refunds"]
    (repo / "infra" / "template.yaml").write_text(yaml.safe_dump(template, sort_keys=False))
    monkeypatch.chdir(repo)
    code, out, _ = governor("infra", "--base", "main", "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    assert report["base"] == _git(repo, "rev-parse", "HEAD").strip()
    assert report["revision"].endswith("+dirty")
    kinds = {f["name"]: f["change"]["kind"] for f in report["functions"]}
    assert kinds == {"checkout": "changed", "payouts": "new", "refunds": "removed"}
    checkout = next(f for f in report["functions"] if f["name"] == "checkout")
    assert checkout["change"]["fields"] == {"memory_mb": {"old": 512, "new": 1024},
                                            "timeout_s": {"old": 10.0, "new": 20.0}}
    assert checkout["prediction"]["method"] == "catalogue"
    refunds = next(f for f in report["functions"] if f["name"] == "refunds")
    assert refunds["prediction"] is None and refunds["findings"] == []
    code, _, err = governor("infra", "--base", "no-such-ref")
    assert code == 2 and "--base no-such-ref: not a commit" in err


def test_an_unchanged_function_is_not_predicted(governor: Governor, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(_repo(tmp_path))
    code, out, _ = governor("infra", "--base", "HEAD", "--format", "json")
    assert code == 0
    functions = json.loads(out)["functions"]
    assert {f["change"]["kind"] for f in functions} == {"unchanged"}
    assert all(f["prediction"] is None for f in functions)


WEEKS = 3
MONDAY = (int(time.time() // 86_400) - 4) // 7 * 7 + 4  # day 4 of the epoch was a Monday
START = MONDAY * 24 - WEEKS * 168 - 168
"""Hours since the epoch: recent, or the table's TTL would drop the rows, and always a
Monday at midnight, so the simulated history, and what is predicted from it, is the same
whatever the day the test runs (a three-week trend moves with the weekday it starts on)."""


def _fleet() -> list[SimFunction]:
    return [
        SimFunction("checkout", "payments", "aws-arm64", 128, 12.0, 90.0,
                    elasticity=-0.3, growth_per_week=0.02),
        SimFunction("refunds", "payments", "aws", 256, 4.0, 60.0, elasticity=-0.5,
                    deploy_hour=START + 24 * 8, deploy_memory_mb=512),
        SimFunction("ledger", "payments", "aws", 512, 6.0, 200.0, elasticity=-0.4,
                    deploy_hour=START + 24 * 12, deploy_memory_mb=256),
        SimFunction("resize", "media", "aws-arm64", 1024, 8.0, 300.0, elasticity=-0.7),
    ]


def test_history_in_clickhouse_predicts_and_the_decisions_are_recorded(
        clickhouse: Any, tmp_path: Path) -> None:
    prices = load_prices()
    migrate(clickhouse)
    past = list(simulate(_fleet(), START, WEEKS * 168, seed=4))
    ClickHouseSink(clickhouse).write(list(cost_events(past, prices)))

    def query(sql: str, params: Any) -> Any:
        return read_only_query(clickhouse, sql, params).rows

    history = History.load(query)
    expected = History.build(*aggregates(past, prices))
    assert history.functions.keys() == expected.functions.keys()
    assert history.functions["checkout"].hourly == expected.functions["checkout"].hourly
    assert history.scaling.elasticity == pytest.approx(expected.scaling.elasticity, abs=0.01)

    # checkout redeployed from 128 MB to 2048 MB: priced from its own history
    manifest = tmp_path / "template.yaml"
    manifest.write_text((EXAMPLES / "sam/pass/template.yaml").read_text()
                        .replace("MemorySize: 512", "MemorySize: 2048"))
    engine = PolicyEngine(Settings().policy_dir)
    request = GateRequest(paths=(manifest,), thresholds={"monthly_cap_usd": "0.005"})
    report = gate(request, engine, Predictor(history, prices))
    checkout = next(r for r in report.results if r.change.spec.name == "checkout")
    p = checkout.prediction
    assert p is not None and p.method == "history"
    assert "own history of checkout: 3 weeks of calls" in p.basis
    assert p.score > 0.8  # about 16^0.7 ≈ 7 times what it costs now
    assert [f.policy for f in checkout.findings] == ["deploy.cost_risk"]
    assert report.exit_code() == 1

    # what that month actually costs, simulated on: inside the interval
    redeployed = [SimFunction("checkout", "payments", "aws-arm64", 128, 12.0, 90.0,
                              elasticity=-0.3,
                              growth_per_week=0.02, deploy_hour=START + WEEKS * 168,
                              deploy_memory_mb=2048)]
    month = [h for h in simulate(redeployed, START, WEEKS * 168 + 720, seed=4)
             if h.hour >= START + WEEKS * 168]
    actual = cost(month, prices)
    assert p.low_usd <= actual <= p.high_usd
    # the calls forecast is near; the cost per call carries the fleet's elasticity
    # (checkout's own, never seen at another memory, differs), which the interval covers
    calls = sum(h.calls for h in month)
    assert abs(p.calls_per_month - calls) / calls < 0.25

    # a function the history has never seen: from similar functions, wider
    unseen = replace(checkout.change.spec, name="payouts", memory_mb=256)
    similar = Predictor(history, prices).predict(unseen)
    assert similar is not None and similar.method == "similar"
    assert "no history for payouts" in similar.basis
    assert similar.high_usd / similar.low_usd > p.high_usd / p.low_usd

    assert record(clickhouse, report) == 1
    rows = read_only_query(clickhouse, "SELECT function, policy, decision, stage, revision, "
                           "bundle, inputs['source'] FROM policy_decisions").rows
    assert rows == [("checkout", "deploy.cost_risk", "isolate", "pre-deploy", report.revision,
                     engine.digest, f"{manifest}:19")]


def test_the_hook_extra_matches_the_gate_extra() -> None:
    import tomllib

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert [h["id"] for h in hooks] == ["governor-gate"]
    assert hooks[0]["additional_dependencies"] == extras["gate"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_hook_runs_under_the_real_pre_commit(tmp_path: Path) -> None:
    """pre-commit installs the hook from this checkout (try-repo) into its own
    environment and runs it on a repository whose commit adds a denied manifest."""
    repo = _repo(tmp_path)
    shutil.copy(EXAMPLES / "terraform/deny/plan.json", repo / "infra" / "plan.json")
    (repo / "notes.yaml").write_text("owner: payments\n")
    _git(repo, "add", ".")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "GOVERNOR_DATA_DIR": str(tmp_path / "state")}
    command = [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "governor-gate",
               "--files", "infra/plan.json", "infra/template.yaml", "notes.yaml"]
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "governor gate" in done.stdout and "Failed" in done.stdout
    assert "deploy.timeout" in done.stdout
    assert "notes.yaml" in done.stdout  # listed as skipped, not an error
    (repo / "infra" / "plan.json").unlink()
    shutil.copy(EXAMPLES / "terraform/pass/plan.json", repo / "infra" / "plan.json")
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Passed" in done.stdout
