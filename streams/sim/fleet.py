"""Simulated serverless functions driven through the real agent.

Each function is an ``async`` handler wrapped by ``@govern``; a Poisson traffic
generator calls it at its rate. Incidents change a function's behaviour while
they are active: a runaway loop multiplies its call rate, a cost jump multiplies
the tokens each call bills.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents import FunctionBlocked, FunctionIsolated, govern, record_cost
from streams.sim.units import TOKEN_PRICE_USD


@dataclass
class FunctionSpec:
    name: str
    team: str
    memory_mb: int
    rps: float
    duration_ms: float
    error_rate: float = 0.0
    tokens: int = 0


@dataclass
class Fault:
    """A behaviour change of one function between ``start_s`` and ``end_s`` (demo time)."""

    kind: str
    function: str
    start_s: float
    end_s: float
    rate_factor: float = 1.0
    tokens_factor: float = 1.0
    started_at: float | None = None  # wall clock, set when it starts
    enforced_at: float | None = None  # wall clock of the first refused call

    @property
    def seconds_to_enforce(self) -> float | None:
        if self.started_at is None or self.enforced_at is None:
            return None
        return self.enforced_at - self.started_at


FLEET = [
    FunctionSpec("checkout", "payments", 512, rps=8, duration_ms=30),
    FunctionSpec("thumbnail", "media", 1024, rps=4, duration_ms=120),
    FunctionSpec("search-api", "discovery", 256, rps=15, duration_ms=15),
    FunctionSpec("invoice-pdf", "payments", 2048, rps=1.5, duration_ms=300),
    FunctionSpec("llm-summarise", "ml", 512, rps=3, duration_ms=50, tokens=500),
    FunctionSpec("webhook-relay", "platform", 128, rps=10, duration_ms=10, error_rate=0.05),
]


@dataclass
class FunctionStats:
    calls: int = 0
    blocked: int = 0
    errors: int = 0
    recent: list[float] = field(default_factory=list)  # call times in the last seconds

    def rate(self, now: float, horizon: float = 3.0) -> float:
        self.recent = [t for t in self.recent if now - t < horizon]
        return len(self.recent) / horizon


class Fleet:
    """Runs the functions of ``FLEET`` with the given incidents on one event loop."""

    def __init__(self, specs: list[FunctionSpec], incidents: list[Fault],
                 seed: int = 7) -> None:
        self.specs = specs
        self.incidents = incidents
        self.stats: dict[str, FunctionStats] = {s.name: FunctionStats() for s in specs}
        self.blocks: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._handlers = {s.name: self._handler(s) for s in specs}
        self._tasks: set[asyncio.Task[None]] = set()
        self.t0 = time.time()
        self._stopped = False

    def stop(self) -> None:
        """End the traffic early (in-flight calls finish)."""
        self._stopped = True

    def active(self, function: str, now_s: float) -> list[Fault]:
        return [i for i in self.incidents
                if i.function == function and i.start_s <= now_s < i.end_s]

    def _handler(self, spec: FunctionSpec) -> Callable[[dict[str, Any], Any], Awaitable[Any]]:
        rnd = self._random

        @govern(function=spec.name, team=spec.team, memory_mb=spec.memory_mb, version="v1")
        async def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            await asyncio.sleep(rnd.lognormvariate(0, 0.25) * spec.duration_ms / 1000)
            if spec.tokens:
                record_cost(spec.tokens * event["tokens_factor"], TOKEN_PRICE_USD, "llm_tokens")
            if rnd.random() < spec.error_rate:
                raise RuntimeError("downstream returned 502")
            return {"statusCode": 200}

        return handler

    async def run(self, duration_s: float) -> None:
        """Drive every function until ``duration_s`` after start."""
        await asyncio.gather(*(self._drive(s, duration_s) for s in self.specs))
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _drive(self, spec: FunctionSpec, duration_s: float) -> None:
        handler = self._handlers[spec.name]
        while (now_s := time.time() - self.t0) < duration_s and not self._stopped:
            rate_factor = tokens_factor = 1.0
            for incident in self.active(spec.name, now_s):
                if incident.started_at is None:
                    incident.started_at = time.time()
                rate_factor *= incident.rate_factor
                tokens_factor *= incident.tokens_factor
            task = asyncio.create_task(self._call(spec.name, handler, tokens_factor))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(self._random.expovariate(spec.rps * rate_factor))

    async def _call(self, name: str, handler: Callable[..., Awaitable[Any]],
                    tokens_factor: float) -> None:
        stats = self.stats[name]
        stats.calls += 1
        stats.recent.append(time.time())
        try:
            await handler({"tokens_factor": tokens_factor}, None)
        except FunctionBlocked as exc:
            stats.blocked += 1
            self.blocks["isolated" if isinstance(exc, FunctionIsolated) else "throttled"] += 1
            now = time.time()
            for incident in self.incidents:
                if (incident.function == name and incident.started_at is not None
                        and incident.enforced_at is None and now >= incident.started_at):
                    incident.enforced_at = now
        except RuntimeError:
            stats.errors += 1
