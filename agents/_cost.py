"""Per-invocation cost from the price catalogue (``agents/prices.toml``).

cost = billed duration × billed memory × GB-second price
     (+ billed duration × CPU GHz × GHz-second price, where CPU is billed apart)
     + request price + egress bytes × egress price
     + custom units the function records with :func:`agents.record_cost`.

>>> bill = load_prices()["aws"].invocation(duration_ms=100.2, memory_mb=1024)
>>> bill.billed_duration_ms, f"{bill.compute_usd:.4e}"
(101.0, '1.6833e-06')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agents._errors import ConfigurationError

CATALOGUE = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True, slots=True)
class Breakdown:
    billed_duration_ms: float
    compute_usd: float
    request_usd: float
    egress_usd: float


@dataclass(frozen=True, slots=True)
class Price:
    """One provider's on-demand prices and billing-granularity rules."""

    gb_second_usd: float
    request_usd: float
    egress_gb_usd: float = 0.0
    granularity_ms: float = 1.0
    min_duration_ms: float = 0.0
    ghz_second_usd: float = 0.0
    ghz_by_memory_mb: dict[int, float] = field(default_factory=dict)
    memory_step_mb: int = 0
    min_memory_mb: int = 0
    source: str = ""
    checked: str = ""

    def billed_memory_mb(self, memory_mb: int) -> int:
        step = self.memory_step_mb
        billed = math.ceil(memory_mb / step) * step if step else memory_mb
        return max(billed, self.min_memory_mb)

    def ghz(self, memory_mb: int) -> float:
        """CPU clock billed with ``memory_mb`` (0 where CPU is not billed apart)."""
        for size in sorted(self.ghz_by_memory_mb):
            if memory_mb <= size:
                return self.ghz_by_memory_mb[size]
        return max(self.ghz_by_memory_mb.values(), default=0.0)

    def invocation(self, *, duration_ms: float, memory_mb: int,
                   egress_bytes: int = 0) -> Breakdown:
        """Cost of one invocation, duration rounded up to the billing granularity."""
        step = self.granularity_ms
        billed_ms = max(math.ceil(duration_ms / step) * step, self.min_duration_ms, step)
        seconds = billed_ms / 1000.0
        compute = seconds * self.billed_memory_mb(memory_mb) / 1024.0 * self.gb_second_usd
        if self.ghz_second_usd:
            compute += seconds * self.ghz(memory_mb) * self.ghz_second_usd
        egress = egress_bytes / 1e9 * self.egress_gb_usd
        return Breakdown(float(billed_ms), compute, self.request_usd, egress)


def load_prices(override: Path | None = None) -> dict[str, Price]:
    """The catalogue, with entries of ``override`` (a TOML file) replacing fields."""
    entries = _read(CATALOGUE)
    if override is not None:
        for name, values in _read(override).items():
            entries[name] = {**entries.get(name, {}), **values}
    allowed = {f.name for f in fields(Price)}
    prices = {}
    for name, values in entries.items():
        unknown = set(values) - allowed
        if unknown:
            raise ConfigurationError(f"price entry [{name}] has unknown fields "
                                     f"{sorted(unknown)}; known: {sorted(allowed)}")
        values = dict(values)
        values["ghz_by_memory_mb"] = {int(k): float(v)
                                      for k, v in values.get("ghz_by_memory_mb", {}).items()}
        try:
            prices[name] = Price(**values)
        except TypeError as exc:
            raise ConfigurationError(f"price entry [{name}]: {exc}") from None
    return prices


def _read(path: Path) -> dict[str, dict[str, Any]]:
    import tomllib  # on the first governed call, not at import

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise ConfigurationError(f"cannot read price catalogue {path}: {exc}") from None
