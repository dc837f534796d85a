"""From anomalies and verdicts to incidents: one page per function and episode.

:class:`IncidentTracker` is pure logic (no I/O, no clock: every call takes ``now_ns``);
the worker feeds it from its window loop, publishes every :class:`~schemas.Incident`
it returns (history) and hands them to a :class:`streams.paging.dispatch.PageDispatcher`
(delivery), which pages those :func:`is_paged` says to.

Episode
    Opened by a throttle or isolate verdict, or by a high anomaly alone (see below);
    one per function at a time. Later verdicts and anomalies update it; an update is
    emitted only when something material changed: a new action (a different rate, an
    isolate after a throttle), a higher severity, or the cost impact moved by at least
    ``material_change`` (50 %, and at least ``material_usd_per_hour``). A release
    verdict resolves it; an episode opened by anomalies alone resolves itself after
    ``quiet_seconds`` without one (:meth:`IncidentTracker.on_quiet`). The
    ``incident_id`` is a short hash of the function and the episode start: the
    PagerDuty ``dedup_key`` and the Alertmanager ``incident_id`` label.

Which anomalies open an episode without a verdict
    A cost anomaly whose detector severity is critical, or whose cost impact is at
    least ``page_usd_per_hour``. A behaviour anomaly (error rate, latency, egress:
    detector ``behaviour.*``) only when its detector severity is critical, and then
    as a warning. Anything else only updates an open episode (when material); an info
    anomaly (a routine burst, a shape onset) never opens one nor raises its severity,
    nor does a held-back one (``Anomaly.held``: a new function still being learned, or
    a surge not shown to be ``enforce_ratio`` x its baseline — a launch and a subtle
    creep look alike; the anomalies table and the budget policies are where they show).

Severity rule
    critical when any of: Governor isolated the function; the estimated extra spend
    is at least ``critical_usd_per_hour``; a cost anomaly's detector called it
    critical; a cost anomaly's magnitude is at least ``critical_ratio`` — magnitude is
    observed / baseline of the driving feature (``cost_per_s`` first) when the anomaly
    carries a baseline, else its calibrated score ``score / threshold``. Otherwise
    warning. Severity never goes down within an episode.

Page rate limit
    A token bucket per team: ``pages_per_hour`` opens, refilled continuously. An open
    over the limit is still emitted (history) but folded: its ``actions`` gain
    ``"page folded into <id> …"`` (:func:`is_paged` is then false for all its events),
    it is counted in :attr:`IncidentTracker.folded`, and it is listed on the team's
    summary incident (function ``"*"``), which is paged once, updated when the number
    folded doubles or severity rises, and resolved when every folded incident is.
    Updates spend no token; resolves are never limited.

>>> from schemas import Action, Verdict
>>> t = IncidentTracker(PageRules(runbook_url="https://wiki/governor"))
>>> throttle = Verdict(function="checkout", action=Action.THROTTLE, rate_rps=3,
...                    expires_at_unix_nano=9, sequence=1)
>>> [opened] = t.on_verdict(throttle, None, "payments", now_ns=10**18)
>>> opened.status.value, opened.title, opened.runbook_url
('open', 'checkout: throttled to 3 rps', 'https://wiki/governor#cost-anomaly')
>>> release = Verdict(function="checkout", action=Action.RELEASE, expires_at_unix_nano=9,
...                   sequence=2, reason="released after throttled")
>>> [resolved] = t.on_verdict(release, None, "payments", now_ns=10**18 + 60 * 10**9)
>>> resolved.status.value, resolved.incident_id == opened.incident_id
('resolved', True)
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from schemas import (
    Action,
    Anomaly,
    Driver,
    Hold,
    Incident,
    IncidentStatus,
    Severity,
    Verdict,
)
from streams.state import MAX_INT, MIN_INT, Reader

__all__ = [
    "FOLDED",
    "SUMMARY_FUNCTION",
    "IncidentTracker",
    "Kind",
    "PageRules",
    "incident_kind",
    "is_paged",
    "severity_of",
]

FOLDED = "page folded into"
"""Prefix of the ``actions`` entry that marks an incident whose page was rate-limited."""
SUMMARY_FUNCTION = "*"
"""``function`` of a team's rate-limit summary incident."""

_NS = 1_000_000_000
_HOUR_NS = 3600 * _NS
_MAX_ALSO = 5
_MAX_LISTED = 20


class Kind(StrEnum):
    """What an incident is about; the value is the runbook anchor."""

    LATENCY = "latency"
    ERROR_STORM = "error-storm"
    COST = "cost-anomaly"
    ISOLATED = "isolated"
    BUDGET = "budget"
    EGRESS = "egress"
    DATA_ACCESS = "data-access"
    RESPONSIBLE_AI = "responsible-ai"
    RATE_LIMITED = "rate-limited"


_PRIORITY = {kind: rank for rank, kind in enumerate(Kind)}
"""An episode's kind only moves up this order (policy kinds beat generic ones)."""
_DRIVER_KINDS = {Driver.ERROR_RATE: Kind.ERROR_STORM, Driver.DURATION: Kind.LATENCY,
                 Driver.EGRESS: Kind.EGRESS}
"""Kinds of the anomalies whose driver has its own runbook section."""
_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class PageRules:
    """When to open, update and page; see the module docstring for each rule."""

    runbook_url: str = "docs/runbook.md"
    """A relative one is taken from :attr:`public_url`."""
    public_url: str = ""
    """Where on-call reach the worker (``GOVERNOR_PUBLIC_URL``); pages' links are absolute."""
    pages_per_hour: float = 6.0
    """Opens paged per team and hour (token bucket); 0: unlimited."""
    quiet_seconds: float = 300.0
    """An episode opened by anomalies alone resolves after this long without one."""
    page_usd_per_hour: float = 1.0
    """A cost anomaly with at least this impact opens an episode without a verdict."""
    critical_usd_per_hour: float = 10.0
    critical_ratio: float = 10.0
    material_change: float = 0.5
    material_usd_per_hour: float = 0.1

    @classmethod
    def from_settings(cls, settings: Any) -> PageRules:
        """Rules from :class:`streams.settings.Settings` (fields it lacks: defaults)."""
        defaults = cls()
        names = {"pages_per_hour": "pages_per_hour",
                 "quiet_seconds": "incident_quiet_seconds",
                 "page_usd_per_hour": "page_usd_per_hour",
                 "critical_usd_per_hour": "page_critical_usd_per_hour"}
        values: dict[str, Any] = {
            ours: float(getattr(settings, theirs, getattr(defaults, ours)))
            for ours, theirs in names.items()}
        return cls(runbook_url=getattr(settings, "runbook_url", "") or defaults.runbook_url,
                   public_url=getattr(settings, "public_base", ""), **values)

    def link(self, url: str) -> str:
        """``url`` made absolute against :attr:`public_url` (when set)."""
        return urllib.parse.urljoin(self.public_url.rstrip("/") + "/", url) if (
            self.public_url) else url


def is_paged(incident: Incident) -> bool:
    """False for incidents whose page the team's rate limit folded into a summary."""
    return not incident.folded_into


def incident_kind(incident: Incident) -> str:
    """The incident's kind (its runbook section), ``"incident"`` when it has none."""
    return incident.kind or "incident"


def severity_of(anomaly: Anomaly | None, action: Action | None, rules: PageRules) -> Severity:
    """The severity rule of the module docstring for one anomaly and/or verdict."""
    if action is Action.ISOLATE:
        return Severity.CRITICAL
    if anomaly is None:
        return Severity.WARNING
    if anomaly.cost_impact_usd_per_hour >= rules.critical_usd_per_hour:
        return Severity.CRITICAL
    if _is_behaviour(anomaly):
        return Severity.WARNING
    if anomaly.severity is Severity.CRITICAL or _magnitude(anomaly)[0] >= rules.critical_ratio:
        return Severity.CRITICAL
    return Severity.WARNING


def _is_behaviour(anomaly: Anomaly) -> bool:
    return anomaly.detector.startswith("behaviour.")


def _magnitude(anomaly: Anomaly) -> tuple[float, str]:
    """(observed / baseline, feature) of the driving feature, or (calibrated score, "")."""
    f, b = anomaly.features, anomaly.baseline
    ratios = {k: f[k] / v for k, v in b.items() if v > 0 and k in f}
    if "cost_per_s" in ratios:
        return ratios["cost_per_s"], "cost_per_s"
    if ratios:
        feature = max(ratios, key=ratios.__getitem__)
        return ratios[feature], feature
    if anomaly.threshold > 0:
        return anomaly.score / anomaly.threshold, ""
    return anomaly.score, ""


def _kind(anomaly: Anomaly | None, action: Action | None = None,
          egress_allow: list[str] | None = None) -> Kind:
    """The kind of an anomaly and/or verdict, from their typed fields."""
    if anomaly is not None and anomaly.driver in _DRIVER_KINDS:
        return _DRIVER_KINDS[anomaly.driver]
    if egress_allow is not None:
        return Kind.EGRESS
    return Kind.ISOLATED if action is Action.ISOLATE else Kind.COST


def _times(r: float) -> str:
    return f"{r:.0f}×" if r >= 10 else f"{r:.1f}×"


def _clause(text: str, limit: int = 160) -> str:
    first = text.split(";")[0].strip()
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _headline(anomaly: Anomaly) -> str:
    """What is anomalous and by how much, in a few words."""
    ratio, feature = _magnitude(anomaly)
    if anomaly.detector == "single_invocation":
        return f"one call cost {_times(ratio)} baseline"
    if _is_behaviour(anomaly) and anomaly.explanation:
        return _clause(anomaly.explanation, 80)
    if feature == "cost_per_s":
        return f"cost {_times(ratio)} baseline"
    if feature:
        return f"{feature.replace('_', ' ')} {_times(ratio)} baseline"
    if anomaly.explanation:
        return _clause(anomaly.explanation, 80)
    return f"{anomaly.detector} score {anomaly.score:.1f}"


def _driver(anomaly: Anomaly) -> str:
    if anomaly.driver is not Driver.NONE:
        return anomaly.driver.value
    if _is_behaviour(anomaly):
        return anomaly.detector.removeprefix("behaviour.").replace("_", " ")
    if anomaly.detector == "single_invocation":
        return "cost per invocation"
    _, feature = _magnitude(anomaly)
    return feature.replace("_", " ")


def _observed(anomaly: Anomaly) -> str:
    parts = []
    for k, base in list(anomaly.baseline.items())[:6]:
        if k in anomaly.features:
            value = anomaly.features[k]
            ratio = f" ({_times(value / base)})" if base > 0 else ""
            parts.append(f"{k} {value:.4g} vs {base:.4g}{ratio}")
    return ", ".join(parts)


def _action_text(verdict: Verdict) -> str:
    if verdict.action is Action.THROTTLE:
        return (f"throttled to {verdict.rate_rps:g} rps" if verdict.rate_rps is not None
                else "throttled")
    if verdict.egress_allow is not None:
        n = len(verdict.egress_allow)
        return f"isolated (egress limited to {n} destination{'s' * (n != 1)})"
    return "isolated"


def _clock(now_ns: int) -> str:
    return datetime.fromtimestamp(now_ns / _NS, UTC).strftime("%H:%M:%SZ")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _higher(a: Severity, b: Severity) -> Severity:
    return a if _SEVERITY_RANK[a] >= _SEVERITY_RANK[b] else b


@dataclass
class _Episode:
    function: str
    team: str
    incident_id: str
    opened_ns: int
    kind: Kind
    severity: Severity
    last_signal_ns: int
    headline: str = ""
    explanation: str = ""
    observed: str = ""
    driver: str = ""
    detector: str = ""
    detail: str = ""  # detector, score and threshold
    impact: float = 0.0
    action: str = ""  # the enforcement in force, e.g. "throttled to 3 rps"
    verdict: bool = False  # a verdict is part of the episode: no quiet auto-resolve
    reason: str = ""  # the first verdict's reason, when no anomaly explains the episode
    actions: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)
    anomaly_ids: list[str] = field(default_factory=list)
    last_sequence: int = -1
    updates: int = 0
    emitted_severity: Severity = Severity.INFO
    emitted_impact: float = 0.0
    folded_into: str = ""
    runbook: str = ""  # runbook base URL in force for the function
    page_rate: float = 0.0  # the team's pages per hour in force when it opened

    _TEXTS = ("function", "team", "incident_id", "headline", "explanation", "observed",
              "driver", "detector", "detail", "action", "reason", "folded_into", "runbook")
    _TIMES = ("opened_ns", "last_signal_ns", "last_sequence", "updates")
    _LISTS = ("actions", "also", "anomaly_ids")
    _FIGURES = ("impact", "emitted_impact", "page_rate")

    def to_state(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in (
                    *self._TEXTS, *self._TIMES, *self._FIGURES, "verdict")},
                **{name: list(getattr(self, name)) for name in self._LISTS},
                "kind": self.kind.value, "severity": self.severity.value,
                "emitted_severity": self.emitted_severity.value}

    @classmethod
    def from_state(cls, r: Reader) -> _Episode:
        values: dict[str, Any] = {name: r.text(name) for name in cls._TEXTS}
        values.update({name: r.integer(name, MIN_INT, MAX_INT) for name in cls._TIMES})
        values.update({name: r.number(name, 0.0) for name in cls._FIGURES})
        values.update({name: r.texts(name, 1000) for name in cls._LISTS})
        return cls(**values, verdict=r.flag("verdict"), kind=r.choice("kind", Kind),
                   severity=r.choice("severity", Severity),
                   emitted_severity=r.choice("emitted_severity", Severity))


@dataclass
class _Summary:
    team: str
    incident_id: str
    opened_ns: int
    severity: Severity = Severity.WARNING
    members: dict[str, str] = field(default_factory=dict)  # incident_id -> title, open ones
    total: int = 0
    emitted_total: int = 0
    emitted_severity: Severity = Severity.INFO
    updates: int = 0
    actions: list[str] = field(default_factory=list)
    runbook: str = ""
    page_rate: float = 0.0


@dataclass
class _Bucket:
    tokens: float
    at_ns: int


class IncidentTracker:
    """Turns anomalies and verdicts into incident events; bounded.

    State is one open episode per function, one bucket and at most one summary per
    team; resolved episodes are dropped.
    """

    def __init__(self, rules: PageRules | None = None) -> None:
        self.rules = rules or PageRules()
        self._open: dict[str, _Episode] = {}
        self._summaries: dict[str, _Summary] = {}
        self._buckets: dict[str, _Bucket] = {}
        self.folded: dict[str, int] = {}
        """Opens folded into a summary (not paged), per team, since start."""
        self.counts: dict[str, int] = {"open": 0, "updated": 0, "resolved": 0, "folded": 0}
        """Incident events emitted, by status, plus opens folded (all teams)."""

    # the worker's entry points -------------------------------------------------------

    def on_verdict(self, verdict: Verdict, anomaly: Anomaly | None, team: str,
                   now_ns: int, limits: Mapping[str, object] | None = None,
                   kind: Kind | None = None) -> list[Incident]:
        """A throttle/isolate opens or updates the episode; a release resolves it.

        ``limits``: the live thresholds in force for the function (optional); its
        ``page_rate_per_hour`` and ``runbook_url`` override the rules' when an
        episode opens. ``kind``: what the verdict is about when its policy says so
        (a budget, egress …); else it follows from the anomaly and the action.
        """
        function = verdict.function
        ep = self._open.get(function)
        if ep is not None and verdict.sequence <= ep.last_sequence:
            return []  # a duplicate or stale verdict
        if verdict.action is Action.RELEASE:
            if ep is None:
                return []
            reason = _clause(verdict.reason, 200) or f"by {verdict.issuer or 'Governor'}"
            if not reason.startswith("released"):
                reason = f"released: {reason}"
            return self._resolve(function, now_ns, f"{reason} ({_clock(now_ns)})")
        action = _action_text(verdict)
        kind = kind or _kind(anomaly, verdict.action, verdict.egress_allow)
        severity = severity_of(anomaly, verdict.action, self.rules)
        if ep is None:
            ep = self._new(function, team, now_ns, kind, severity, limits)
            ep.reason = verdict.reason
            self._absorb_verdict(ep, verdict, action, now_ns)
            if anomaly is not None:
                self._absorb(ep, anomaly, now_ns)
            return self._opened(ep, now_ns)
        new_action = action != ep.action
        self._absorb_verdict(ep, verdict, action, now_ns)
        if anomaly is not None and anomaly.event_id not in ep.anomaly_ids:
            self._absorb(ep, anomaly, now_ns)
        ep.kind = max(ep.kind, kind, key=_PRIORITY.__getitem__)
        ep.severity = _higher(ep.severity, severity)
        return self._updated(ep, now_ns, new_action)

    def on_anomaly(self, anomaly: Anomaly, team: str, now_ns: int,
                   limits: Mapping[str, object] | None = None) -> list[Incident]:
        """A high anomaly opens an episode if none is open; any updates an open one
        (emitted only when material). An info anomaly (routine, a shape) or a held-back
        one (reported, not enforced) never opens one nor raises its severity.
        ``limits``: as for :meth:`on_verdict`."""
        ep = self._open.get(anomaly.function)
        severity = severity_of(anomaly, None, self.rules)
        informative = anomaly.severity is Severity.INFO or anomaly.held is not Hold.NONE
        if ep is not None:
            if anomaly.event_id in ep.anomaly_ids:
                return []
            self._absorb(ep, anomaly, now_ns)
            if not informative:
                ep.severity = _higher(ep.severity, severity)
            return self._updated(ep, now_ns, False)
        if informative:
            return []
        if _is_behaviour(anomaly):
            if anomaly.severity is not Severity.CRITICAL:
                return []
        elif (anomaly.severity is not Severity.CRITICAL
              and anomaly.cost_impact_usd_per_hour < self.rules.page_usd_per_hour):
            return []
        ep = self._new(anomaly.function, team, now_ns, _kind(anomaly), severity,
                       limits)
        self._absorb(ep, anomaly, now_ns)
        return self._opened(ep, now_ns)

    def on_quiet(self, function: str, now_ns: int) -> list[Incident]:
        """Resolve the function's episode if anomalies alone opened it and none came
        for ``quiet_seconds``."""
        ep = self._open.get(function)
        quiet_ns = int(self.rules.quiet_seconds * _NS)
        if ep is None or ep.verdict or now_ns - ep.last_signal_ns < quiet_ns:
            return []
        return self._resolve(function, now_ns, f"auto-resolved: no anomaly for "
                                               f"{self.rules.quiet_seconds:g} s "
                                               f"({_clock(now_ns)})")

    def sweep(self, now_ns: int) -> list[Incident]:
        """:meth:`on_quiet` for every function with an open episode."""
        out: list[Incident] = []
        for function in list(self._open):
            out += self.on_quiet(function, now_ns)
        return out

    def open_incidents(self, now_ns: int, functions: Iterable[str] | None = None
                       ) -> list[Incident]:
        """The current state of every open incident, or of ``functions``' (e.g. to
        re-assert after a restart)."""
        episodes = (self._open.values() if functions is None
                    else [self._open[f] for f in functions if f in self._open])
        out = [self._render(ep, IncidentStatus.UPDATED if ep.updates else IncidentStatus.OPEN,
                            now_ns) for ep in episodes]
        if functions is not None:
            return out
        out += [self._render_summary(s, IncidentStatus.UPDATED if s.updates
                                     else IncidentStatus.OPEN, now_ns)
                for s in self._summaries.values()]
        return out

    def is_open(self, function: str) -> bool:
        """Whether the function has an open episode."""
        return function in self._open

    def export(self, function: str) -> dict[str, Any] | None:
        """The function's open episode as plain data, for the worker's snapshots."""
        episode = self._open.get(function)
        return episode.to_state() if episode is not None else None

    @staticmethod
    def read(state: object, where: str = "incident") -> _Episode:
        """An episode from :meth:`export` (:class:`~streams.state.StateError` if it is
        not one), for :meth:`restore`."""
        return _Episode.from_state(Reader(state, where))

    def restore(self, function: str, episode: _Episode) -> None:
        self._open[function] = episode

    def hand_over(self, function: str) -> str | None:
        """Drop ``function``'s open episode without resolving it: another worker took
        the function over with it (from its snapshot) and carries it on. The episode's
        incident id, if it had one open."""
        episode = self._open.pop(function, None)
        return episode.incident_id if episode is not None else None

    def open_functions(self) -> set[str]:
        return set(self._open)

    # episode life --------------------------------------------------------------------

    def _new(self, function: str, team: str, now_ns: int, kind: Kind, severity: Severity,
             limits: Mapping[str, object] | None) -> _Episode:
        digest = hashlib.sha256(f"{function}\x00{now_ns}".encode()).hexdigest()[:16]
        limits = limits or {}
        runbook = limits.get("runbook_url")
        rate = limits.get("page_rate_per_hour")
        return _Episode(function=function, team=team, incident_id=digest, opened_ns=now_ns,
                        kind=kind, severity=severity, last_signal_ns=now_ns,
                        runbook=runbook if isinstance(runbook, str) and runbook
                        else self.rules.runbook_url,
                        page_rate=float(rate) if isinstance(rate, int | float)
                        else self.rules.pages_per_hour)

    def _absorb_verdict(self, ep: _Episode, verdict: Verdict, action: str, now_ns: int) -> None:
        ep.last_sequence = verdict.sequence
        ep.verdict = True
        if action != ep.action:
            ep.actions.append(f"{action} ({_clock(now_ns)})")
            ep.action = action

    def _absorb(self, ep: _Episode, anomaly: Anomaly, now_ns: int) -> None:
        ep.last_signal_ns = now_ns
        ep.anomaly_ids = [*ep.anomaly_ids[-7:], anomaly.event_id]
        headline = _headline(anomaly)
        if not ep.headline or not _is_behaviour(anomaly):
            if ep.headline and ep.headline != headline and ep.detector.startswith("behaviour."):
                self._also(ep, ep.headline)
            ep.headline, ep.detector = headline, anomaly.detector
            ep.explanation = anomaly.explanation
            ep.observed = _observed(anomaly)
            ep.driver = _driver(anomaly)
            ep.detail = (f"{anomaly.detector} score {anomaly.score:.3g}"
                         + (f" vs threshold {anomaly.threshold:.3g} (calibrated "
                            f"{anomaly.score / anomaly.threshold:.2g})"
                            if anomaly.threshold > 0 else ""))
        elif headline != ep.headline:
            self._also(ep, headline)
        if anomaly.cost_impact_usd_per_hour > 0:
            ep.impact = anomaly.cost_impact_usd_per_hour
        ep.kind = max(ep.kind, _kind(anomaly), key=_PRIORITY.__getitem__)

    def _also(self, ep: _Episode, line: str) -> None:
        if line not in ep.also:
            ep.also = [*ep.also[-(_MAX_ALSO - 1):], line]

    def _opened(self, ep: _Episode, now_ns: int) -> list[Incident]:
        self._open[ep.function] = ep
        if self._take(ep.team, ep.page_rate, now_ns):
            return [self._event(ep, IncidentStatus.OPEN, now_ns)]
        team = ep.team
        self.folded[team] = self.folded.get(team, 0) + 1
        self.counts["folded"] += 1
        summary = self._summaries.get(team)
        new = summary is None
        if summary is None:
            digest = hashlib.sha256(f"{SUMMARY_FUNCTION}\x00{team}\x00{now_ns}".encode())
            summary = self._summaries[team] = _Summary(team, digest.hexdigest()[:16], now_ns,
                                                       runbook=ep.runbook,
                                                       page_rate=ep.page_rate)
        ep.folded_into = summary.incident_id
        ep.actions.append(f"{FOLDED} {summary.incident_id} ({team or 'unowned'} over "
                          f"{ep.page_rate:g} pages/h)")
        out = [self._event(ep, IncidentStatus.OPEN, now_ns)]
        summary.members[ep.incident_id] = out[0].title
        summary.total += 1
        summary.severity = _higher(summary.severity, ep.severity)
        if new:
            out.append(self._summary_event(summary, IncidentStatus.OPEN, now_ns))
        elif (summary.total >= 2 * summary.emitted_total
              or _SEVERITY_RANK[summary.severity] > _SEVERITY_RANK[summary.emitted_severity]):
            summary.updates += 1
            out.append(self._summary_event(summary, IncidentStatus.UPDATED, now_ns))
        return out

    def _updated(self, ep: _Episode, now_ns: int, new_action: bool) -> list[Incident]:
        moved = abs(ep.impact - ep.emitted_impact)
        material = (new_action
                    or _SEVERITY_RANK[ep.severity] > _SEVERITY_RANK[ep.emitted_severity]
                    or (moved >= self.rules.material_usd_per_hour
                        and moved >= self.rules.material_change * ep.emitted_impact))
        if not material:
            return []
        ep.updates += 1
        out = [self._event(ep, IncidentStatus.UPDATED, now_ns)]
        summary = self._summaries.get(ep.team) if ep.folded_into else None
        if summary is not None and summary.incident_id == ep.folded_into:
            summary.members[ep.incident_id] = out[0].title
            if _SEVERITY_RANK[ep.severity] > _SEVERITY_RANK[summary.severity]:
                summary.severity = ep.severity
                summary.updates += 1
                out.append(self._summary_event(summary, IncidentStatus.UPDATED, now_ns))
        return out

    def _resolve(self, function: str, now_ns: int, action: str) -> list[Incident]:
        ep = self._open.pop(function, None)
        if ep is None:
            return []
        ep.actions.append(action)
        out = [self._event(ep, IncidentStatus.RESOLVED, now_ns)]
        summary = self._summaries.get(ep.team) if ep.folded_into else None
        if summary is not None and summary.incident_id == ep.folded_into:
            summary.members.pop(ep.incident_id, None)
            if not summary.members:
                del self._summaries[ep.team]
                summary.actions.append(f"all {summary.total} folded incidents resolved "
                                       f"({_clock(now_ns)})")
                out.append(self._summary_event(summary, IncidentStatus.RESOLVED, now_ns))
        return out

    def _take(self, team: str, capacity: float, now_ns: int) -> bool:
        """Spend one of the team's page tokens, if it has one."""
        if capacity <= 0:
            return True
        bucket = self._buckets.get(team)
        if bucket is None:
            bucket = self._buckets[team] = _Bucket(capacity, now_ns)
        elapsed = max(0, now_ns - bucket.at_ns)
        bucket.tokens = min(capacity, bucket.tokens + elapsed * capacity / _HOUR_NS)
        bucket.at_ns = max(bucket.at_ns, now_ns)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        return False

    # rendering -----------------------------------------------------------------------

    def _runbook(self, base: str, kind: Kind) -> str:
        return f"{self.rules.link(base.partition('#')[0])}#{kind.value}"

    def _event(self, ep: _Episode, status: IncidentStatus, now_ns: int) -> Incident:
        """Render the episode and record what was emitted (for the materiality test)."""
        if status is not IncidentStatus.RESOLVED:
            ep.emitted_severity, ep.emitted_impact = ep.severity, ep.impact
        self.counts[status.value] += 1
        return self._render(ep, status, now_ns)

    def _render(self, ep: _Episode, status: IncidentStatus, now_ns: int) -> Incident:
        reason = ep.reason
        if ep.action and reason.startswith(("throttled", "isolated")):
            reason = reason.partition(":")[2]  # decide's "throttled to 3 rps: <why>"
        what = ep.headline or _clause(reason, 80)
        doing = ep.action or "reported, not enforced"
        title = f"{ep.function}: {what}, {doing}" if what else f"{ep.function}: {doing}"
        runbook = self._runbook(ep.runbook, ep.kind)
        lines = []
        if ep.explanation:
            lines.append(f"What: {_cut(ep.explanation, 600)}")
        elif ep.reason:
            lines.append(f"What: {_cut(ep.reason, 600)}")
        if ep.observed:
            lines.append(f"Observed vs baseline: {ep.observed}")
        if ep.detector:
            lines.append(f"Detector: {ep.detail}")
        if ep.driver:
            lines.append(f"Likely driver: {ep.driver}")
        lines.append(f"Cost impact: ${ep.impact:,.2f}/h extra while it goes on"
                     if ep.impact > 0 else "Cost impact: none estimated")
        lines.append("Governor did: " + ("; ".join(ep.actions) if ep.actions
                                          else "nothing yet (reported, not enforced)"))
        if ep.also:
            lines.append("Also seen: " + "; ".join(ep.also))
        lines.append(f"Runbook: {runbook}")
        return Incident(
            function=ep.function, event_id=_event_id(ep.incident_id, status, ep.updates),
            time_unix_nano=now_ns, incident_id=ep.incident_id, status=status,
            severity=ep.severity, team=ep.team, title=_cut(title, 1024),
            summary=_cut("\n".join(lines), 8192), driver=_cut(ep.driver, 1024),
            cost_impact_usd_per_hour=ep.impact, actions=list(ep.actions),
            runbook_url=_cut(runbook, 2048), opened_at_unix_nano=ep.opened_ns,
            resolved_at_unix_nano=now_ns if status is IncidentStatus.RESOLVED else 0,
            updates=ep.updates, kind=ep.kind.value, folded_into=ep.folded_into)

    def _summary_event(self, s: _Summary, status: IncidentStatus, now_ns: int) -> Incident:
        if status is not IncidentStatus.RESOLVED:
            s.emitted_total, s.emitted_severity = s.total, s.severity
        self.counts[status.value] += 1
        return self._render_summary(s, status, now_ns)

    def _render_summary(self, s: _Summary, status: IncidentStatus, now_ns: int) -> Incident:
        team = s.team or "unowned"
        limit = s.page_rate
        title = (f"{team}: {s.total} incident{'s' * (s.total != 1)} not paged separately, "
                 f"paging rate-limited to {limit:g}/h")
        lines = [f"Team {team} went over {limit:g} pages per hour; further incidents are "
                 f"listed here instead of paging one by one ({s.total} so far, "
                 f"{len(s.members)} still open):"]
        lines += [f"- {title_}" for title_ in list(s.members.values())[:_MAX_LISTED]]
        if len(s.members) > _MAX_LISTED:
            lines.append(f"- … and {len(s.members) - _MAX_LISTED} more")
        runbook = self._runbook(s.runbook, Kind.RATE_LIMITED)
        lines.append(f"Runbook: {runbook}")
        return Incident(
            function=SUMMARY_FUNCTION, event_id=_event_id(s.incident_id, status, s.updates),
            time_unix_nano=now_ns, incident_id=s.incident_id, status=status,
            severity=s.severity, team=s.team, title=_cut(title, 1024),
            summary=_cut("\n".join(lines), 8192), driver="page rate limit",
            actions=list(s.actions), runbook_url=runbook, opened_at_unix_nano=s.opened_ns,
            resolved_at_unix_nano=now_ns if status is IncidentStatus.RESOLVED else 0,
            updates=s.updates, kind=Kind.RATE_LIMITED.value)


def _event_id(incident_id: str, status: IncidentStatus, updates: int) -> str:
    """Deterministic: a replayed window re-emits the same ids (sinks dedupe on them)."""
    return hashlib.sha256(f"{incident_id}/{status.value}/{updates}".encode()).hexdigest()[:32]

