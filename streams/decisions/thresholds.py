"""Live thresholds: the registry of keys, their validation, and scope resolution.

Operators set thresholds per *scope* — a function name, ``team:NAME`` or ``*`` —
through the compacted control topic (:mod:`streams.control.commands`). Each record is a
:class:`~schemas.ControlUpdate` of kind ``thresholds`` whose ``function`` is the
scope and whose ``values`` are the scope's complete key → value map (an empty map
clears the scope). :class:`Thresholds` folds those records and answers what is in
force for one function: function scope > team scope > ``*`` > defaults (from
:class:`~streams.settings.Settings`, or the registry's own default; ``None`` means
unset, i.e. no limit). This module is pure: no I/O.

>>> from schemas import ControlKind, ControlUpdate
>>> t = Thresholds(Settings())
>>> _ = t.apply(ControlUpdate(function="*", kind=ControlKind.THRESHOLDS,
...                           values={"zscore_threshold": 8.0}))
>>> _ = t.apply(ControlUpdate(function="team:payments", kind=ControlKind.THRESHOLDS,
...                           values={"zscore_threshold": 4.0, "budget_usd_per_hour": 2.5}))
>>> t.effective("checkout", "payments")["zscore_threshold"]
4.0
>>> t.effective("search", "web")["zscore_threshold"], t.effective("search", "web")["min_ratio"]
(8.0, 2.0)
>>> parse_assignments(["budget_usd_per_hour=12.5", "egress_allow="])
{'budget_usd_per_hour': 12.5, 'egress_allow': None}
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from schemas import ControlKind, ControlUpdate
from streams.errors import ThresholdError
from streams.settings import Settings

Value = float | int | str
"""A threshold value: numbers as their registry type, lists as comma-separated text."""

ALL = "*"
"""The scope every function falls back to."""
TEAM_PREFIX = "team:"
"""Prefix of a team scope, ``team:NAME``."""
DEFAULT_SOURCE = "default"
"""The source :meth:`Thresholds.resolve` names for a value no scope sets."""

_MAX_SCOPE = 256  # ControlUpdate.function's limit
_MAX_TEXT = 2048
_HOST = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
                   r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[A-Za-z0-9_.:/*@-]{1,256}$")


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """One threshold key: its type, valid range, default and meaning."""

    key: str
    type: type  # float, int or str
    group: str
    doc: str
    default: Value | None = None
    setting: str | None = None  # Settings field whose value is the default, if any
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    items: Callable[[str], str | None] | None = None  # comma-separated list: item check
    items_doc: str = ""  # what an item is, for messages

    def default_for(self, settings: Settings) -> Value | None:
        """The value in force when no scope sets this key (``None``: no limit)."""
        if self.setting is not None and hasattr(settings, self.setting):
            value: Value | None = getattr(settings, self.setting)
            return value
        return self.default

    def expects(self) -> str:
        """What a valid value looks like, for error messages."""
        if self.items is not None:
            return f"a comma-separated list of {self.items_doc}"
        if self.type is str:
            return f"text of at most {_MAX_TEXT} characters"
        bounds = []
        if self.gt is not None:
            bounds.append(f"> {self.gt:g}")
        if self.ge is not None:
            bounds.append(f">= {self.ge:g}")
        if self.le is not None:
            bounds.append(f"<= {self.le:g}")
        kind = "an integer" if self.type is int else "a number"
        return f"{kind} {' and '.join(bounds)}".strip()

    def validate(self, value: object) -> Value:
        """``value`` (text from the CLI, or a decoded JSON value) as this key's type.

        Raises :class:`ThresholdError` naming the key and what it expects.
        """
        problem = f"{self.key}={value!r}: expected {self.expects()}"
        if isinstance(value, bool):
            raise ThresholdError(problem)
        if self.type is str:
            if not isinstance(value, str):
                raise ThresholdError(problem)
            return self._text(value, problem)
        number: float | int
        if isinstance(value, str):
            try:
                number = int(value.strip()) if self.type is int else float(value.strip())
            except ValueError:
                raise ThresholdError(problem) from None
        elif isinstance(value, int | float):
            number = value
        else:
            raise ThresholdError(problem)
        if self.type is int:
            if isinstance(number, float):
                if not number.is_integer():
                    raise ThresholdError(problem)
                number = int(number)
        else:
            number = float(number)
            if not math.isfinite(number):
                raise ThresholdError(problem)
        if ((self.gt is not None and not number > self.gt)
                or (self.ge is not None and not number >= self.ge)
                or (self.le is not None and not number <= self.le)):
            raise ThresholdError(problem)
        return number

    def _text(self, value: str, problem: str) -> str:
        if self.items is None:
            text = value.strip()
            if not text or len(text) > _MAX_TEXT or any(c.isspace() for c in text):
                raise ThresholdError(problem)
            return text
        items = [item.strip() for item in value.split(",")]
        if not all(items):
            raise ThresholdError(f"{problem} (an item is empty)")
        normalised = []
        for item in items:
            checked = self.items(item)
            if checked is None:
                raise ThresholdError(f"{problem} ({item!r} is not one)")
            if checked not in normalised:
                normalised.append(checked)
        text = ",".join(normalised)
        if len(text) > _MAX_TEXT:
            raise ThresholdError(f"{problem} (longer than {_MAX_TEXT} characters)")
        return text


def _destination(item: str) -> str | None:
    """``item`` normalised if it is a host name, ``*.domain``, IP address or CIDR."""
    try:
        if "/" in item:
            return str(ipaddress.ip_network(item, strict=False))
        return str(ipaddress.ip_address(item))
    except ValueError:
        pass
    host = item.lower().rstrip(".")
    return host if len(host) <= 253 and _HOST.match(host) else None


def _dataset(item: str) -> str | None:
    """``item`` if it is a dataset name."""
    return item if _NAME.match(item) else None


def _spec(key: str, kind: type, group: str, doc: str, **kw: Any) -> ThresholdSpec:
    return ThresholdSpec(key, kind, group, doc, **kw)


_SPECS = (
    # detection
    _spec("zscore_threshold", float, "detection", "robust z-score that makes a window anomalous",
          setting="zscore_threshold", default=6.0, gt=0),
    _spec("min_ratio", float, "detection", "…and cost rate at least this × the baseline",
          setting="min_ratio", default=2.0, ge=1),
    _spec("enforce_ratio", float, "detection",
          "a cost surge this × the baseline or more is enforced; smaller ones are reported",
          setting="enforce_ratio", default=3.0, ge=1),
    _spec("fast_path_factor", float, "detection",
          "one invocation costing this × the baseline per invocation is reported at once",
          setting="fast_path_factor", default=20.0, gt=0),
    # lifecycle
    _spec("hold_seconds", float, "lifecycle", "minimum time a throttle/isolate stays",
          setting="hold_seconds", default=30.0, ge=0),
    _spec("release_after_seconds", float, "lifecycle",
          "a verdict is released once the function has looked normal this long",
          setting="release_after_seconds", default=30.0, ge=0),
    _spec("cooldown_seconds", float, "lifecycle",
          "a function flagged again this soon after a release holds twice as long",
          setting="cooldown_seconds", default=120.0, ge=0),
    _spec("verdict_ttl_seconds", float, "lifecycle", "lifetime of every verdict",
          setting="verdict_ttl_seconds", default=300.0, gt=0),
    _spec("min_rps", float, "lifecycle", "a throttle below this rate isolates instead",
          setting="min_rps", default=0.2, ge=0),
    # budgets
    _spec("budget_usd_per_hour", float, "budgets", "spend per hour above which to act", gt=0),
    _spec("budget_usd_per_day", float, "budgets", "spend per day above which to act", gt=0),
    _spec("hard_cap_usd_per_day", float, "budgets", "spend per day at which to isolate", gt=0),
    _spec("team_budget_usd_per_hour", float, "budgets", "the team's spend per hour", gt=0),
    _spec("team_budget_usd_per_day", float, "budgets", "the team's spend per day", gt=0),
    _spec("monthly_cap_usd", float, "budgets",
          "month forecast over which the cost guard throttles an anomaly (else warns)", gt=0),
    # cost guard
    _spec("anomaly_score_cap", float, "cost guard",
          "anomaly score (0..1) above which the cost guard acts", default=0.5, ge=0, le=1),
    # guardrails
    _spec("max_memory_mb", int, "guardrails", "largest memory size a function may run with",
          ge=1),
    _spec("max_timeout_s", float, "guardrails", "longest timeout a function may have", gt=0),
    _spec("max_concurrency", int, "guardrails", "most concurrent executions allowed", ge=1),
    _spec("egress_allow", str, "guardrails",
          "destinations a function may reach: hosts, '*.domain', IPs, CIDRs",
          items=_destination, items_doc="host names, '*.domain', IP addresses or CIDRs"),
    _spec("datasets_allowed", str, "guardrails", "datasets a function may read",
          items=_dataset, items_doc="dataset names (letters, digits, _ . : / * @ -)"),
    _spec("fairness_disparity_max", float, "guardrails",
          "largest outcome disparity between groups (0..1)", default=0.2, ge=0, le=1),
    # pages
    _spec("page_rate_per_hour", int, "pages",
          "pages a team gets per hour before the rest fold into one summary page",
          setting="pages_per_hour", default=6, ge=1),
    _spec("runbook_url", str, "pages", "runbook link put on pages", setting="runbook_url"),
)

REGISTRY: Mapping[str, ThresholdSpec] = {spec.key: spec for spec in _SPECS}
"""Every threshold key, in display order."""


def spec_for(key: str) -> ThresholdSpec:
    """The spec of ``key``; :class:`ThresholdError` listing the valid keys if unknown."""
    spec = REGISTRY.get(key)
    if spec is None:
        raise ThresholdError(f"unknown threshold key {key!r}; valid keys: "
                             f"{', '.join(REGISTRY)}")
    return spec


def validate_scope(scope: str) -> str:
    """``scope`` if it is a function name, ``team:NAME`` or ``*``; else ThresholdError."""
    if not scope or len(scope) > _MAX_SCOPE or scope != scope.strip():
        raise ThresholdError(f"scope {scope!r}: expected a function name, team:NAME or '*' "
                             f"(1 to {_MAX_SCOPE} characters, no surrounding spaces)")
    if scope.startswith(TEAM_PREFIX) and not scope[len(TEAM_PREFIX):].strip():
        raise ThresholdError(f"scope {scope!r}: a team scope needs a name, e.g. team:payments")
    return scope


def team_scope(team: str) -> str:
    """The scope of ``team``: ``team:NAME``."""
    return TEAM_PREFIX + team


def parse_assignments(assignments: Iterable[str]) -> dict[str, Value | None]:
    """``["key=value", ...]`` as validated values; ``key=`` (empty) means unset (``None``).

    Raises :class:`ThresholdError` for a missing ``=``, a key given twice, an unknown
    key (listing the valid ones) or a bad value (saying what the key expects).
    """
    parsed: dict[str, Value | None] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ThresholdError(f"{assignment!r}: expected key=value (key= unsets the key)")
        spec = spec_for(key)
        if key in parsed:
            raise ThresholdError(f"{key} is given twice")
        parsed[key] = spec.validate(raw) if raw.strip() else None
    return parsed


def validate_values(values: Mapping[str, object]) -> dict[str, Value]:
    """A scope's values checked and converted; raises :class:`ThresholdError`."""
    return {key: spec_for(key).validate(value) for key, value in values.items()}


def split_list(value: Value | None) -> list[str] | None:
    """A list-valued threshold (``egress_allow``, ``datasets_allowed``) as a list;
    ``None`` (unset: no restriction) stays ``None``."""
    if value is None:
        return None
    return [item for item in str(value).split(",") if item]


class Resolved(NamedTuple):
    """A value in force and where it came from: a scope, or ``default``."""

    value: Value | None
    source: str


class Thresholds:
    """The thresholds in force, folded from control updates (latest per scope wins)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self._scopes: dict[str, dict[str, Value]] = {}
        self._updates: dict[str, ControlUpdate] = {}

    def apply(self, update: ControlUpdate) -> list[str]:
        """Replace the scope ``update.function`` with ``update.values``; an empty map
        clears it. Updates of another kind (policy bundles) are ignored.

        All or nothing: an update with an unknown key or an invalid value changes
        nothing (the scope keeps its last valid values) and is returned as problem
        lines, one per bad key (log them and count the record as rejected). A worker
        never stops on a control record, and a bad one never lifts a budget.
        """
        if update.kind is not ControlKind.THRESHOLDS:
            return []
        scope = update.function
        try:
            validate_scope(scope)
        except ThresholdError as exc:
            return [f"control update {update.event_id} rejected: {exc}"]
        values: dict[str, Value] = {}
        problems: list[str] = []
        for key, value in update.values.items():
            try:
                values[key] = spec_for(key).validate(value)
            except ThresholdError as exc:
                problems.append(f"control update {update.event_id} for scope {scope} "
                                f"rejected whole, nothing changed: {exc}")
        if problems:
            return problems
        if values:
            self._scopes[scope] = values
            self._updates[scope] = update
        else:
            self._scopes.pop(scope, None)
            self._updates.pop(scope, None)
        return []

    def scopes(self) -> dict[str, dict[str, Value]]:
        """Every scope with values: ``*`` first, then teams, then functions."""
        order = sorted(self._scopes, key=lambda s: (s != ALL, not s.startswith(TEAM_PREFIX), s))
        return {scope: dict(self._scopes[scope]) for scope in order}

    def values(self, scope: str) -> dict[str, Value]:
        """The values set on ``scope`` itself (empty if none)."""
        return dict(self._scopes.get(scope, {}))

    def last_update(self, scope: str) -> ControlUpdate | None:
        """The control update that set ``scope`` (actor, reason, time)."""
        return self._updates.get(scope)

    def resolve(self, function: str, team: str = "") -> dict[str, Resolved]:
        """Every key's value in force for ``function`` of ``team`` and its source:
        function scope > ``team:NAME`` > ``*`` > default."""
        chain = [function] + ([team_scope(team)] if team else []) + [ALL]
        found = [(scope, self._scopes.get(scope)) for scope in chain]  # safe against a
        layers = [(scope, values) for scope, values in found if values]  # concurrent apply
        resolved = {}
        for key, spec in REGISTRY.items():
            for scope, values in layers:
                if key in values:
                    resolved[key] = Resolved(values[key], scope)
                    break
            else:
                resolved[key] = Resolved(spec.default_for(self.settings), DEFAULT_SOURCE)
        return resolved

    def effective(self, function: str, team: str = "") -> dict[str, Value | None]:
        """Every key's value in force for ``function`` of ``team`` (``None``: no limit)."""
        return {key: r.value for key, r in self.resolve(function, team).items()}
