"""``governor bench loop``: closed-loop latency on the local stack.

Runs a fleet of simulated functions through the real agent against a broker and
a worker process, injects one incident per function (runaway loops and cost per
call jumps, staggered), and measures for each incident

* *to enforce*: from the first invocation made under the incident to the first
  call the agent refused because of the verdict;
* *to page*: from the same first invocation to the page arriving at a real HTTP
  receiver speaking the Alertmanager v2 API (the worker's
  ``GOVERNOR_ALERTMANAGER_URL``); the page goes out with the verdict, so it usually
  arrives a little before the agent's first refusal (enforcement waits for the next
  call).

Uses the demo's pacing (2 s windows). The last line reads
``loop p95: <seconds>s to enforce``.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

import orjson

import agents
from streams.errors import BenchmarkError
from streams.keys import agent_key
from streams.ops.embedded import local_stack
from streams.settings import Settings
from streams.sim.demo import DEMO_DEFAULTS
from streams.sim.fleet import FLEET, Fault, Fleet, FunctionSpec

PACES = {
    "production": {"GOVERNOR_PAGES_PER_HOUR": "100000"},
    "demo": {**DEMO_DEFAULTS, "GOVERNOR_RELEASE_AFTER_SECONDS": "6",
             "GOVERNOR_PAGES_PER_HOUR": "100000"},
}
"""Settings a run starts from (``GOVERNOR_*`` in the environment still win): the
production defaults, or the demo's short windows and holds. Pages are never rate
limited here: each incident's page is measured."""


@dataclass
class Receiver:
    """Pages received, per function: (wall time, status) in arrival order."""

    pages: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, body: bytes) -> None:
        now = time.time()
        try:
            alerts = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        for alert in alerts if isinstance(alerts, list) else []:
            labels = alert.get("labels", {}) if isinstance(alert, dict) else {}
            status = "resolved" if _ended(alert.get("endsAt"), now) else "firing"
            with self.lock:
                self.pages.setdefault(str(labels.get("function", "")), []).append((now, status))

    def first(self, function: str, status: str) -> float | None:
        with self.lock:
            return next((t for t, s in self.pages.get(function, []) if s == status), None)


def _ended(ends_at: object, now: float) -> bool:
    """Whether an alert's ``endsAt`` is its resolve (an open alert's lies a lease ahead)."""
    if not isinstance(ends_at, str):
        return False
    return datetime.fromisoformat(ends_at.replace("Z", "+00:00")).timestamp() <= now + 1


@contextmanager
def receiver() -> Iterator[tuple[str, Receiver]]:
    """An Alertmanager-compatible endpoint on loopback; yields its URL and what it got."""
    got = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.record(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", got  # the pager adds /api/v2/alerts
    finally:
        httpd.shutdown()


def fleet_of(count: int) -> list[FunctionSpec]:
    """``count`` functions cycling through the demo fleet's shapes."""
    return [replace(FLEET[i % len(FLEET)], name=f"{FLEET[i % len(FLEET)].name}-{i:02d}")
            for i in range(count)]


def incidents_for(specs: list[FunctionSpec], first_s: float, every_s: float,
                  duration_s: float) -> list[Fault]:
    """One incident per function: a cost per call jump where calls bill tokens, else a
    runaway loop; starting ``every_s`` apart."""
    out = []
    for i, spec in enumerate(specs):
        start = first_s + i * every_s
        if spec.tokens:
            out.append(Fault("cost per call jump", spec.name, start, start + duration_s,
                                tokens_factor=40))
        else:
            out.append(Fault("runaway loop", spec.name, start, start + duration_s,
                                rate_factor=max(10.0, 40 / spec.rps)))
    return out


@dataclass(frozen=True)
class LoopReport:
    incidents: list[Fault]
    pages: list[float | None]  # per incident: seconds from its first call to the page
    resolved: int  # incidents whose page was resolved
    settings: str = ""  # what the run used, in one line

    @property
    def to_enforce(self) -> list[float]:
        return [t for i in self.incidents if (t := i.seconds_to_enforce) is not None]

    @property
    def to_page(self) -> list[float]:
        return [p for p in self.pages if p is not None]

    def lines(self) -> list[str]:
        out = [self.settings] if self.settings else []
        out.append(f"{'incident':<20} {'function':<18} {'to enforce':>10} {'to page':>8}")
        for i, page in zip(self.incidents, self.pages, strict=True):
            enforce = i.seconds_to_enforce
            out.append(f"{i.kind:<20} {i.function:<18} "
                       f"{'-' if enforce is None else f'{enforce:.2f}s':>10} "
                       f"{'-' if page is None else f'{page:.2f}s':>8}")
        enforced, paged = self.to_enforce, self.to_page
        out.append(f"incidents {len(self.incidents)}, enforced {len(enforced)}, paged "
                   f"{len(paged)}, pages resolved {self.resolved}")
        out.append(f"to enforce: p50 {_pct(enforced, 50):.2f}s, p95 {_pct(enforced, 95):.2f}s, "
                   f"max {max(enforced):.2f}s")
        if paged:
            out.append(f"to page: p50 {_pct(paged, 50):.2f}s, p95 {_pct(paged, 95):.2f}s "
                       "(from the first call under the incident)")
        out.append(f"loop p95: {_pct(enforced, 95):.2f}s to enforce")
        return out


def _pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def bench(settings: Settings, functions: int = 24, pace: str = "production",
          warmup_s: float | None = None, every_s: float = 1.5, duration_s: float | None = None,
          settle_s: float | None = None) -> LoopReport:
    """Run the fleet with one incident per function; the measured latencies.

    ``pace`` picks the settings (:data:`PACES`); the warm-up, the incidents' length and
    the wait for releases default to what those settings need.
    """
    if functions < 1:
        raise BenchmarkError("--functions must be at least 1")
    if pace not in PACES:
        raise BenchmarkError(f"--pace {pace!r}: use {' or '.join(PACES)}")
    specs = fleet_of(functions)
    with receiver() as (url, got):
        env = {**PACES[pace], "GOVERNOR_ALERTMANAGER_URL": url,
               **{k: v for k, v in os.environ.items() if k.startswith("GOVERNOR_")}}
        settings = Settings.from_env(env, data_dir=settings.data_dir)
        window = settings.window_seconds
        learned = max(settings.warmup_windows, settings.learning_windows)
        warmup_s = (learned + 2) * window if warmup_s is None else warmup_s
        duration_s = max(12.0, 2 * window) if duration_s is None else duration_s
        settle_s = (settings.hold_seconds + settings.release_after_seconds + 3 * window
                    if settle_s is None else settle_s)
        incidents = incidents_for(specs, warmup_s, every_s, duration_s)
        agent = agents.AgentSettings()
        used = (f"settings ({pace}): window {window:g} s, warm-up {settings.warmup_windows} "
                f"windows, learning {settings.learning_windows} windows, lateness "
                f"{settings.lateness_seconds:g} s, hold "
                f"{settings.hold_seconds:g} s, agent export every {agent.export_interval_ms} ms")
        with local_stack(settings, env, app_id="governor-loop") as settings:
            agents.configure(replace(
                agent, kafka_bootstrap=settings.kafka_bootstrap,
                kafka_security=settings.kafka_security,
                topic_prefix=settings.topic_prefix, verdict_key=agent_key(settings)))
            try:
                fleet = Fleet(specs, incidents)
                end_s = incidents[-1].end_s + settle_s
                asyncio.run(fleet.run(end_s))
                agents.flush(5.0)
            finally:
                agents.shutdown(2.0)
        if not any(i.enforced_at for i in incidents):
            raise BenchmarkError("no incident was enforced; see the worker log in "
                                 f"{settings.data_dir}/worker.log")
        pages: list[float | None] = []
        for i in incidents:
            paged = got.first(i.function, "firing")
            pages.append(paged - i.started_at if paged is not None and i.started_at else None)
        resolved = sum(got.first(i.function, "resolved") is not None for i in incidents)
    return LoopReport(incidents, pages, resolved, used)
