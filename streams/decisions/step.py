"""The decision step of a worker: detectors → policies → verdict lifecycle → pages.

Per closed window of a function:

1. the :class:`~streams.decisions.detection.Decider` scores it; an anomaly that warrants
   action comes with a typed :class:`~streams.decisions.proposal.Proposal` (throttle to
   the baseline spend, or isolate), which stands until the detectors see the function
   back to normal;
2. the policy bundle (:mod:`streams.decisions.policy`) evaluates the window, the proposal, the
   function's profile and spend, and the live thresholds; every decision other
   than allow is recorded (:class:`~schemas.PolicyDecision`) when it changes;
3. the strongest throttle/isolate decision is the window's :class:`Order` for the
   :class:`~streams.decisions.lifecycle.Lifecycle`, the one state machine of a
   function's verdicts and their one issuer;
4. the :class:`~streams.paging.incidents.IncidentTracker` turns verdicts and severe
   anomalies into one incident per function and episode, classified from typed fields
   (the policy's family, the detector, the action).

Pure: no I/O and no clock (every entry point takes ``now_ns``); the app publishes
what :meth:`DecisionStep.on_window` returns.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas import (
    Action,
    Anomaly,
    CostEvent,
    Decision,
    Event,
    Incident,
    PolicyDecision,
    Span,
    Verdict,
)
from streams.decisions.detection import Decider
from streams.decisions.lifecycle import Lifecycle, Order, Phase, Timing, VerdictIssuer
from streams.decisions.policy import Family, Finding, PolicyEngine, strongest
from streams.decisions.profiles import Profile, Profiles, Spend
from streams.decisions.proposal import Proposal
from streams.decisions.snapshots import seal, unseal, verify
from streams.decisions.thresholds import Thresholds, split_list
from streams.decisions.windows import Window, WindowAggregator
from streams.errors import PolicyError, SnapshotError
from streams.paging.incidents import IncidentTracker, Kind, PageRules
from streams.settings import Settings
from streams.state import Reader, StateError, choice, number, text

log = logging.getLogger("governor.worker")

_ACTIONS = {Decision.THROTTLE: Action.THROTTLE, Decision.ISOLATE: Action.ISOLATE}
_KINDS = {Family.BUDGET: Kind.BUDGET, Family.EGRESS: Kind.EGRESS,
          Family.DATA_ACCESS: Kind.DATA_ACCESS, Family.RESPONSIBLE_AI: Kind.RESPONSIBLE_AI}
"""Incident kinds of the policy families that have their own runbook section."""


@dataclass
class _Memory:
    """What the step remembers per function between windows."""

    decisions: dict[str, tuple[Decision, float | None]] = field(default_factory=dict)
    kind: Kind | None = None  # of the order in force, for its pages

    def to_state(self) -> dict[str, Any]:
        return {"decisions": [[policy, decision.value, rate]
                              for policy, (decision, rate) in self.decisions.items()],
                "kind": self.kind.value if self.kind is not None else None}

    @classmethod
    def from_state(cls, r: Reader) -> _Memory:
        decisions: dict[str, tuple[Decision, float | None]] = {}
        where = f"{r.where}.decisions"
        for i, (policy, decision, rate) in enumerate(r.rows("decisions", 1000, 3)):
            at = f"{where}[{i}]"
            decisions[text(policy, at, 256)] = (
                choice(decision, at, Decision), number(rate, at, 0.0) if rate is not None else None)
        return cls(decisions, r.choice("kind", Kind) if r.has("kind") else None)


class DecisionStep:
    """Everything one worker decides, per function."""

    def __init__(self, settings: Settings, issuer: VerdictIssuer, policies: PolicyEngine,
                 thresholds: Thresholds, snapshots: dict[str, bytes] | None = None, *,
                 state_key: bytes, counters: Counter[str] | None = None) -> None:
        self.settings = settings
        self.policies = policies
        self.thresholds = thresholds
        self.lifecycle = Lifecycle(issuer)
        self.profiles = Profiles()
        self.tracker = IncidentTracker(PageRules.from_settings(settings))
        self._memory: dict[str, _Memory] = {}
        self.decider = Decider(settings)
        self._state_key = state_key  # seals and checks the snapshots (workers only)
        self.counters: Counter[str] = Counter() if counters is None else counters
        """``snapshots_restored``, ``snapshots_refused_<reason>``, ``functions_refused``,
        ``functions_evicted`` and ``teams_refused``, with the worker's."""
        self.spend = Spend(settings.max_functions, self.counters)
        # restored on a function's first use, so a worker only takes on the functions
        # whose events it gets (and pages only for those); what can be checked without
        # parsing is checked now, so a forged snapshot is refused and counted at start
        self._pending: dict[str, bytes] = {}
        self._refused: dict[str, bytes] = {}  # the snapshot refused per function (once)
        self._take(snapshots or {}, lambda function: True)
        self.resumed: list[str] = []
        """Functions restored with an open incident since last read (to re-assert it)."""
        self.handed_over: list[str] = []
        """Incidents handed over to other workers since last read (to stop asserting
        them: they are their new owners' to assert and resolve)."""

    # ------------------------------------------------------------------ inputs

    def admits(self, function: str, windows: WindowAggregator) -> bool:
        """Whether ``function`` may be decided here: one this worker holds (``windows``
        open for it, or state, live or dormant), or a new one with room under
        ``GOVERNOR_MAX_FUNCTIONS`` (made, when it is needed, by dropping the function
        dormant longest). A function refused is counted (``functions_refused``, once per
        event); its telemetry is stored, not decided."""
        limit, decider = self.settings.max_functions, self.decider
        if not limit or self._holds(function, windows):
            return True
        if len(windows) + decider.dormant >= limit:
            evicted = decider.evict_dormant()
            if evicted is None:
                self._refuse_function(function)
                return False
            self.spend.forget(evicted)  # its team keeps what it counted
            self.counters["functions_evicted"] += 1
        return True

    def _holds(self, function: str, windows: WindowAggregator) -> bool:
        return (function in windows or self.decider.knows(function)
                or function in self._pending)

    def _refuse_function(self, function: str) -> None:
        if not self.counters["functions_refused"]:
            log.warning("this worker is full (GOVERNOR_MAX_FUNCTIONS=%d): %r and later new "
                        "functions are stored but not decided; add workers (and partitions) "
                        "or raise the limit", self.settings.max_functions, function[:100])
        self.counters["functions_refused"] += 1

    def on_span(self, span: Span, windows: WindowAggregator) -> None:
        """Into the function's profile, unless ``GOVERNOR_MAX_FUNCTIONS`` profiles are
        held and the function is neither held here nor has one (a span alone holds only
        a profile, but unbounded names would hold unbounded memory)."""
        function, limit = span.function, self.settings.max_functions
        if (limit and len(self.profiles) >= limit and not self.profiles.has(function)
                and not self._holds(function, windows)):
            self._refuse_function(function)
            return
        self.profiles.on_span(span)

    def on_event(self, event: CostEvent, window_ns: int) -> list[Anomaly]:
        if event.function in self._pending:
            self._resume(event.function)
        return self.decider.on_event(event, window_ns)

    def on_verdict(self, verdict: Verdict, now_ns: int) -> list[Event]:
        """A verdict seen on the verdicts topic: an operator's takes over the lifecycle
        and is reflected on the function's incident."""
        if verdict.issuer == self.lifecycle.issuer.issuer:
            return []
        if verdict.function in self._pending:
            self._resume(verdict.function)
        self.lifecycle.issuer.follow(verdict)
        if not self.lifecycle.observe(verdict, now_ns):
            return []  # expired, or replayed from the compacted topic
        profile = self.profiles.get(verdict.function)
        limits = self.thresholds.effective(verdict.function, profile.team)
        return list(self.tracker.on_verdict(verdict, None, profile.team, now_ns, limits))

    # ------------------------------------------------------------------ decisions

    def on_window(self, function: str, window: Window, now_ns: int) -> list[Event]:
        """Decide on one closed window; the events to publish, in order."""
        profile, limits = self._begin(function, window)
        anomalies, proposal, _ = self.decider.on_window(function, window, now_ns)
        self.spend.add(function, profile.team, window.start_ns, window.cost_usd,
                       window.attempts)
        events = self._decide(function, window, profile, limits, anomalies, proposal, now_ns)
        self.profiles.end_window(function)
        return events

    def on_partial(self, function: str, window: Window, now_ns: int) -> list[Event]:
        """The fast path: the function's open window so far, when detection can already
        tell a runaway (:meth:`~.detection.Decider.on_partial`); the events to publish.
        Nothing is learned or counted: the window is decided again when it closes."""
        if function in self._pending:
            self._resume(function)
        if not self.decider.warm(function) or self.decider.proposal(function) is not None:
            return []
        # the detectors keep the thresholds of the window's last close: resolving them
        # on every batch of every function is work the hot path need not do
        detection = self.decider.on_partial(function, window, now_ns)
        if not detection.new:
            return []
        profile, limits = self._begin(function, window)
        return self._decide(function, window, profile, limits, detection.anomalies,
                            detection.proposal, now_ns)

    def _begin(self, function: str, window: Window) -> tuple[Profile, dict[str, Any]]:
        """The function's profile and live thresholds, applied to its detectors."""
        if function in self._pending:
            self._resume(function)
        profile = self.profiles.get(function)
        profile.team = profile.team or window.team
        limits = self.thresholds.effective(function, profile.team)
        self.decider.tune(function, float(limits["zscore_threshold"] or 0),
                          float(limits["min_ratio"] or 0), float(limits["fast_path_factor"] or 0),
                          float(limits["min_rps"] or 0), float(limits["enforce_ratio"] or 0))
        return profile, limits

    def _decide(self, function: str, window: Window, profile: Profile, limits: dict[str, Any],
                anomalies: list[Anomaly], proposal: Proposal | None,
                now_ns: int) -> list[Event]:
        """Policies → lifecycle → incidents for what detection found in ``window``."""
        memory = self._memory.setdefault(function, _Memory())
        team = profile.team
        try:
            findings = self.policies.evaluate(self._input(function, window, profile, proposal,
                                                          limits, now_ns))
        except PolicyError as exc:  # one function's odd input must not stop the others
            log.error("policies not evaluated for %s: %s", function, exc)
            findings = []
        anomaly_id = proposal.anomaly_id if proposal else ""
        decisions = self._record(function, window, profile, memory, findings, anomaly_id)
        order, kind = self._order(findings, proposal, limits)
        if order is not None:
            memory.kind = kind
        verdicts = self.lifecycle.step(function, order, _timing(limits), now_ns)
        cause = proposal.anomaly if proposal else None
        incidents: list[Incident] = []
        for anomaly in anomalies:
            if not (verdicts and anomaly is cause):  # the verdict's page carries it
                incidents += self.tracker.on_anomaly(anomaly, team, now_ns, limits)
        for verdict in verdicts:
            releasing = verdict.action is Action.RELEASE
            incidents += self.tracker.on_verdict(
                verdict, None if releasing else cause, team, now_ns, limits,
                kind=None if releasing else memory.kind)
        return [*anomalies, *decisions, *verdicts, *incidents]

    def _input(self, function: str, window: Window, profile: Profile,
               proposal: Proposal | None, limits: dict[str, Any],
               now_ns: int) -> dict[str, Any]:
        x = window.features()
        anomaly = None
        baseline: dict[str, float] = {}
        if proposal is not None:
            cause = proposal.anomaly
            score = cause.score
            threshold = cause.threshold if cause.threshold > 0 else 1.0
            anomaly = {
                "id": proposal.anomaly_id, "detector": cause.detector,
                "score": score, "calibrated": score / (score + threshold) if score > 0 else 0.0,
                "severity": cause.severity.value, "explanation": proposal.explanation,
                "driver": proposal.driver.value,
                "cost_impact_usd_per_hour": cause.cost_impact_usd_per_hour,
                "proposed": {"action": proposal.action.value, "rate_rps": proposal.rate_rps}}
            baseline = cause.baseline
        return {
            "stage": "runtime",
            **profile.policy_input(function),
            "window": {"start_unix_nano": window.start_ns, "seconds": window.seconds,
                       "invocations": window.invocations, "cost_usd": window.cost_usd,
                       **{k: x[k] for k in ("attempts_per_s", "cost_per_s",
                                            "cost_per_invocation", "cost_per_invocation_p95",
                                            "duration_ms_p95", "error_rate", "cold_start_rate",
                                            "egress_bytes_per_s") if k in x}},
            "spend": self.spend.policy_input(function, profile.team, now_ns),
            "anomaly": anomaly,
            "baseline": {k: baseline.get(k, 0.0) for k in ("attempts_per_s", "cost_per_s",
                                                           "cost_per_invocation")},
            "thresholds": {k: v for k, v in limits.items() if v is not None},
        }

    def _record(self, function: str, window: Window, profile: Profile, memory: _Memory,
                findings: list[Finding], anomaly_id: str) -> list[PolicyDecision]:
        """Decisions worth a row: new ones, and ones whose action or rate changed."""
        seen: dict[str, tuple[Decision, float | None]] = {}
        rows = []
        for f in findings:
            if f.decision is Decision.ALLOW:
                continue
            seen[f.policy] = (f.decision, f.rate_rps)
            if memory.decisions.get(f.policy) == seen[f.policy]:
                continue
            rows.append(PolicyDecision(
                function=function, policy=f.policy, decision=f.decision, rate_rps=f.rate_rps,
                reason=f.reason, severity=f.severity, team=profile.team,
                version=window.version, window_start_unix_nano=window.start_ns,
                anomaly_id=anomaly_id, bundle=self.policies.digest, inputs=dict(f.inputs)))
        memory.decisions = seen
        return rows

    @staticmethod
    def _order(findings: list[Finding], proposal: Proposal | None,
               limits: dict[str, Any]) -> tuple[Order | None, Kind | None]:
        """The window's order for the lifecycle, and the incident kind of its pages."""
        top = strongest(f for f in findings if f.decision in _ACTIONS)
        if top is None:
            return None, None
        isolate = [f for f in findings if f.decision is Decision.ISOLATE]
        reasons = "; ".join(f"{f.policy}: {f.reason}" for f in (isolate or [top]))
        egress = split_list(limits.get("egress_allow")) if top.family is Family.EGRESS else None
        rate = round(top.rate_rps, 2) if top.rate_rps is not None else None
        kind = next((_KINDS[f.family] for f in (*isolate, top) if f.family in _KINDS), None)
        # a detector's isolation rests on figures only admitted calls give: it is probed
        probe = proposal is not None and all(
            f.family is Family.COST_GUARD for f in (isolate or [top]))
        return Order(_ACTIONS[top.decision], reasons, policy=top.policy, rate_rps=rate,
                     anomaly_id=proposal.anomaly_id if proposal else "",
                     egress_allow=egress, probe=probe,
                     evidence_ns=proposal.evidence_ns if probe and proposal else None), kind

    # ------------------------------------------------------------------ state

    def retire(self, function: str) -> bool:
        """An idle function may be forgotten unless a verdict or an incident holds; its
        detectors stay in memory as JSON (a few KB) so it resumes warm, and its spend
        ledger stays (budgets count the last 24 hours)."""
        if self.lifecycle.phase(function) is not Phase.NORMAL or self.tracker.is_open(function):
            return False
        self.decider.forget(function)
        self.lifecycle.forget(function)
        self.profiles.forget(function)
        self._memory.pop(function, None)
        return True

    def hand_over(self, owned: Callable[[str], bool], snapshots: Mapping[str, bytes]) -> int:
        """After a rebalance: drop every function this worker no longer decides (its
        new owner restores it from its snapshot, open incident and verdict included;
        nothing is resolved or paged here), and take the latest snapshots of the
        functions it now decides but holds no state for, to restore on their first
        event; those with an open incident are restored at once (:attr:`resumed`), so
        that it is re-asserted to the pagers now, not on the function's next event.
        Returns the functions dropped."""
        known = (self.decider.functions() | self.lifecycle.functions() | set(self._memory)
                 | self.tracker.open_functions() | set(self._pending))
        gone = [function for function in known if not owned(function)]
        for function in gone:
            self.decider.drop(function)
            self.lifecycle.forget(function)
            self.profiles.forget(function)
            self.spend.forget(function)
            incident = self.tracker.hand_over(function)
            if incident is not None:
                self.handed_over.append(incident)
            self._memory.pop(function, None)
            self._pending.pop(function, None)
        held = self.decider.functions()
        self._take(snapshots, lambda function: owned(function) and function not in held)
        for function, blob in list(self._pending.items()):
            if _incident_open(blob, function, self._state_key):
                self._resume(function)
        return len(gone)

    def _take(self, snapshots: Mapping[str, bytes], wanted: Callable[[str], bool]) -> None:
        """Keep the ``wanted`` snapshots whose seal is the workers' for restoring on the
        function's first event; refuse (and count, once per snapshot) the others."""
        for function, blob in snapshots.items():
            if not wanted(function) or self._refused.get(function) == blob:
                continue
            try:
                verify(blob, self._state_key)
            except SnapshotError as exc:
                self._refused[function] = blob
                self._refuse(function, exc)
            else:
                self._pending[function] = blob

    def snapshot(self, function: str) -> bytes | None:
        """The function's decision state, sealed (:mod:`streams.decisions.snapshots`)."""
        detection = self.decider.state(function)
        if detection is None:
            return None
        memory = self._memory.get(function)
        return seal(function, {
            "detection": detection, "lifecycle": self.lifecycle.export(function),
            "memory": memory.to_state() if memory is not None else None,
            "incident": self.tracker.export(function), "team": self.profiles.get(function).team,
            "spend": self.spend.export(function)}, self._state_key)

    def _resume(self, function: str) -> None:
        """Restore ``function`` from its snapshot, all of it or (refused) none of it."""
        blob = self._pending.pop(function)
        try:
            self._restore(function, unseal(blob, function, self._state_key))
        except SnapshotError as exc:
            self._refused[function] = blob
            self._refuse(function, exc)
        except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
            # what a check missed: still a snapshot of the wrong shape, never a crash
            self._refused[function] = blob
            self._refuse(function, StateError(f"{type(exc).__name__}: {exc}"))
        else:
            self.counters["snapshots_restored"] += 1

    def _restore(self, function: str, r: Reader) -> None:
        track = self.lifecycle.read(r.raw("lifecycle")) if r.has("lifecycle") else None
        memory = _Memory.from_state(r.reader("memory")) if r.has("memory") else None
        episode = self.tracker.read(r.raw("incident")) if r.has("incident") else None
        if episode is not None and episode.function != function:
            raise StateError("state.incident.function: another function's episode")
        ledger = self.spend.read(r.raw("spend")) if r.has("spend") else None
        team = r.text("team", 256)
        self.decider.restore(function, r.raw("detection"))  # the last that may refuse
        if track is not None:
            self.lifecycle.restore(function, track)
        if memory is not None:
            self._memory[function] = memory
        if episode is not None:
            self.tracker.restore(function, episode)
            self.resumed.append(function)
        if ledger is not None:
            self.spend.restore(function, team, ledger)
            self.profiles.get(function).team = team

    def _refuse(self, function: str, exc: SnapshotError) -> None:
        self.counters[f"snapshots_refused_{exc.reason}"] += 1
        log.warning("state of %s not restored, refused (%s): %s; it warms up again",
                    function, exc.reason, exc)


def _incident_open(blob: bytes, function: str, key: bytes) -> bool:
    """Whether a snapshot holds an open incident (one that cannot be read counts: its
    restore refuses and counts it)."""
    try:
        return unseal(blob, function, key).has("incident")
    except (SnapshotError, ValueError, TypeError, ArithmeticError, RecursionError):
        return True


def _timing(limits: dict[str, Any]) -> Timing:
    return Timing(hold_seconds=limits["hold_seconds"],
                  release_after_seconds=limits["release_after_seconds"],
                  cooldown_seconds=limits["cooldown_seconds"],
                  verdict_ttl_seconds=limits["verdict_ttl_seconds"],
                  probe_rps=float(limits["min_rps"] or 0.2))
