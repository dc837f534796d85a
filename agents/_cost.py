"""Per-invocation cost: billed duration × memory × GB-second price + request price
+ egress + custom units the function records with :func:`agents.record_cost`.

>>> bill = PRICES["aws"].invocation(duration_ms=100.2, memory_mb=1024)
>>> bill.billed_duration_ms, f"{bill.compute_usd:.4e}"
(101.0, '1.6833e-06')
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Price:
    """One provider's on-demand price list, with where it came from."""

    gb_second_usd: float
    request_usd: float
    egress_gb_usd: float
    billing_granularity_ms: float
    source: str

    def invocation(
        self, *, duration_ms: float, memory_mb: int, egress_bytes: int = 0
    ) -> Breakdown:
        """Cost of one invocation, billed duration rounded up to the granularity."""
        step = self.billing_granularity_ms
        billed_ms = math.ceil(duration_ms / step) * step if duration_ms > 0 else step
        compute = billed_ms / 1000.0 * memory_mb / 1024.0 * self.gb_second_usd
        egress = egress_bytes / 1e9 * self.egress_gb_usd
        return Breakdown(billed_ms, compute, self.request_usd, egress)


@dataclass(frozen=True, slots=True)
class Breakdown:
    billed_duration_ms: float
    compute_usd: float
    request_usd: float
    egress_usd: float


PRICES: dict[str, Price] = {
    "aws": Price(
        gb_second_usd=0.0000166667,
        request_usd=0.20 / 1_000_000,
        egress_gb_usd=0.09,
        billing_granularity_ms=1.0,
        source="AWS Lambda pricing, us-east-1, x86_64, first tier (checked 2026-11)",
    ),
    "aws-arm64": Price(
        gb_second_usd=0.0000133334,
        request_usd=0.20 / 1_000_000,
        egress_gb_usd=0.09,
        billing_granularity_ms=1.0,
        source="AWS Lambda pricing, us-east-1, arm64, first tier (checked 2026-11)",
    ),
}

_custom: ContextVar[dict[str, float] | None] = ContextVar("governor_custom_cost", default=None)


def record_cost(units: float, unit_price: float, kind: str = "custom") -> None:
    """Add ``units × unit_price`` USD of ``kind`` to the current invocation's cost.

    Outside a governed invocation this does nothing.
    """
    bucket = _custom.get()
    if bucket is not None and units > 0 and unit_price > 0:
        bucket[kind] = bucket.get(kind, 0.0) + units * unit_price
