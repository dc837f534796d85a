"""The history a prediction learns from, read from ``cost_events`` in ClickHouse.

Per function: calls per hour over the last weeks, and per configuration (price key,
memory) the mean duration and the egress and custom cost per call. Across the
fleet: how duration scales with memory and with the arm64 architecture, learned
within functions whose configuration changed (a regression of log duration on log
memory and an arm64 indicator, each function its own intercept).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DAYS = 56
"""How far back a forecast looks (eight weeks)."""

_RECENT = """
WITH (SELECT max(time) FROM cost_events) AS end
SELECT {columns}
FROM cost_events
WHERE time > end - INTERVAL {{days:UInt32}} DAY AND time <= end AND NOT unauthenticated
GROUP BY {groups}
"""

_HOURLY = _RECENT.format(
    columns="function, intDiv(toUnixTimestamp(toStartOfHour(time)), 3600) AS hour, count()",
    groups="function, hour")

_CONFIGS = _RECENT.format(
    columns="function, provider, memory_mb, count(), avg(log(greatest(duration_ms, 0.001))), "
    "avg(duration_ms), avg(egress_usd), avg(cost_usd - compute_usd - request_usd - egress_usd), "
    "avg(cost_usd), argMax(team, time), intDiv(toUnixTimestamp(max(time)), 3600)",
    groups="function, provider, memory_mb")

Query = Callable[[str, Mapping[str, str]], Sequence[Sequence[Any]]]
"""Runs a read-only query with its parameters and returns its rows."""


@dataclass(frozen=True, slots=True)
class Config:
    """One configuration a function ran with, and what a call cost with it."""

    price_key: str
    memory_mb: int
    calls: int
    mean_log_duration: float
    duration_ms: float
    egress_usd: float
    custom_usd: float
    cost_usd: float
    last_hour: int

    @property
    def arm64(self) -> bool:
        return self.price_key.endswith("arm64")


@dataclass(frozen=True, slots=True)
class FunctionHistory:
    """One function's recent calls per hour and the configurations it ran with."""

    name: str
    team: str
    hourly: dict[int, int]
    """Calls per hour, keyed by hours since the Unix epoch."""
    configs: tuple[Config, ...]

    @property
    def current(self) -> Config:
        """The configuration of its latest call."""
        return max(self.configs, key=lambda c: c.last_hour)


@dataclass(frozen=True, slots=True)
class Scaling:
    """How duration scales across the fleet: ``duration ∝ memory^elasticity``, and
    × ``arm64_factor`` on arm64. ``None`` where the history shows no such change."""

    elasticity: float | None = None
    arm64_factor: float | None = None
    elasticity_spread: float = 0.3
    """How much single functions' elasticities differ from the fleet's (a standard
    deviation): the uncertainty of a memory change's effect on one function."""

    def factor(self, old: Config, memory_mb: int, arm64: bool) -> float:
        """Duration at ``memory_mb``/``arm64`` over the duration of ``old``."""
        f = 1.0
        known = memory_mb > 0 and old.memory_mb > 0  # 0: memory not reported
        if self.elasticity is not None and known and memory_mb != old.memory_mb:
            f *= (memory_mb / old.memory_mb) ** self.elasticity
        if self.arm64_factor is not None and arm64 != old.arm64:
            f *= self.arm64_factor if arm64 else 1 / self.arm64_factor
        return f

    def spread(self, old: Config, memory_mb: int) -> float:
        """Log-scale uncertainty of :meth:`factor` for one function."""
        if memory_mb <= 0 or old.memory_mb <= 0:
            return 0.0
        return self.elasticity_spread * abs(math.log(memory_mb / old.memory_mb))

    def words(self) -> str:
        parts = []
        if self.elasticity is not None:
            parts.append(f"duration ∝ memory^{self.elasticity:.2f}")
        if self.arm64_factor is not None:
            parts.append(f"arm64 duration ×{self.arm64_factor:.2f}")
        if not parts:
            return "duration assumed unchanged by memory (no configuration change in the history)"
        return " and ".join(parts) + " (learned across the fleet)"


@dataclass(frozen=True, slots=True)
class History:
    """Every function's history up to ``end_hour``, and the fleet's scaling."""

    end_hour: int
    functions: dict[str, FunctionHistory] = field(default_factory=dict)
    scaling: Scaling = field(default_factory=Scaling)

    @classmethod
    def empty(cls) -> History:
        return cls(end_hour=0)

    @classmethod
    def load(cls, query: Query, days: int = DAYS) -> History:
        """The last ``days`` of ``cost_events`` up to its latest row."""
        params = {"days": str(days)}
        return cls.build(query(_HOURLY, params), query(_CONFIGS, params))

    @classmethod
    def build(cls, hourly: Sequence[Sequence[Any]], configs: Sequence[Sequence[Any]]
              ) -> History:
        """From the rows of :data:`_HOURLY` and :data:`_CONFIGS`."""
        per_hour: dict[str, dict[int, int]] = defaultdict(dict)
        for name, hour, calls in hourly:
            per_hour[str(name)][int(hour)] = int(calls)
        per_config: dict[str, list[Config]] = defaultdict(list)
        teams: dict[str, tuple[int, str]] = {}
        for (name, key, memory, calls, log_d, d, egress, custom, cost, team, last) in configs:
            per_config[str(name)].append(Config(str(key), int(memory), int(calls), float(log_d),
                                                float(d), float(egress), max(float(custom), 0.0),
                                                float(cost), int(last)))
            if str(name) not in teams or int(last) > teams[str(name)][0]:
                teams[str(name)] = (int(last), str(team))
        functions = {name: FunctionHistory(name, teams[name][1], per_hour.get(name, {}),
                                           tuple(found)) for name, found in per_config.items()}
        end = max((c.last_hour for f in functions.values() for c in f.configs), default=0)
        return cls(end, functions, learn_scaling(functions.values()))


def learn_scaling(functions: Iterable[FunctionHistory]) -> Scaling:
    """The fleet's duration scaling, from functions seen with more than one config."""
    rows: list[tuple[float, float, float, float]] = []  # weight, d log mem, d arm, d log dur
    slopes = []  # each function's own elasticity, where its memory changed
    for f in functions:
        configs = [c for c in f.configs if c.memory_mb > 0]  # 0: memory not reported
        if len(configs) < 2:
            continue
        w = np.array([c.calls for c in configs], dtype=float)
        x = np.array([[math.log(c.memory_mb), float(c.arm64)] for c in configs])
        y = np.array([c.mean_log_duration for c in configs])
        x -= np.average(x, axis=0, weights=w)
        y -= np.average(y, weights=w)
        rows += [(wi, *xi, yi) for wi, xi, yi in zip(w, x, y, strict=True)]
        if np.ptp(x[:, 0]) > 1e-9 and np.ptp(x[:, 1]) < 1e-9:
            slopes.append(float(np.sum(w * x[:, 0] * y) / np.sum(w * x[:, 0] ** 2)))
    if not rows:
        return Scaling()
    data = np.array(rows)
    weights, x, y = np.sqrt(data[:, 0]), data[:, 1:3], data[:, 3]
    used = [j for j in range(2) if np.ptp(x[:, j]) > 1e-9]
    coef = np.linalg.lstsq(x[:, used] * weights[:, None], y * weights, rcond=None)[0]
    fitted = dict(zip(used, coef, strict=True))
    elasticity = float(np.clip(fitted[0], -1.0, 0.5)) if 0 in fitted else None
    arm = float(np.exp(np.clip(fitted[1], -1.0, 1.0))) if 1 in fitted else None
    spread = float(np.std(slopes, ddof=1)) if len(slopes) >= 3 else 0.3
    return Scaling(elasticity, arm, spread)
