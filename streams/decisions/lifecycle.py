"""The verdict lifecycle of each function: normal → throttled → isolated → probing →
released.

Each window the policies conclude at most one :class:`Order` per function (the
strongest of their decisions). :class:`Lifecycle` turns the sequence of orders into
signed verdicts:

* an order on a normal function throttles or isolates it;
* hysteresis: a throttled function is only ever tightened mid-episode (a new rate
  at least 20 % lower) or escalated to isolation, never loosened;
* release once the verdict has held ``hold_seconds`` *and* no order has come for
  ``release_after_seconds``; a function that re-offends within ``cooldown_seconds``
  of a release holds twice as long as last time (up to 8×);
* probing: an isolation that its evidence needs calls to judge (a detector's, whose
  figures come from admitted calls: :attr:`Order.probe`) is not released blind. Once it
  has held, the function is throttled to ``probe_rps`` so a few calls run; an order
  backed by evidence from those calls isolates it again (same episode, twice the
  hold), orders whose evidence predates the probe are not heeded (then or after the
  release), and a probe with no heeded order for ``release_after_seconds`` is released;
* every verdict expires after ``verdict_ttl_seconds`` and is re-issued at half its
  life while the episode lasts, so agents fail open if the workers go away;
* an operator's verdict (issuer ``operator:…``) takes over until it expires:
  no automatic change or release meanwhile, and after a manual release no
  automatic verdict until it expires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from schemas import Action, Verdict, sign_verdict
from streams.state import MAX_INT, MIN_INT, Reader, StateError

OPERATOR = "operator:"
"""Issuer prefix of verdicts made by hand (``governor verdict``)."""
TIGHTEN = 0.8
"""A throttle is re-issued mid-episode only at a rate at most this × the current one."""
MAX_HOLD_FACTOR = 8


class Phase(StrEnum):
    NORMAL = "normal"
    THROTTLED = "throttled"
    ISOLATED = "isolated"
    PROBING = "probing"


@dataclass(frozen=True, slots=True)
class Order:
    """What the policies want done to a function this window."""

    action: Action  # THROTTLE or ISOLATE
    reason: str
    policy: str = ""
    rate_rps: float | None = None
    anomaly_id: str = ""
    egress_allow: list[str] | None = None
    probe: bool = False  # an isolation whose evidence comes from admitted calls
    evidence_ns: int | None = None  # when its evidence was last seen (None: current)

    def to_state(self) -> dict[str, Any]:
        return {"action": self.action.value, "reason": self.reason, "policy": self.policy,
                "rate_rps": self.rate_rps, "anomaly_id": self.anomaly_id,
                "egress_allow": self.egress_allow, "probe": self.probe,
                "evidence_ns": self.evidence_ns}

    @classmethod
    def from_state(cls, r: Reader) -> Order:
        action = r.choice("action", Action)
        if action not in (Action.THROTTLE, Action.ISOLATE):
            raise StateError(f"{r.where}.action: an order throttles or isolates")
        return cls(action, r.text("reason"), policy=r.text("policy", 256),
                   rate_rps=r.number("rate_rps", 0.0) if r.has("rate_rps") else None,
                   anomaly_id=r.text("anomaly_id", 128),
                   egress_allow=(r.texts("egress_allow", 1000, 512) if r.has("egress_allow")
                                 else None),
                   probe=r.flag("probe"),
                   evidence_ns=(r.integer("evidence_ns", MIN_INT) if r.has("evidence_ns")
                                else None))


@dataclass(frozen=True, slots=True)
class Timing:
    """The lifecycle thresholds in force for one function (live-tunable)."""

    hold_seconds: float = 30.0
    release_after_seconds: float = 30.0
    cooldown_seconds: float = 120.0
    verdict_ttl_seconds: float = 300.0
    probe_rps: float = 0.2


@dataclass
class _Track:
    phase: Phase = Phase.NORMAL
    order: Order | None = None  # the order in force
    since_ns: int = 0
    last_order_ns: int = 0
    hold_ns: int = 0
    cooldown_until_ns: int = 0
    renew_at_ns: int = 0
    manual_until_ns: int = 0
    manual: Action | None = None
    manual_sequence: int = 0
    probe_since_ns: int = 0  # when probing began

    _TIMES = ("since_ns", "last_order_ns", "hold_ns", "cooldown_until_ns", "renew_at_ns",
              "manual_until_ns", "probe_since_ns")

    def to_state(self) -> dict[str, Any]:
        return {"phase": self.phase.value,
                "order": self.order.to_state() if self.order else None,
                "manual": self.manual.value if self.manual else None,
                "manual_sequence": self.manual_sequence,
                **{name: getattr(self, name) for name in self._TIMES}}

    @classmethod
    def from_state(cls, r: Reader) -> _Track:
        track = cls(phase=r.choice("phase", Phase),
                    order=Order.from_state(r.reader("order")) if r.has("order") else None,
                    manual=r.choice("manual", Action) if r.has("manual") else None,
                    manual_sequence=r.integer("manual_sequence", 0, MAX_INT))
        for name in cls._TIMES:
            setattr(track, name, r.integer(name, MIN_INT))
        return track


@dataclass
class VerdictIssuer:
    """Signs verdicts and numbers them per function (monotonic across restarts)."""

    key: bytes
    ttl_ns: int
    issuer: str
    _sequence: dict[str, int] = field(default_factory=dict)

    def follow(self, verdict: Verdict) -> None:
        """Number the function's next verdict after ``verdict`` (e.g. an operator's)."""
        self.after(verdict.function, verdict.sequence)

    def after(self, function: str, sequence: int) -> None:
        """Number the function's next verdict above ``sequence``."""
        self._sequence[function] = max(self._sequence.get(function, 0), sequence)

    def issue(self, function: str, action: Action, reason: str, now: int,
              rate_rps: float | None = None, anomaly_id: str = "", ttl_ns: int | None = None,
              egress_allow: list[str] | None = None) -> Verdict:
        """A signed verdict issued at ``now`` (ns), numbered above every earlier one of
        the function and at least ``now`` in µs (monotonic across restarts)."""
        sequence = max(self._sequence.get(function, 0) + 1, now // 1000)
        self._sequence[function] = sequence
        verdict = Verdict(function=function, action=action, rate_rps=rate_rps,
                          issued_at_unix_nano=now, time_unix_nano=now,
                          expires_at_unix_nano=now + (ttl_ns or self.ttl_ns), sequence=sequence,
                          reason=reason, anomaly_id=anomaly_id, issuer=self.issuer,
                          egress_allow=egress_allow)
        return sign_verdict(verdict, self.key)


class Lifecycle:
    """Per-function verdict state; :meth:`step` once per closed window."""

    def __init__(self, issuer: VerdictIssuer) -> None:
        self.issuer = issuer
        self._tracks: dict[str, _Track] = {}

    def phase(self, function: str) -> Phase:
        track = self._tracks.get(function)
        return track.phase if track else Phase.NORMAL

    def export(self, function: str) -> dict[str, Any] | None:
        """The function's state as plain data, for the worker's snapshots."""
        track = self._tracks.get(function)
        return track.to_state() if track is not None else None

    @staticmethod
    def read(state: object, where: str = "lifecycle") -> _Track:
        """A function's state from :meth:`export` (:class:`~streams.state.StateError` if
        it is not one), for :meth:`restore`."""
        return _Track.from_state(Reader(state, where))

    def restore(self, function: str, track: _Track) -> None:
        self._tracks[function] = track

    def forget(self, function: str) -> None:
        self._tracks.pop(function, None)

    def functions(self) -> set[str]:
        return set(self._tracks)

    def observe(self, verdict: Verdict, now_ns: int) -> bool:
        """A verdict seen on the verdicts topic; an operator's, in force and newer than
        what the function had, takes over (then ``True``)."""
        if not verdict.issuer.startswith(OPERATOR) or verdict.expires_at_unix_nano <= now_ns:
            return False
        track = self._tracks.setdefault(verdict.function, _Track())
        if verdict.sequence <= track.manual_sequence:
            return False  # replayed from the compacted topic, or out of order
        track.manual_sequence = verdict.sequence
        track.manual, track.manual_until_ns = verdict.action, verdict.expires_at_unix_nano
        track.phase = {Action.THROTTLE: Phase.THROTTLED,
                       Action.ISOLATE: Phase.ISOLATED}.get(verdict.action, Phase.NORMAL)
        track.order = None
        track.since_ns = verdict.issued_at_unix_nano
        return True

    def step(self, function: str, order: Order | None, timing: Timing,
             now_ns: int) -> list[Verdict]:
        """Advance ``function`` by one window in which the policies concluded ``order``."""
        track = self._tracks.get(function)
        if track is None:
            if order is None:
                return []
            track = self._tracks[function] = _Track()
        if track.manual is not None:
            if now_ns < track.manual_until_ns:
                return []
            was, track.manual = track.manual, None
            if was is not Action.RELEASE:  # agents dropped it already; say so, close the page
                return [self._release(function, track, timing, now_ns,
                                      f"operator's {was.value} expired")]
            track.phase, track.order = Phase.NORMAL, None
        if (order is not None and order.probe and order.evidence_ns is not None
                and order.evidence_ns < track.probe_since_ns):
            order = None  # evidence from before the last probe: the probe judged it
        if order is not None:
            track.last_order_ns = now_ns
            return self._enforce(function, track, order, timing, now_ns)
        if track.phase is Phase.NORMAL:
            return []
        held = now_ns - track.since_ns >= track.hold_ns
        if track.phase is Phase.ISOLATED and held and track.order and track.order.probe:
            return [self._probe(function, track, timing, now_ns)]
        if track.phase is Phase.PROBING:
            quiet = now_ns - max(track.last_order_ns, track.probe_since_ns) >= (
                timing.release_after_seconds * 1e9)
            return ([self._release(function, track, timing, now_ns)] if quiet
                    else self._renew(function, track, timing, now_ns))
        quiet = now_ns - track.last_order_ns >= timing.release_after_seconds * 1e9
        if held and quiet:
            return [self._release(function, track, timing, now_ns)]
        return self._renew(function, track, timing, now_ns)

    def _enforce(self, function: str, track: _Track, order: Order, timing: Timing,
                 now_ns: int) -> list[Verdict]:
        current = track.order
        if track.phase is Phase.PROBING:  # the probe's calls confirm it: isolate again
            base = int(timing.hold_seconds * 1e9)
            track.hold_ns = min(2 * max(track.hold_ns, base), MAX_HOLD_FACTOR * base)
            track.since_ns = now_ns
            track.phase = Phase.ISOLATED if order.action is Action.ISOLATE else Phase.THROTTLED
            track.order = order
            return [self._issue(function, track, timing, now_ns)]
        if track.phase is Phase.ISOLATED and order.probe and current is not None \
                and current.probe and now_ns - track.since_ns >= track.hold_ns:
            return [self._probe(function, track, timing, now_ns)]
        if track.phase is Phase.ISOLATED or (
                track.phase is Phase.THROTTLED and order.action is Action.THROTTLE
                and current is not None and current.rate_rps is not None
                and (order.rate_rps is None or order.rate_rps > TIGHTEN * current.rate_rps)):
            return self._renew(function, track, timing, now_ns)  # never loosen mid-episode
        if track.phase is Phase.NORMAL:
            base = int(timing.hold_seconds * 1e9)
            again = now_ns < track.cooldown_until_ns
            track.hold_ns = min(2 * track.hold_ns, MAX_HOLD_FACTOR * base) if again else base
            track.hold_ns = max(track.hold_ns, base)
            track.since_ns = now_ns
        track.phase = Phase.ISOLATED if order.action is Action.ISOLATE else Phase.THROTTLED
        track.order = order
        return [self._issue(function, track, timing, now_ns)]

    def _probe(self, function: str, track: _Track, timing: Timing, now_ns: int) -> Verdict:
        """Throttle an isolated function to ``probe_rps``: a few calls run and are judged."""
        assert track.order is not None
        track.phase, track.probe_since_ns = Phase.PROBING, now_ns
        track.order = Order(Action.THROTTLE, f"probing after isolation ({track.order.reason})",
                            policy=track.order.policy, rate_rps=timing.probe_rps,
                            anomaly_id=track.order.anomaly_id, probe=True)
        return self._issue(function, track, timing, now_ns)

    def _renew(self, function: str, track: _Track, timing: Timing,
               now_ns: int) -> list[Verdict]:
        if track.order is None or now_ns < track.renew_at_ns:
            return []
        return [self._issue(function, track, timing, now_ns)]

    def _issue(self, function: str, track: _Track, timing: Timing, now_ns: int) -> Verdict:
        order = track.order
        assert order is not None
        ttl_ns = int(timing.verdict_ttl_seconds * 1e9)
        track.renew_at_ns = now_ns + ttl_ns // 2
        rate = order.rate_rps if order.action is Action.THROTTLE else None
        return self.issuer.issue(function, order.action, order.reason, now_ns, rate_rps=rate,
                                 anomaly_id=order.anomaly_id, ttl_ns=ttl_ns,
                                 egress_allow=order.egress_allow)

    def _release(self, function: str, track: _Track, timing: Timing, now_ns: int,
                 why: str = "") -> Verdict:
        was, order = track.phase, track.order
        held_s = (now_ns - track.since_ns) / 1e9
        track.phase, track.order = Phase.NORMAL, None
        track.cooldown_until_ns = now_ns + int(timing.cooldown_seconds * 1e9)
        policy = order.policy if order and order.policy else "no policy"
        why = why or f"normal for {timing.release_after_seconds:g}s ({policy} no longer triggers)"
        return self.issuer.issue(
            function, Action.RELEASE, f"released after {was.value} for {held_s:.0f}s: {why}",
            now_ns, anomaly_id=order.anomaly_id if order else "",
            ttl_ns=int(timing.verdict_ttl_seconds * 1e9))
