"""What ``governor up`` shows while it runs: each verdict and page as it happens, and a
quiet status line — redrawn in place on a terminal; otherwise a plain line when the
readiness changes, and at most once a minute when something else did."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from schemas import Action, Event, Incident, Verdict
from streams.decisions.lifecycle import Phase
from streams.paging.incidents import is_paged
from streams.paging.transports import one_line
from streams.pipeline.routes import Routes

PLAIN_EVERY_S = 60.0
"""How often, at most, a status line is printed when the output is not a terminal."""


@dataclass(frozen=True, slots=True)
class Status:
    """The worker at a glance."""

    not_ready: str | None  # why not, or None when consuming and writing
    events: int  # valid telemetry taken since start
    dead: int  # dead letters since start
    throttled: int
    isolated: int
    incidents: int  # open
    lag: int  # records behind, all partitions

    @classmethod
    def of(cls, routes: Routes) -> Status:
        c = routes.counters
        lifecycle = routes.step.lifecycle
        phases = Counter(lifecycle.phase(f) for f in lifecycle.functions())
        return cls(routes.readiness(), c["in_cost"] + c["in_span"],
                   sum(v for k, v in c.items() if k.startswith("dlq_")),
                   phases[Phase.THROTTLED] + phases[Phase.PROBING], phases[Phase.ISOLATED],
                   len(routes.step.tracker.open_functions()), sum(routes.lag().values()))

    def line(self, rate: float) -> str:
        state = "ready" if self.not_ready is None else f"not ready: {self.not_ready}"
        parts = [state, f"{self.events:,} events ({rate:,.0f}/s)",
                 f"{self.throttled} throttled, {self.isolated} isolated",
                 f"{self.incidents} open incident{'s' * (self.incidents != 1)}",
                 f"lag {self.lag:,}"]
        if self.dead:
            parts.append(f"{self.dead:,} dead letters")
        return " · ".join(parts)


def verdict_line(verdict: Verdict) -> str:
    """A verdict as one human line."""
    rate = (f" to {verdict.rate_rps:g} rps" if verdict.action is Action.THROTTLE
            and verdict.rate_rps is not None else "")
    reason = verdict.reason.split(";")[0][:160]
    by = f" by {verdict.issuer}" if verdict.issuer.startswith("operator:") else ""
    return (f"VERDICT {verdict.action.value.upper()} {verdict.function}{rate}{by}"
            + (f" | {reason}" if reason else ""))


class UpConsole:
    """Prints verdicts and pages as they happen (:meth:`on_event`) and the status line
    (:meth:`tick`, once a second); ``tty`` (default: whether ``out`` is a terminal)
    redraws the line in place. An output that cannot be written (a closed pipe) ends
    the printing, never the worker."""

    def __init__(self, status: Callable[[], Status], out: TextIO | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._status = status
        self._out = out or sys.stdout
        self._tty = self._out.isatty() if tty is None else tty
        self._clock = clock
        self._line = ""  # the status line on screen (tty only)
        self._shown: Status | None = None  # the status last printed (not a tty)
        self._last: tuple[float, int] | None = None  # (when, events) of the last tick
        self._printed_at = -PLAIN_EVERY_S
        self._closed = False  # the output failed: print nothing more

    def on_event(self, event: Event) -> None:
        """Print a verdict, or an incident event that is paged."""
        if isinstance(event, Verdict):
            text = verdict_line(event)
        elif isinstance(event, Incident) and is_paged(event):
            text = one_line(event)
        else:
            return
        self._write(f"{datetime.now(UTC).strftime('%H:%M:%SZ')} {text}")

    def tick(self) -> None:
        now = self._clock()
        status = self._status()
        rate = 0.0
        if self._last is not None and now > self._last[0]:
            rate = max(0, status.events - self._last[1]) / (now - self._last[0])
        self._last = (now, status.events)
        if self._tty:
            line = status.line(rate)
            if line != self._line:
                self._line = line
                self._emit(f"\r\x1b[K{line}")
        elif status != self._shown and (now - self._printed_at >= PLAIN_EVERY_S
                                        or self._shown is None
                                        or status.not_ready != self._shown.not_ready):
            self._printed_at, self._shown = now, status
            self._write(status.line(rate))

    def close(self) -> None:
        """End the status line on a terminal (the shell's prompt goes below it)."""
        if self._tty and self._line:
            self._emit("\n")
            self._line = ""

    def _write(self, text: str) -> None:
        """A line of its own; on a terminal, above the status line (redrawn below it)."""
        self._emit(f"\r\x1b[K{text}\n{self._line}" if self._tty else text + "\n")

    def _emit(self, text: str) -> None:
        if self._closed:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):  # a closed pipe or file: the worker goes on
            self._closed = True
