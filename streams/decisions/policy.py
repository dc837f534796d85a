"""The policy engine: Rego policies evaluated in-process with regorus.

A *bundle* is a directory of ``*.rego`` policies and ``*.json`` policy data (the
``*_test.rego`` files beside them are their tests and are not loaded). The worker
builds one input per function and closed window and evaluates the entry rule
``data.governor.decisions``; each decision becomes a :class:`Finding`. No entry
means *allow*. See ``policies/README.md`` for the input and output contracts.

>>> from streams.settings import Settings
>>> engine = PolicyEngine(Settings().policy_dir)
>>> findings = engine.evaluate({
...     "function": {"name": "checkout", "team": "payments"},
...     "window": {"attempts_per_s": 10.0},
...     "spend": {"function_hour_usd": 12.5},
...     "thresholds": {"budget_usd_per_hour": 10.0},
... })
>>> [(f.policy, f.decision.value, f.rate_rps) for f in findings]
[('budget.function_hour', 'throttle', 8.0)]
>>> print(strongest(findings).reason)  # doctest: +NORMALIZE_WHITESPACE
function checkout spent $12.50 in the last hour, over its $10.00 hourly budget (125%);
its 10.00 rps scaled by budget/spend; throttled to 8.00 rps

Operators change policies by changing files (GitOps): :meth:`PolicyEngine.reload_if_changed`
picks a change up, and a bundle that does not load leaves the previous one active.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import regorus

from schemas import Decision, Severity
from schemas.events import AttributeValue
from streams.errors import PolicyError

__all__ = [
    "ENTRY_RULE",
    "Family",
    "Finding",
    "PolicyBundle",
    "PolicyEngine",
    "PolicyError",
    "RegoTestResult",
    "run_rego_tests",
    "strongest",
]

log = logging.getLogger("governor.policy")

ENTRY_RULE = "data.governor.decisions"
"""The rule the worker evaluates: a set of decision objects."""

_UNDEFINED = '"<undefined>"'  # what regorus returns for an undefined rule
_RANK = {Decision.ALLOW: 0, Decision.WARN: 1, Decision.THROTTLE: 2, Decision.ISOLATE: 3}
_LOCATION = re.compile(r"-->\s*(?P<path>.+?):(?P<line>\d+):(?P<col>\d+)")
_MESSAGE = re.compile(r"^error:\s*(?P<message>.+)$", re.MULTILINE)
_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)
_ADVICE = "fix it and save again; running workers keep their last good bundle meanwhile"

# A window in which every shipped policy has something to say: loading a bundle
# evaluates it once (and once as a deploy), so errors regorus only finds at
# evaluation time (unsafe variables, unknown functions, bad builtin arguments)
# refuse the bundle up front.
_SMOKE_INPUT: dict[str, Any] = {
    "function": {"name": "smoke", "team": "smoke", "version": "1", "memory_mb": 10240,
                 "timeout_s": 900.0, "concurrency": 1000, "labels": {"env": "smoke"},
                 "model_serving": True, "attributes": {"governor.smoke": True}},
    "window": {"start_unix_nano": 0, "seconds": 10.0, "invocations": 1000,
               "attempts_per_s": 100.0, "cost_usd": 1.0, "cost_per_s": 0.1,
               "cost_per_invocation": 0.001, "cost_per_invocation_p95": 0.002,
               "duration_ms_p95": 2000.0, "error_rate": 0.5, "cold_start_rate": 0.5,
               "egress_bytes_per_s": 1e6},
    "spend": {"function_hour_usd": 100.0, "function_day_usd": 1000.0, "team_hour_usd": 100.0,
              "team_day_usd": 1000.0, "predicted_month_usd": 100000.0},
    "anomaly": {"id": "smoke", "detector": "smoke", "score": 9.0, "calibrated": 0.99,
                "severity": "critical", "explanation": "smoke", "driver": "invocations",
                "cost_impact_usd_per_hour": 10.0,
                "proposed": {"action": "throttle", "rate_rps": None}},
    "egress": {"hosts": ["smoke.example", "192.0.2.1", "smoke.example:443"]},
    "data": {"datasets": ["smoke.dataset"]},
    "ai": {"model_card": None, "fairness_report": None, "explanation": None,
           "data_provenance": None, "fairness_disparity": 0.9},
    "baseline": {"attempts_per_s": 10.0, "cost_per_s": 0.01, "cost_per_invocation": 0.001},
    "thresholds": {"budget_usd_per_hour": 1.0, "budget_usd_per_day": 10.0,
                   "hard_cap_usd_per_day": 100.0, "team_budget_usd_per_hour": 1.0,
                   "team_budget_usd_per_day": 10.0, "monthly_cap_usd": 1000.0,
                   "anomaly_score_cap": 0.5, "max_memory_mb": 1024, "max_timeout_s": 60.0,
                   "max_concurrency": 10, "egress_allow": "*.example.com, 10.0.0.0/8",
                   "datasets_allowed": "other.*", "fairness_disparity_max": 0.2,
                   "min_rps": 0.2},
}

_DEPLOY_SMOKE_INPUT: dict[str, Any] = {
    **_SMOKE_INPUT, "stage": "pre-deploy", "change": {"kind": "new", "fields": {}},
    "ai_predictions": {"smoke": {"score": 0.99, "predicted_monthly_cost": 1e6,
                                 "interval": [1e5, 1e7], "basis": "smoke"}},
}
"""The same function as ``governor gate`` presents it before a deploy."""


class Family(StrEnum):
    """A policy's family: the first part of its id, the Rego package it comes from."""

    BUDGET = "budget"
    COST_GUARD = "cost_guard"
    EGRESS = "egress"
    DATA_ACCESS = "data_access"
    RESPONSIBLE_AI = "responsible_ai"
    RESOURCES = "resources"
    OTHER = "other"  # a family this worker does not know (a newer bundle's)


_FAMILIES = {family.value: family for family in Family if family is not Family.OTHER}


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One policy's decision about one function in one window.

    ``inputs`` holds the figures the policy compared (optional, for the decision
    record); it takes no part in equality or hashing.
    """

    policy: str
    decision: Decision
    rate_rps: float | None = None
    reason: str = ""
    severity: Severity = Severity.WARNING
    inputs: Mapping[str, AttributeValue] = field(
        default_factory=dict, compare=False, hash=False
    )

    @property
    def family(self) -> Family:
        """The policy's family, from its id (``budget.function_hour`` → budget)."""
        return _FAMILIES.get(self.policy.partition(".")[0], Family.OTHER)


class RegoTestResult(NamedTuple):
    """The outcome of one ``test_*`` rule: ``name`` is ``package.test_rule``."""

    name: str
    passed: bool
    message: str


def strongest(findings: Iterable[Finding]) -> Finding | None:
    """The finding that should drive the verdict: isolate over throttle over warn;
    among throttles the lowest rate; then the highest severity, then the policy id.

    >>> strongest([Finding(policy="a", decision=Decision.THROTTLE, rate_rps=5.0),
    ...            Finding(policy="b", decision=Decision.THROTTLE, rate_rps=2.0),
    ...            Finding(policy="c", decision=Decision.WARN)]).policy
    'b'
    >>> strongest([]) is None
    True
    """
    severities = list(Severity)

    def key(f: Finding) -> tuple[int, float, int, str]:
        rate = f.rate_rps if f.decision is Decision.THROTTLE and f.rate_rps is not None else 0.0
        return (-_RANK[f.decision], rate, -severities.index(f.severity), f.policy)

    return min(findings, key=key, default=None)


def _one_line(exc: BaseException) -> str:
    """A regorus error in one line: ``path:line: message (column c)``, no backtrace."""
    text = str(exc).split("Stack backtrace:", 1)[0].strip()
    found = _MESSAGE.search(text)
    message = found.group("message").strip() if found else (text.splitlines() or ["?"])[-1]
    location = _LOCATION.search(text)
    if location:
        return (f"{location.group('path')}:{location.group('line')}: {message} "
                f"(column {location.group('col')})")
    return message


def _policy_error(path: Path | str, exc: BaseException) -> PolicyError:
    text = _one_line(exc)
    if not re.match(r".+:\d+: ", text):
        text = f"{path}:1: {text}"
    return PolicyError(f"{text}\n  {_ADVICE}")


def _load_data(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} "
                          f"(column {exc.colno})\n  {_ADVICE}") from None
    if not isinstance(value, dict):
        raise PolicyError(f"{path}:1: policy data must be a JSON object\n  {_ADVICE}")
    return value


def _sources(directory: Path) -> tuple[list[Path], list[Path]]:
    """The policy files and data files of a bundle, sorted by name."""
    policies = sorted(p for p in directory.glob("*.rego") if not p.name.endswith("_test.rego"))
    return policies, sorted(directory.glob("*.json"))


class PolicyBundle:
    """Every policy and data file of one directory, loaded into one regorus engine.

    Raises :class:`PolicyError` when a file does not parse, a data file is not a
    JSON object, the entry rule is missing, or evaluating a sample window fails.
    Not thread-safe on its own: :class:`PolicyEngine` serialises evaluations.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise PolicyError(f"{self.directory}: not a directory of policies")
        policies, data = _sources(self.directory)
        if not policies:
            raise PolicyError(f"{self.directory}: no *.rego policies found")
        self.files: tuple[Path, ...] = (*policies, *data)
        digest = hashlib.sha256()
        engine = regorus.Engine()
        for path in self.files:
            content = path.read_bytes()
            digest.update(path.name.encode() + b"\0" + content + b"\0")
            if path.suffix == ".rego":
                try:
                    engine.add_policy(str(path), content.decode("utf-8"))
                except (RuntimeError, UnicodeDecodeError) as exc:
                    raise _policy_error(path, exc) from None
            else:
                try:
                    engine.add_data(_load_data(path))
                except RuntimeError as exc:
                    raise PolicyError(f"{path}:1: {_one_line(exc)} (it may clash with "
                                      f"another data file)\n  {_ADVICE}") from None
        self.digest: str = digest.hexdigest()[:16]
        """Short sha256 of the file names and contents, for the decision records."""
        self.packages: tuple[str, ...] = tuple(sorted(engine.get_packages()))
        self._engine = engine
        if "data.governor" not in self.packages:
            raise PolicyError(f"{self.directory}: no `package governor` with a `decisions` "
                              f"rule; add main.rego (see policies/README.md)")
        try:
            engine.set_input(_DEPLOY_SMOKE_INPUT)
            engine.eval_rule_as_json(ENTRY_RULE)
            engine.set_input(_SMOKE_INPUT)
            result = engine.eval_rule_as_json(ENTRY_RULE)
            engine.eval_query_as_json("data")  # every rule, the unreferenced ones too
        except RuntimeError as exc:
            raise _policy_error(self.directory, exc) from None
        if result == _UNDEFINED:
            raise PolicyError(f"{self.directory}: {ENTRY_RULE} is undefined for a sample "
                              f"window; it must be a set of decisions\n  {_ADVICE}")

    def __repr__(self) -> str:
        return f"PolicyBundle({str(self.directory)!r}, digest={self.digest!r})"

    def decisions(self, document: Mapping[str, Any]) -> list[Any]:
        """The raw decision objects for one input (not validated).

        A policy that fails at evaluation time does not silence the others: the
        packages under ``governor.policies`` are then evaluated one by one and the
        failing one is logged and skipped.
        """
        engine = self._engine
        try:  # orjson + set_input_json is about twice as fast as set_input(dict)
            engine.set_input_json(orjson.dumps(
                document if isinstance(document, dict) else dict(document)).decode())
        except (TypeError, ValueError, RuntimeError) as exc:
            raise PolicyError(f"policy input is not a JSON document: {exc}") from None
        try:
            return _as_list(engine.eval_rule_as_json(ENTRY_RULE))
        except RuntimeError as exc:
            log.warning("policy evaluation failed, evaluating policies one by one: %s",
                        _one_line(exc))
        found: list[Any] = []
        for package in self.packages:
            if not package.startswith("data.governor.policies."):
                continue
            try:
                found.extend(_as_list(engine.eval_rule_as_json(f"{package}.decisions")))
            except RuntimeError as exc:
                log.warning("policy package %s failed and was skipped: %s",
                            package.removeprefix("data."), _one_line(exc))
        return found


def _as_list(result: str) -> list[Any]:
    if result == _UNDEFINED:
        return []
    value = orjson.loads(result)
    if isinstance(value, list):
        return value
    if isinstance(value, dict):  # a partial-object rule; take its values
        return list(value.values())
    log.warning("%s is not a set of decisions but %s; ignored", ENTRY_RULE,
                type(value).__name__)
    return []


def _finding(raw: Any) -> Finding | None:
    """A decision object as a Finding, or None (logged) when it breaks the contract."""
    if not isinstance(raw, dict):
        log.warning("a policy returned %r instead of a decision object; skipped", raw)
        return None
    policy = raw.get("policy")
    if not isinstance(policy, str) or not policy:
        log.warning("a policy returned a decision without a policy id; skipped: %r", raw)
        return None

    def skip(why: str) -> None:
        log.warning("policy %s returned a decision %s; skipped", policy, why)

    try:
        decision = Decision(str(raw.get("decision")))
    except ValueError:
        skip(f"with unknown decision {raw.get('decision')!r}")
        return None
    try:
        severity = Severity(str(raw.get("severity")))
    except ValueError:
        skip(f"with unknown severity {raw.get('severity')!r}")
        return None
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason:
        skip("without a reason")
        return None
    rate = raw.get("rate_rps")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or not math.isfinite(rate) or rate < 0):
        skip(f"with rate_rps {rate!r}, not a number >= 0")
        return None
    if decision is Decision.THROTTLE and rate is None:
        skip("to throttle without a rate_rps")
        return None
    if decision is Decision.ALLOW:
        return None  # allow is implicit; nothing to record
    raw_inputs = raw.get("inputs")
    inputs = {
        str(k): v for k, v in raw_inputs.items()
        if isinstance(v, str | int | float | bool)
    } if isinstance(raw_inputs, dict) else {}
    return Finding(
        policy=policy,
        decision=decision,
        rate_rps=float(rate) if rate is not None else None,
        reason=reason,
        severity=severity,
        inputs=inputs,
    )


class PolicyEngine:
    """Evaluates the bundle of a directory and follows its changes.

    Raises :class:`PolicyError` when the directory does not load at start; later,
    :meth:`reload_if_changed` keeps the last good bundle when a change does not load.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._bundle = PolicyBundle(self.directory)
        self.last_error: str | None = None
        """Why the latest change was refused; None once a bundle loads."""

    @property
    def bundle(self) -> PolicyBundle:
        """The active bundle."""
        return self._bundle

    @property
    def digest(self) -> str:
        """The active bundle's digest."""
        return self._bundle.digest

    def evaluate(self, document: Mapping[str, Any]) -> list[Finding]:
        """Every policy's decision about one function's window; empty means allow.

        Decisions that break the output contract are logged and skipped.
        """
        with self._lock:
            raw = self._bundle.decisions(document)
        return [f for f in map(_finding, raw) if f is not None]

    def reload_if_changed(self) -> bool:
        """Load the directory again if a policy or data file was added, removed or
        changed (mtime or size). True when a new bundle became active; on a bad
        change the previous bundle stays active and :attr:`last_error` says why."""
        signature = self._stat()
        if signature == self._signature:
            return False
        self._signature = signature  # a bad change is reported once, not every call
        try:
            bundle = PolicyBundle(self.directory)
        except PolicyError as exc:
            self.last_error = str(exc)
            log.error("policy bundle in %s refused, keeping %s: %s", self.directory,
                      self._bundle.digest, exc)
            return False
        except OSError as exc:  # a file vanished mid-read: try again next time
            self._signature = ()
            self.last_error = f"{self.directory}: {exc}"
            log.warning("policy bundle in %s could not be read: %s", self.directory, exc)
            return False
        with self._lock:
            previous, self._bundle = self._bundle, bundle
        self.last_error = None
        if bundle.digest == previous.digest:
            return False
        log.info("policy bundle %s loaded from %s (was %s)", bundle.digest, self.directory,
                 previous.digest)
        return True

    def _stat(self) -> tuple[tuple[str, int, int], ...]:
        try:
            policies, data = _sources(self.directory)
            return tuple(
                (p.name, (s := p.stat()).st_mtime_ns, s.st_size) for p in (*policies, *data)
            )
        except OSError:
            return ()


def run_rego_tests(directory: str | Path) -> list[RegoTestResult]:
    """Run every ``test_*`` rule of the ``*_test.rego`` files in ``directory``.

    regorus has no test runner: each rule is evaluated and passes when it is
    ``true`` (false, undefined or an error fail). The policies and data of the
    directory are loaded with the tests. A file that does not parse becomes one
    failing result named after it.
    """
    directory = Path(directory)
    engine = regorus.Engine()
    results: list[RegoTestResult] = []
    policies, data = _sources(directory)
    tests = sorted(directory.glob("*_test.rego"))
    for path in (*policies, *tests):
        try:
            engine.add_policy(str(path), path.read_text(encoding="utf-8"))
        except RuntimeError as exc:
            results.append(RegoTestResult(path.name, False, str(_policy_error(path, exc))))
    for path in data:
        try:
            engine.add_data(_load_data(path))
        except (PolicyError, RuntimeError) as exc:
            results.append(RegoTestResult(path.name, False, _one_line(exc)))
    if results:
        return results
    for path in tests:
        text = path.read_text(encoding="utf-8")
        package = _PACKAGE.search(text)
        if package is None:
            results.append(RegoTestResult(path.name, False, f"{path}: no package line"))
            continue
        for rule in dict.fromkeys(_TEST_RULE.findall(text)):
            name = f"{package.group(1)}.{rule}"
            try:
                value = engine.eval_rule_as_json(f"data.{name}")
            except RuntimeError as exc:
                results.append(RegoTestResult(name, False, f"{path.name}: {_one_line(exc)}"))
                continue
            passed = value == "true"
            message = "" if passed else (
                f"{path.name}: {rule} is {'undefined' if value == _UNDEFINED else value}"
            )
            results.append(RegoTestResult(name, passed, message))
    return results
