"""The state of the invocation running in this context (thread or task)."""

from __future__ import annotations

import math
from contextvars import ContextVar

from schemas.events import MAX_USD


class Invocation:
    """What the agent accumulates while one invocation runs."""

    __slots__ = ("allow", "count_egress", "custom", "egress_bytes", "function", "hosts")

    def __init__(self, function: str, count_egress: bool, allow: object | None) -> None:
        self.function = function
        self.count_egress = count_egress
        self.allow = allow  # an EgressPolicy while a verdict restricts egress
        self.custom: dict[str, float] = {}
        self.egress_bytes = 0
        self.hosts: set[str] | None = None  # external destinations, with egress counted


current: ContextVar[Invocation | None] = ContextVar("governor_invocation", default=None)


def record_cost(units: float, unit_price: float, kind: str = "custom") -> None:
    """Add ``units × unit_price`` USD of ``kind`` to the current invocation's cost.

    Outside a governed invocation this does nothing; so does an amount that is not a
    finite number. A kind's amount saturates at the contract's most one invocation may
    cost (:data:`schemas.events.MAX_USD`), so the event stays valid and the spend shows.

    >>> record_cost(1000, 0.000002, kind="llm_tokens")  # no-op outside @govern
    """
    invocation = current.get()
    if invocation is not None and units > 0 and unit_price > 0:
        amount = units * unit_price
        if math.isfinite(amount):
            custom = invocation.custom
            custom[kind] = min(custom.get(kind, 0.0) + amount, MAX_USD)
