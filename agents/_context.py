"""The state of the invocation running in this context (thread or task)."""

from __future__ import annotations

from contextvars import ContextVar


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

    Outside a governed invocation this does nothing.

    >>> record_cost(1000, 0.000002, kind="llm_tokens")  # no-op outside @govern
    """
    invocation = current.get()
    if invocation is not None and units > 0 and unit_price > 0:
        custom = invocation.custom
        custom[kind] = custom.get(kind, 0.0) + units * unit_price
