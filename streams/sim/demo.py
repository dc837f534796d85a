"""``governor demo``: the closed loop, end to end, on the embedded stack.

Starts the broker and a worker (unless ``GOVERNOR_KAFKA_BOOTSTRAP`` points at a
running deployment), runs six simulated functions through the real agent, injects
a runaway loop and a cost-per-call jump after a warm-up, shows each verdict as the
worker issues it and the agent enforces it, and ends with a summary read back from
ClickHouse. Exit status 0 only if every incident was enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

import agents
from schemas import Action, IncidentStatus, Verdict, decode
from schemas import Incident as IncidentEvent
from streams.control.commands import set_thresholds
from streams.keys import agent_key
from streams.ops.embedded import local_stack
from streams.ops.query import run_query
from streams.settings import Settings
from streams.sim.fleet import FLEET, Fault, Fleet


@dataclass(frozen=True)
class DemoOptions:
    warmup_s: float = 24.0
    incident_s: float = 25.0
    settle_s: float = 150.0
    """Longest wait for the releases after the incidents end. The demo ends as soon as
    every function is released (usually within 30 s), but a probe that meets the
    incident again isolates for twice as long, up to 8× the hold."""
    pages_s: float = 15.0
    """Longest wait for the worker's resolved pages once every function is released."""


# Demo pacing: short windows and holds so the whole loop fits in about a minute.
DEMO_DEFAULTS = {"GOVERNOR_WINDOW_SECONDS": "2", "GOVERNOR_WARMUP_WINDOWS": "5",
                 "GOVERNOR_LEARNING_WINDOWS": "5",
                 "GOVERNOR_HOLD_SECONDS": "10", "GOVERNOR_RELEASE_AFTER_SECONDS": "6",
                 "GOVERNOR_VERDICT_TTL_SECONDS": "120"}
BUDGET = ("invoice-pdf", 0.0004)
"""The demo's policy-driven incident: an hourly budget its normal traffic exceeds."""


def run_demo(settings: Settings, options: DemoOptions) -> int:
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 130
    env = {**DEMO_DEFAULTS, "GOVERNOR_PAGER_FILE": str(settings.data_dir / "pages.jsonl"),
           **{k: v for k, v in os.environ.items() if k.startswith("GOVERNOR_")}}
    settings = Settings.from_env(env, data_dir=settings.data_dir)
    with contextlib.ExitStack() as stack:
        with console.status("starting the embedded broker and worker"):
            settings = stack.enter_context(local_stack(settings, env, app_id="governor-demo"))
        stack.callback(agents.shutdown, 2.0)  # before the worker and broker stop
        console.print(f"[bold]stack[/] broker {settings.kafka_bootstrap}, "
                      f"ClickHouse {settings.clickhouse_dsn}")
        return _run(console, settings, options)
    return 1  # not reached: the with block returns


def _run(console: Console, settings: Settings, options: DemoOptions) -> int:
    agents.configure(agents.AgentSettings(
        kafka_bootstrap=settings.kafka_bootstrap, kafka_security=settings.kafka_security,
        topic_prefix=settings.topic_prefix, verdict_key=agent_key(settings),
        export_interval_ms=100))
    w, d = options.warmup_s, options.incident_s
    incidents = [
        Fault("runaway loop", "webhook-relay", w, w + d, rate_factor=25),
        Fault("cost per call jump", "llm-summarise", w + 4, w + 4 + d, tokens_factor=40),
    ]
    fleet = Fleet(FLEET, incidents)
    applied: list[tuple[float, Verdict]] = []
    agents.get_runtime().verdicts.add_listener(lambda v: applied.append((time.time(), v)))
    started = datetime.now(UTC)
    function, budget = BUDGET
    set_thresholds(settings, function, {"budget_usd_per_hour": budget}, actor="demo",
                   reason="demo: an hourly budget its normal traffic exceeds")
    console.print(f"[bold]policy[/] governor thresholds set {function} "
                  f"budget_usd_per_hour={budget:g}  (policy budget.function_hour)")
    console.print(f"[bold]fleet[/] {len(FLEET)} functions; warm-up {w:.0f}s, then "
                  + "; ".join(f"{i.kind} in {i.function} at +{i.start_s:.0f}s" for i in incidents))
    end_s = w + 4 + d + options.settle_s
    asyncio.run(_drive(console, fleet, applied, end_s, w + 4 + d))
    agents.flush(5.0)

    enforced = [i for i in incidents if i.enforced_at is not None]
    times = [i.seconds_to_enforce or 0.0 for i in enforced]
    by_policy = [v for _, v in applied if v.reason.startswith("budget.")]
    _summary(console, settings, started, len(fleet.stats), len(applied))
    for incident in incidents:
        took = incident.seconds_to_enforce
        console.print(f"  {incident.kind:<20} {incident.function:<15} "
                      + (f"enforced {took:.1f}s after it started" if took is not None
                         else "[red]NOT enforced[/]"))
    console.print(f"  {'budget cap (policy)':<20} {function:<15} "
                  + (f"throttled by {by_policy[0].reason.split(':')[0]}" if by_policy
                     else "[red]NOT enforced[/]"))
    released = sum(agents.get_runtime().verdicts.current(i.function) is None for i in enforced)
    resolved = _pages(console, settings.data_dir / "pages.jsonl", released, options.pages_s)
    print(f"loop closed: {len(incidents) + 1} incidents, {len(applied)} verdicts enforced, "
          f"{resolved} pages resolved, max {max(times, default=0.0):.1f}s to enforce", flush=True)
    return 0 if len(enforced) == len(incidents) and by_policy and resolved else 1


def _pages(console: Console, path: Path, expected: int, wait_s: float) -> int:
    """Print the pages the worker sent to the file pager; how many were resolved.

    Waits up to ``wait_s`` for ``expected`` resolved pages: the worker pages a
    release as it issues it, but delivery to the pager is off the stream's path."""
    deadline = time.monotonic() + wait_s
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        pages = [decode(line.encode(), IncidentEvent) for line in lines]
        resolved = sum(page.status is IncidentStatus.RESOLVED for page in pages)
        if resolved >= expected or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    table = Table("status", "severity", "incident", "title", title=f"Pages ({path})")
    for page in pages:
        table.add_row(page.status.value, page.severity.value, page.incident_id, page.title)
    console.print(table)
    return resolved


async def _drive(console: Console, fleet: Fleet, applied: list[tuple[float, Verdict]],
                 end_s: float, incidents_end_s: float) -> None:
    run = asyncio.create_task(fleet.run(end_s))
    shown = 0
    live = Live(_table(fleet), console=console, refresh_per_second=4, transient=True)
    with live if console.is_terminal else contextlib.nullcontext():
        last_progress = 0.0
        while not run.done():
            await asyncio.sleep(0.25)
            now_s = time.time() - fleet.t0
            for at, verdict in applied[shown:]:
                _show_verdict(console, fleet, at, verdict)
            shown = len(applied)
            if console.is_terminal:
                live.update(_table(fleet))
            elif now_s - last_progress >= 10:
                last_progress = now_s
                rates = ", ".join(f"{n} {s.rate(time.time()):.0f}/s"
                                  for n, s in fleet.stats.items())
                console.print(f"[dim]+{now_s:4.0f}s {rates}[/]")
            if now_s > incidents_end_s and _all_released(fleet):
                fleet.stop()
        await run
    for at, verdict in applied[shown:]:
        _show_verdict(console, fleet, at, verdict)


def _all_released(fleet: Fleet) -> bool:
    """Every function an incident hit is released (the budget throttle stays)."""
    cache = agents.get_runtime().verdicts
    return all(cache.current(i.function) is None for i in fleet.incidents)


def _show_verdict(console: Console, fleet: Fleet, at: float, verdict: Verdict) -> None:
    t = at - fleet.t0
    what = {Action.THROTTLE: f"[yellow]THROTTLE[/] to {verdict.rate_rps or 0:g} rps",
            Action.ISOLATE: "[red]ISOLATE[/]", Action.RELEASE: "[green]RELEASE[/]"}[verdict.action]
    lag = at - verdict.issued_at_unix_nano / 1e9
    since = ""
    for incident in fleet.incidents:
        if incident.function == verdict.function and incident.started_at and \
                verdict.action is not Action.RELEASE:
            since = f", {at - incident.started_at:.1f}s after the {incident.kind} began"
    console.print(f"+{t:5.1f}s verdict {what} [bold]{verdict.function}[/] applied by the agent "
                  f"{lag * 1000:.0f} ms after issue{since}\n         [dim]{verdict.reason}[/]")


def _table(fleet: Fleet) -> Table:
    table = Table("function", "calls/s", "calls", "blocked", "errors", "verdict",
                  title=f"Governor demo  +{time.time() - fleet.t0:.0f}s")
    cache = agents.get_runtime().verdicts
    now = time.time()
    for name, s in fleet.stats.items():
        v = cache.current(name)
        state = "" if v is None else (f"throttled {v.rate_rps:g} rps"
                                      if v.action is Action.THROTTLE else "isolated")
        table.add_row(name, f"{s.rate(now):.1f}", str(s.calls), str(s.blocked),
                      str(s.errors), state)
    return table


def _summary(console: Console, settings: Settings, started: datetime, functions: int,
             verdicts: int) -> None:
    since = started.strftime("%Y-%m-%d %H:%M:%S")
    sql = f"""
        SELECT c.function, c.calls, c.blocked, round(c.cost, 6) AS cost_usd,
               ifNull(a.anomalies, 0), ifNull(v.verdicts, '')
        FROM (SELECT function, count() AS calls,
                     countIf(outcome IN ('throttled', 'isolated')) AS blocked,
                     sum(cost_usd) AS cost
              FROM cost_events FINAL WHERE time >= '{since}' GROUP BY function) AS c
        LEFT JOIN (SELECT function, count() AS anomalies FROM anomalies FINAL
                   WHERE time >= '{since}' GROUP BY function) AS a USING function
        LEFT JOIN (SELECT function, arrayStringConcat(groupArray(action), ' → ') AS verdicts
                   FROM (SELECT function, action FROM verdicts FINAL
                         WHERE time >= '{since}' ORDER BY time)
                   GROUP BY function) AS v USING function
        ORDER BY cost_usd DESC"""
    rows: list[Any] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the sink lands batches within a second or two
        rows = list(run_query(settings, sql).rows)
        landed = sum(len(str(row[-1]).split(" → ")) for row in rows if row[-1])
        if len(rows) >= functions and landed >= verdicts:
            break
        time.sleep(0.5)
    table = Table("function", "invocations", "blocked", "cost USD", "anomalies", "verdicts",
                  title="From ClickHouse (cost_events, anomalies, verdicts)")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    console.print(f"[dim]history: governor --data-dir {Path(settings.data_dir)} query "
                  "\"SELECT count() FROM otel_traces\"[/]")
