"""Writing a batch to the sink so that no record stops a worker and an outage loses
nothing: :class:`Storer`, shared by the batched ingest and the worker's other sinks.

A failed write is judged by a probe. If the data is at fault (the sink answers and its
error is not an outage's), the batch is split in halves until the events the sink
refuses are alone; those go to the dead-letter topic with the sink's reason and the
rest is stored. Otherwise (the sink is down, a table is detached or read-only, too
many parts …) the write is retried with back-off for as long as it takes: the caller
waits, so nothing further is consumed (back-pressure) and nothing is committed past
it. Without a probe, a write that fails ``retries`` times raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from schemas import DeadLetter, Event
from streams.pipeline.decoding import event_dead_letter

log = logging.getLogger("governor.ingest")

#: ``write(events, flagged)``: put a batch into the sink (the ids in ``flagged`` failed
#: authentication: stored flagged); raises if it could not.
Write = Callable[[Sequence[Event], frozenset[str]], Awaitable[None]]
#: ``send_dead(letter)``: start sending a dead letter; returns its delivery to await.
SendDead = Callable[[DeadLetter], Awaitable[Awaitable[Any]]]
#: ``probe(error)``: whether a failed write's data is at fault (not an outage).
Probe = Callable[[Exception], Awaitable[bool]]

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 5.0)


class Storer:
    """Stores batches through ``write``; see the module doc. Counters: ``sink_errors``
    (failed writes), ``sink_outage_retries``, ``sink_refused`` and ``dlq_<type>``;
    ``refused(event)`` (optional) is told of each event the sink refused."""

    def __init__(self, write: Write, send_dead: SendDead, counters: Counter[str],
                 probe: Probe | None = None, retries: int = 5,
                 stopping: Callable[[], bool] = lambda: False,
                 refused: Callable[[Event], None] | None = None) -> None:
        self._write = write
        self._send_dead = send_dead
        self._probe = probe
        self._retries = retries
        self._stopping = stopping
        self._refused = refused
        self.counters = counters
        self._down_since: float | None = None  # monotonic: when an outage began

    @property
    def down_s(self) -> float:
        """How long the sink has taken no write (0 unless an outage is being waited out)."""
        since = self._down_since
        return 0.0 if since is None else time.monotonic() - since

    async def store(self, events: Sequence[Event], deliveries: list[Awaitable[Any]],
                    flagged: frozenset[str] = frozenset()) -> None:
        """Write ``events``, isolating refused ones and waiting out an outage; the
        deliveries of dead letters sent are appended to ``deliveries``."""
        attempt = 0
        while True:
            try:
                await self._write(events, flagged)
                self._down_since = None
                return
            except Exception as exc:
                self.counters["sink_errors"] += 1
                if self._stopping():
                    raise
                if self._probe is not None and await self._probe(exc):
                    self._down_since = None
                    await self._isolate(events, exc, deliveries, flagged)
                    return
                if self._probe is None and attempt == self._retries:
                    raise
                if self._down_since is None:
                    self._down_since = time.monotonic()
                self.counters["sink_outage_retries"] += 1
                pause = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                if attempt == 1 or attempt % 12 == 0:
                    log.warning("the sink does not take writes (%r); %d events wait, "
                                "retrying every %.1f s; consumption paused", exc, len(events),
                                pause)
                await asyncio.sleep(pause)

    async def _isolate(self, events: Sequence[Event], error: Exception,
                       deliveries: list[Awaitable[Any]], flagged: frozenset[str]) -> None:
        """The sink refused ``events``' data: store all it takes, one dead letter for
        each event it refuses alone."""
        if len(events) == 1:
            [event] = events
            reason = (f"the sink refused this event: {error!r:.500}; fix the producer "
                      "(the rest of its batch was stored)")
            deliveries.append(await self._send_dead(event_dead_letter(event, reason)))
            self.counters[f"dlq_{event.type}"] += 1
            self.counters["sink_refused"] += 1
            if self._refused is not None:
                self._refused(event)
            log.warning("the sink refused one %s event of %s (%r); sent to the DLQ",
                        event.type, event.function, error)
            return
        half = len(events) // 2
        for part in (events[:half], events[half:]):
            try:
                await self._write(part, flagged)
            except Exception as exc:
                self.counters["sink_errors"] += 1
                if self._probe is not None and not await self._probe(exc):
                    await self.store(part, deliveries, flagged)  # an outage began: wait
                else:
                    await self._isolate(part, exc, deliveries, flagged)
