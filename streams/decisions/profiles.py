"""What the policies know about a function besides its window: metadata and spend.

:class:`Profiles` reads span resource and attributes (owning team, memory, declared
timeout and concurrency, labels, datasets touched, egress destinations,
responsible-AI attributes); :class:`Spend` keeps rolling spend per function and team
from closed windows. Both are small and cheap per span; a function's spend is kept
in the worker's snapshots as plain data.

Span attributes read (set them with the OpenTelemetry API inside a governed
handler, or as resource attributes through ``OTEL_RESOURCE_ATTRIBUTES``):

=================================  ===================================================
``governor.team``                  owning team (resource; the agent sets it)
``faas.max_memory``                configured memory in bytes (resource)
``governor.timeout_s``             configured timeout, seconds
``governor.concurrency``           configured (reserved) concurrency
``governor.label.<name>``          free-form labels (up to 64, as the window's first
                                   span declares them)
``governor.model_serving``         true for functions that serve a model
``governor.datasets``,             datasets touched (comma-separated)
``db.namespace``, ``db.name``
``governor.egress.hosts``          destinations contacted (the agent, with egress on)
``governor.ai.model_card`` …       ``model_card``, ``fairness_report``,
                                   ``explanation``, ``data_provenance`` (links or ids),
                                   ``fairness_disparity`` (a number)
=================================  ===================================================
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from schemas import Span
from streams.state import MIN_INT, Reader, StateError, integer, number, rows

log = logging.getLogger("governor.worker")

AI_KEYS = ("model_card", "fairness_report", "explanation", "data_provenance")
_AI_NAMES = frozenset({*AI_KEYS, "fairness_disparity"})
"""The ``governor.ai.*`` attributes the policies read; others are not kept."""
DATASET_KEYS = ("governor.datasets", "db.namespace", "db.name")
MAX_NAMES = 64
"""Datasets or hosts kept per function and window, and labels per function (a bound on
memory and on each policy evaluation, not a quota)."""


def _names(value: Any) -> list[str]:
    return [n.strip() for n in str(value).split(",") if n.strip()]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class Profile:
    """One function's metadata (latest seen) and this window's destinations."""

    team: str = ""
    version: str = ""
    memory_mb: int = 0
    timeout_s: float | None = None
    concurrency: int | None = None
    model_serving: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    ai: dict[str, Any] = field(default_factory=dict)
    datasets: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    read: bool = False  # metadata read from a span of the current window

    def policy_input(self, name: str) -> dict[str, Any]:
        """The ``function``, ``egress``, ``data`` and ``ai`` parts of the policy input."""
        return {
            "function": {"name": name, "team": self.team, "version": self.version,
                         "memory_mb": self.memory_mb, "timeout_s": self.timeout_s,
                         "concurrency": self.concurrency, "labels": dict(self.labels),
                         "model_serving": self.model_serving, "attributes": {}},
            "egress": {"hosts": sorted(self.hosts)},
            "data": {"datasets": sorted(self.datasets)},
            "ai": {**{k: self.ai.get(k) for k in AI_KEYS},
                   "fairness_disparity": self.ai.get("fairness_disparity")},
        }


class Profiles:
    """Profiles of every function this worker has seen."""

    def __init__(self) -> None:
        self._profiles: dict[str, Profile] = {}

    def __len__(self) -> int:
        return len(self._profiles)

    def has(self, function: str) -> bool:
        return function in self._profiles

    def get(self, function: str) -> Profile:
        profile = self._profiles.get(function)
        if profile is None:
            profile = self._profiles[function] = Profile()
        return profile

    def on_span(self, span: Span) -> None:
        """Destinations from every span; metadata from the first span of each window
        (it is per deployment, and reading it from every span would cost the hot path)."""
        p = self.get(span.function)
        r, a = span.resource, span.attributes
        if not p.read:
            p.read = True
            if (team := r.get("governor.team")) is not None:
                p.team = str(team)
            if (version := r.get("faas.version")) is not None:
                p.version = str(version)
            if isinstance(memory := r.get("faas.max_memory"), int) and memory > 0:
                p.memory_mb = memory // (1024 * 1024)
            p.labels, p.ai = {}, {}  # the deployment's as this span declares them
            for attrs in (r, a):
                self._declared(p, attrs)
        for key in DATASET_KEYS:
            if key in a and len(p.datasets) < MAX_NAMES:
                p.datasets.update(_names(a[key]))
        if "governor.egress.hosts" in a and len(p.hosts) < MAX_NAMES:
            p.hosts.update(_names(a["governor.egress.hosts"]))

    @staticmethod
    def _declared(p: Profile, attrs: dict[str, Any]) -> None:
        if "governor.timeout_s" in attrs:
            p.timeout_s = _number(attrs["governor.timeout_s"])
        if "governor.concurrency" in attrs:
            number = _number(attrs["governor.concurrency"])
            p.concurrency = int(number) if number is not None else None
        if "governor.model_serving" in attrs:
            p.model_serving = attrs["governor.model_serving"] in (True, "true", "1", 1)
        for key, value in attrs.items():
            if key.startswith("governor.label.") and len(p.labels) < MAX_NAMES:
                p.labels[key[len("governor.label."):]] = str(value)
            elif key.startswith("governor.ai.") and key[len("governor.ai."):] in _AI_NAMES:
                name = key[len("governor.ai."):]
                p.ai[name] = _number(value) if name == "fairness_disparity" else str(value)

    def forget(self, function: str) -> None:
        self._profiles.pop(function, None)

    def end_window(self, function: str) -> None:
        """Forget the destinations of the window just decided on."""
        p = self._profiles.get(function)
        if p is not None:
            p.datasets.clear()
            p.hosts.clear()
            p.read = False


MINUTE_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MINUTE_NS
MONTH_HOURS = 730.0


@dataclass
class _Buckets:
    """Spend in time buckets of ``size_ns``, the last ``keep`` of them."""

    size_ns: int
    keep: int
    spend: dict[int, float] = field(default_factory=dict)

    def add(self, time_ns: int, usd: float) -> None:
        bucket = time_ns // self.size_ns
        self.spend[bucket] = self.spend.get(bucket, 0.0) + usd
        if len(self.spend) > self.keep:
            for old in sorted(self.spend)[:-self.keep]:
                del self.spend[old]

    def total(self, now_ns: int) -> float:
        first = now_ns // self.size_ns - self.keep + 1
        return sum(v for b, v in self.spend.items() if b >= first)

    def to_state(self) -> list[list[float]]:
        return [[bucket, value] for bucket, value in self.spend.items()]

    def restore(self, state: object, where: str) -> None:
        for i, (bucket, value) in enumerate(rows(state, where, self.keep, 2)):
            self.spend[integer(bucket, f"{where}[{i}][0]", MIN_INT)] = number(
                value, f"{where}[{i}][1]", 0.0)


@dataclass
class _Ledger:
    minutes: _Buckets = field(default_factory=lambda: _Buckets(MINUTE_NS, 60))
    hours: _Buckets = field(default_factory=lambda: _Buckets(HOUR_NS, 24))
    calls: _Buckets = field(default_factory=lambda: _Buckets(MINUTE_NS, 60))
    first_ns: int = 0

    def add(self, time_ns: int, usd: float, calls: int) -> None:
        self.first_ns = min(self.first_ns or time_ns, time_ns)
        self.minutes.add(time_ns, usd)
        self.hours.add(time_ns, usd)
        self.calls.add(time_ns, calls)

    def observed_s(self, now_ns: int) -> float:
        """Seconds of the last hour this ledger has seen (at least one minute)."""
        return min(3600.0, max(60.0, (now_ns - (self.first_ns or now_ns)) / 1e9))

    def to_state(self) -> dict[str, Any]:
        return {"first_ns": self.first_ns, "minutes": self.minutes.to_state(),
                "hours": self.hours.to_state(), "calls": self.calls.to_state()}

    @classmethod
    def from_state(cls, r: Reader) -> _Ledger:
        ledger = cls(first_ns=r.integer("first_ns", MIN_INT))
        for name in ("minutes", "hours", "calls"):
            buckets = getattr(ledger, name)
            buckets.restore(r.raw(name), f"{r.where}.{name}")
            if len(buckets.spend) != len(r.items(name, buckets.keep)):
                raise StateError(f"{r.where}.{name}: a bucket appears twice")
        return ledger


class Spend:
    """Rolling spend per function and per team: last hour, last 24 h, month forecast."""

    def __init__(self, max_teams: int = 0, counters: Counter[str] | None = None) -> None:
        self._functions: dict[str, _Ledger] = {}
        self._teams: dict[str, _Ledger] = {}
        self.max_teams = max_teams  # 0: no limit
        self.counters: Counter[str] = Counter() if counters is None else counters
        """``teams_refused``: spend not counted for a team, ``max_teams`` were held."""

    def add(self, function: str, team: str, time_ns: int, usd: float, calls: int) -> None:
        """``usd`` spent on ``calls`` attempted calls (refused ones included) at ``time_ns``;
        a team beyond ``max_teams`` gets no ledger (logged once, counted)."""
        self._functions.setdefault(function, _Ledger()).add(time_ns, usd, calls)
        if team and (ledger := self._team(team)) is not None:
            ledger.add(time_ns, usd, calls)

    def _team(self, team: str) -> _Ledger | None:
        ledger = self._teams.get(team)
        if ledger is None:
            if self.max_teams and len(self._teams) >= self.max_teams:
                if not self.counters["teams_refused"]:
                    log.warning("%d teams have spend here (GOVERNOR_MAX_FUNCTIONS); team %r "
                                "and later new ones are not given team budgets", len(self._teams),
                                team[:100])
                self.counters["teams_refused"] += 1
                return None
            ledger = self._teams[team] = _Ledger()
        return ledger

    def export(self, function: str) -> dict[str, Any] | None:
        """The function's ledger as plain data, for the worker's snapshots."""
        ledger = self._functions.get(function)
        return ledger.to_state() if ledger is not None else None

    @staticmethod
    def read(state: object, where: str = "spend") -> _Ledger:
        """A ledger from :meth:`export` (:class:`~streams.state.StateError` if it is not
        one), for :meth:`restore`."""
        return _Ledger.from_state(Reader(state, where))

    def forget(self, function: str) -> None:
        """Drop the function's ledger (its team's keeps what it counted)."""
        self._functions.pop(function, None)

    def restore(self, function: str, team: str, ledger: _Ledger) -> None:
        """Put back a function's ledger; its spend counts towards ``team`` again."""
        self._functions[function] = ledger
        if team and (into := self._team(team)) is not None:
            into.first_ns = min(into.first_ns or ledger.first_ns, ledger.first_ns)
            for mine, theirs in ((into.minutes, ledger.minutes), (into.hours, ledger.hours),
                                 (into.calls, ledger.calls)):
                for bucket, value in theirs.spend.items():
                    mine.spend[bucket] = mine.spend.get(bucket, 0.0) + value

    def policy_input(self, function: str, team: str, now_ns: int) -> dict[str, float]:
        """The ``spend`` part of the policy input.

        The month forecast extrapolates the last hour's rate, and
        ``function_hour_attempts_per_s`` is the last hour's mean call rate (both over
        the time actually observed, for functions younger than an hour).
        """
        f = self._functions.get(function) or _Ledger()
        t = self._teams.get(team) or _Ledger()
        hour = f.minutes.total(now_ns)
        observed_s = f.observed_s(now_ns)
        return {"function_hour_usd": hour, "function_day_usd": f.hours.total(now_ns),
                "team_hour_usd": t.minutes.total(now_ns), "team_day_usd": t.hours.total(now_ns),
                "predicted_month_usd": hour / observed_s * 3600 * MONTH_HOURS,
                "function_hour_attempts_per_s": f.calls.total(now_ns) / observed_s}
