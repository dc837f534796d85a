"""A worker flooded with function names: its memory and time per event, with and
without ``GOVERNOR_MAX_FUNCTIONS``.

Run: ``.venv/bin/python benchmarks/function_flood.py [--functions N] [--limit L]
[--windows W]``

A producer that can write to the cost topic can name as many functions as it likes
(with telemetry authentication off, any name counts). Each configuration runs in a
fresh interpreter: a worker's routes on embedded ClickHouse take ``--functions``
distinct functions, three cost events each per window, for ``--windows`` windows
(each closed and decided), in batches of 5,000 as the ingest hands them over. It
prints the RSS growth (the baseline is the same run's RSS before the first event),
per function, and the wall time per event; the ratios are against the run without a
limit (``GOVERNOR_MAX_FUNCTIONS=0``, the baseline, run first). Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

BATCH = 5_000
CALLS = 3  # cost events per function and window


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _run(functions: int, limit: int, windows: int) -> dict[str, Any]:
    """One configuration, in this interpreter."""
    import clickhouse_connect

    from schemas import CostEvent, encode
    from streams.control.follower import ControlFollower
    from streams.decisions.policy import PolicyEngine
    from streams.paging.dispatch import dispatcher_from_settings
    from streams.pipeline.decoding import Record
    from streams.pipeline.prepare import Prepared
    from streams.pipeline.routes import Routes
    from streams.settings import Settings
    from streams.storage.clickhouse import connect, migrate

    data = tempfile.mkdtemp(prefix="governor-flood-")
    connect(f"chdb://{data}").command("CREATE DATABASE flood")
    client = clickhouse_connect.get_client(dsn=f"chdb://{data}", database="flood")
    migrate(client)
    settings = Settings(max_functions=limit, pager_file=os.path.join(data, "pages"),
                        clickhouse_url=f"chdb://{data}")
    control = ControlFollower("127.0.0.1:9", settings, b"")  # not started: the defaults
    prepared = Prepared(client, b"r" * 32, b"t" * 32, 4, {}, PolicyEngine(settings.policy_dir),
                        control)
    routes = Routes(settings, prepared, dispatcher_from_settings(settings))
    window_ns = int(settings.window_seconds * 1e9)
    start_ns = (time.time_ns() // window_ns - windows - 1) * window_ns

    def batches(w: int) -> Iterator[list[Record]]:
        """Window ``w``'s cost events, a batch at a time (so the bench holds one)."""
        batch: list[Record] = []
        for f in range(functions):
            for i in range(CALLS):
                event = CostEvent(function=f"fn-{f}", invocation_id=f"{w}-{f}-{i}",
                                  cost_usd=0.0001,
                                  time_unix_nano=start_ns + w * window_ns + i * 10**9)
                batch.append(Record("governor.costs", 0, (w * functions + f) * CALLS + i,
                                    event.function.encode(), encode(event)))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def flood() -> float:
        busy = 0.0
        for w in range(windows):
            for batch in batches(w):
                began = time.perf_counter()
                await routes.take(batch, CostEvent, routes.on_costs)
                busy += time.perf_counter() - began
            began = time.perf_counter()
            await routes.close_windows(start_ns + (w + 1) * window_ns + 10**9)
            busy += time.perf_counter() - began
        return busy

    before = _rss_mb()
    busy = asyncio.run(flood())
    grown = _rss_mb() - before
    events = functions * windows * CALLS
    stored = client.query("SELECT count() FROM cost_events").result_rows[0][0]
    health = routes.health()
    routes.close(2.0)
    return {"limit": limit, "rss_mb": grown, "us_per_event": busy / events * 1e6,
            "stored": stored, "events": events, "held": health["functions"]["open"]
            + health["functions"]["dormant"],
            "refused": health["counters"].get("functions_refused", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=None,
                        help="GOVERNOR_MAX_FUNCTIONS (default: the production default)")
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_run(args.functions, args.limit, args.windows)))
        return
    from streams.settings import Settings

    limit = Settings().max_functions if args.limit is None else args.limit
    print(f"{args.functions:,} functions × {args.windows} windows × {CALLS} cost events, "
          f"batches of {BATCH:,}; each run in a fresh interpreter")
    rows = []
    for each in (0, limit):
        out = subprocess.run([sys.executable, __file__, "--one", "--functions",
                              str(args.functions), "--limit", str(each), "--windows",
                              str(args.windows)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base, capped = rows
    for row in rows:
        name = ("no limit (baseline)" if not row["limit"]
                else f"GOVERNOR_MAX_FUNCTIONS={row['limit']:,}")
        print(f"{name:32} RSS +{row['rss_mb']:,.0f} MB ({row['rss_mb'] / base['rss_mb']:.2f}×); "
              f"{row['us_per_event']:.1f} µs per event "
              f"({row['us_per_event'] / base['us_per_event']:.2f}×); {row['held']:,} functions "
              f"held; {row['refused']:,} events not decided; {row['stored']:,} of "
              f"{row['events']:,} stored")
    if base["held"] > capped["held"]:
        each = (base["rss_mb"] - capped["rss_mb"]) / (base["held"] - capped["held"]) * 1e3
        print(f"memory per function decided: {each:.0f} KB (the difference between the runs "
              f"over the difference in functions held)")

if __name__ == "__main__":
    main()
