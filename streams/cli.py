"""The ``governor`` command line."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import orjson

from streams.errors import StreamsError
from streams.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data_dir", None))


def cmd_up(args: argparse.Namespace) -> int:
    """Embedded broker (unless GOVERNOR_KAFKA_BOOTSTRAP is set) + the worker."""
    from streams.stack import start_broker
    from streams.worker import run_worker

    settings = _settings(args)
    broker = None
    if settings.embedded_broker:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        broker = start_broker(settings.data_dir / "broker.log")
        settings = settings.replace(kafka_bootstrap=broker.bootstrap)
        print(f"broker    kafka://{broker.bootstrap} (embedded Tansu)", flush=True)
    print(f"clickhouse {settings.clickhouse_dsn}", flush=True)
    print(f"queries   http://{settings.query_host}:{settings.query_port}/query "
          "(governor query \"SELECT ...\")", flush=True)
    try:
        return run_worker(settings, {"broker_pid": broker.process.pid} if broker else None)
    finally:
        if broker is not None:
            broker.stop()


def cmd_worker(args: argparse.Namespace) -> int:
    """Just the worker, against GOVERNOR_KAFKA_BOOTSTRAP."""
    from streams.worker import run_worker

    settings = _settings(args)
    if settings.embedded_broker:
        raise StreamsError("governor worker needs GOVERNOR_KAFKA_BOOTSTRAP; "
                           "use 'governor up' for the embedded broker")
    return run_worker(settings)


def cmd_query(args: argparse.Namespace) -> int:
    from streams.query import run_query

    result = run_query(_settings(args), args.sql)
    if args.format == "json":
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        sys.stdout.write(orjson.dumps(rows, default=str, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*result.columns, caption=f"{len(result.rows)} rows, "
                      f"{result.elapsed_s * 1000:.0f} ms")
        for row in result.rows:
            table.add_row(*(str(v) for v in row))
        Console().print(table)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import DemoOptions, run_demo

    return run_demo(_settings(args), DemoOptions(warmup_s=args.warmup, incident_s=args.incident))


def cmd_bench_nab(args: argparse.Namespace) -> int:
    """Run a detector over a NAB folder, score it, print the report."""
    from streams.nab import bench, format_report

    report = bench(args.data, args.out, args.detector, workers=args.workers)
    print("\n".join(format_report(report)), flush=True)
    return 0


def cmd_bench_throughput(args: argparse.Namespace) -> int:
    """Cost events through a real worker process; print events/s, detector cost, RSS."""
    from streams.throughput import format_report, run_throughput

    settings = _settings(args)
    result = run_throughput(args.events, args.functions,
                            bootstrap=None if settings.embedded_broker
                            else settings.kafka_bootstrap, settings=settings)
    print("\n".join(format_report(result)), flush=True)
    return 0


def cmd_bench_incidents(args: argparse.Namespace) -> int:
    """Labelled synthetic incidents through the real Decider; print the per-kind table."""
    from streams.incident_report import bench, format_report

    report = bench(args.functions, args.days, args.seed, _settings(args), workers=args.workers)
    print("\n".join(format_report(report)), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="governor", description="Closed-loop FinOps and runtime governance for serverless "
        "functions. Settings come from GOVERNOR_* environment variables (see streams/settings.py).")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="local state directory (GOVERNOR_DATA_DIR, default .governor)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at info level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("up", help="run the embedded stack: broker, ClickHouse, worker"
                   ).set_defaults(run=cmd_up)
    sub.add_parser("worker", help="run a worker against GOVERNOR_KAFKA_BOOTSTRAP"
                   ).set_defaults(run=cmd_worker)

    query = sub.add_parser("query", help="run a read-only SQL query on the history")
    query.add_argument("sql")
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")
    query.set_defaults(run=cmd_query)

    demo = sub.add_parser("demo", help="the closed loop on simulated functions")
    demo.add_argument("--warmup", type=float, default=24.0, help="seconds of normal traffic")
    demo.add_argument("--incident", type=float, default=25.0, help="seconds each incident lasts")
    demo.set_defaults(run=cmd_demo)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(
        dest="benchmark", required=True, metavar="BENCHMARK")
    nab = bench.add_parser("nab", help="score a detector on the Numenta Anomaly Benchmark")
    nab.add_argument("--data", type=Path, required=True,
                     help="NAB folder holding data/ and labels/ (or its data/ folder)")
    nab.add_argument("--out", type=Path, required=True, help="results folder (NAB's layout)")
    nab.add_argument("--detector", default=None,
                     help="detector name from streams.detectors (default: its DEFAULT)")
    nab.add_argument("--workers", type=int, default=None,
                     help="processes running series (default: one per CPU)")
    nab.set_defaults(run=cmd_bench_nab)
    throughput = bench.add_parser(
        "throughput", help="cost events/s through one real worker process (all detectors on)")
    throughput.add_argument("--events", type=int, default=200_000, help="cost events to send")
    throughput.add_argument("--functions", type=int, default=1_000, help="distinct functions")
    throughput.set_defaults(run=cmd_bench_throughput)
    incidents = bench.add_parser(
        "incidents", help="detection rate, time to detect and false alarms on synthetic "
        "traffic with labelled incidents")
    incidents.add_argument("--functions", type=int, default=210,
                           help="simulated functions, the 7 label kinds in turn (210)")
    incidents.add_argument("--days", type=float, default=1.0,
                           help="days per function of the long false-alarm pass (1)")
    incidents.add_argument("--seed", type=int, default=1, help="seed of fleet and traffic (1)")
    incidents.add_argument("--workers", type=int, default=None,
                           help="processes (default: one per CPU)")
    incidents.set_defaults(run=cmd_bench_incidents)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except StreamsError as exc:
        print(f"governor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
