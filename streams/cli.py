"""The ``governor`` command line."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from streams.errors import StreamsError
from streams.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data_dir", None))


def cmd_up(args: argparse.Namespace) -> int:
    """Embedded broker (unless GOVERNOR_KAFKA_BOOTSTRAP is set) + the worker."""
    from streams.keys import agent_key, load_state_key, load_telemetry_keys, load_verdict_key
    from streams.ops.broker import start_broker
    from streams.pipeline.worker import run_worker

    settings = _settings(args)
    broker = None
    if settings.embedded_broker:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        load_verdict_key(settings, create=True)  # the workers' key; agents get the public one
        load_state_key(settings, create=True)  # the workers' snapshot key (theirs alone)
        if settings.telemetry_auth == "on":  # opted in: functions need their keys
            load_telemetry_keys(settings, create=True)
        broker = start_broker(settings.data_dir / "broker.log")
        settings = settings.replace(kafka_bootstrap=broker.bootstrap,
                                    telemetry_auth=settings.telemetry_auth or "off")
        print(f"broker    kafka://{broker.bootstrap} (embedded Tansu)", flush=True)
    print(f"clickhouse {settings.clickhouse_dsn}", flush=True)
    print(f"agents    GOVERNOR_VERDICT_KEY={agent_key(settings).decode()}", flush=True)
    if settings.authenticates_telemetry:
        print("          GOVERNOR_FUNCTION_KEY=$(governor keys function NAME) for each "
              "function (telemetry without it decides nothing)", flush=True)
    print(f"queries   http://{settings.query_host}:{settings.query_port}/query "
          "(governor query \"SELECT ...\")", flush=True)
    try:
        return run_worker(settings, {"broker_pid": broker.process.pid} if broker else None)
    finally:
        if broker is not None:
            broker.stop()


def cmd_worker(args: argparse.Namespace) -> int:
    """Just the worker, against GOVERNOR_KAFKA_BOOTSTRAP."""
    from streams.pipeline.worker import run_worker

    settings = _settings(args)
    if settings.embedded_broker:
        raise StreamsError("governor worker needs GOVERNOR_KAFKA_BOOTSTRAP; "
                           "use 'governor up' for the embedded broker")
    return run_worker(settings)


def cmd_query(args: argparse.Namespace) -> int:
    from streams.ops.query import run_query

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
    from streams.sim.demo import DemoOptions, run_demo

    return run_demo(_settings(args), DemoOptions(warmup_s=args.warmup, incident_s=args.incident))


def cmd_bench_nab(args: argparse.Namespace) -> int:
    """Run a detector over a NAB folder, score it, print the report."""
    from streams.bench.nab import bench, format_report
    from streams.bench.nab.crossval import crossvalidate, format_crossvalidation

    if args.cv:
        if args.detector not in (None, "onset"):
            raise StreamsError("--cv chooses the onset detector's parameters; drop --detector")
        cv = crossvalidate(args.data, args.out, workers=args.workers)
        print("\n".join(format_crossvalidation(cv)), flush=True)
        return 0
    report = bench(args.data, args.out, args.detector, workers=args.workers)
    print("\n".join(format_report(report)), flush=True)
    return 0


def cmd_bench_throughput(args: argparse.Namespace) -> int:
    """Cost events through a real worker process; print events/s, detector cost, RSS."""
    from streams.bench.throughput import format_report, run_throughput

    settings = _settings(args)
    result = run_throughput(args.events, args.functions,
                            bootstrap=None if settings.embedded_broker
                            else settings.kafka_bootstrap, settings=settings)
    print("\n".join(format_report(result)), flush=True)
    return 0


def cmd_bench_incidents(args: argparse.Namespace) -> int:
    """Labelled synthetic incidents through the real Decider; print the per-kind table."""
    from streams.bench.incidents import bench, format_report

    report = bench(args.functions, args.days, args.seed, _settings(args), workers=args.workers,
                   suite=args.suite)
    print("\n".join(format_report(report)), flush=True)
    return 0


def cmd_bench_loop(args: argparse.Namespace) -> int:
    """Incidents on the local stack: seconds to enforcement at the agent and to the page."""
    from streams.bench.loop import bench

    report = bench(_settings(args), functions=args.functions, pace=args.pace)
    print("\n".join(report.lines()), flush=True)
    return 0 if len(report.to_enforce) == len(report.incidents) else 1


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _shown(value: object, unset: str = "unset") -> str:
    return unset if value is None or value == "" else str(value)


def _when(time_unix_nano: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(time_unix_nano / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _audit(key: str, text: str) -> str:
    from streams.control.commands import audit_value

    try:
        return _shown(audit_value(key, text))
    except StreamsError:  # a key or value this version does not know: show it raw
        return text


def _print_change(rows: list[Any]) -> None:
    first = rows[0]
    undoing = f", undoing {first.undo_of}" if first.undo_of else ""
    reason = "" if first.reason in ("", f"undo of {first.undo_of}") else f": {first.reason}"
    print(f"change {first.change_id} on {first.function} by {first.actor}{undoing}{reason}")
    _table(["  key", "old", "", "new"],
           [[f"  {r.key}", _audit(r.key, r.old), "→", _audit(r.key, r.new)] for r in rows])


def cmd_thresholds_show(args: argparse.Namespace) -> int:
    """Scopes and their values; with a function, what is in force for it and from where."""
    from streams.control.commands import read_control
    from streams.decisions.thresholds import ALL, TEAM_PREFIX, validate_scope

    thresholds = read_control(_settings(args))
    scope = validate_scope(args.scope) if args.scope is not None else None
    is_function = scope is not None and scope != ALL and not scope.startswith(TEAM_PREFIX)
    scopes = thresholds.scopes()
    if scope is not None and not is_function:
        scopes = {scope: scopes[scope]} if scope in scopes else {}
    rows = []
    for name, values in scopes.items():
        update = thresholds.last_update(name)
        by = f"{update.actor} {_when(update.time_unix_nano)}" if update else ""
        rows += [[name, key, _shown(value), by] for key, value in values.items()]
    if rows:
        _table(["scope", "key", "value", "set by"], rows)
    else:
        print(f"no thresholds set on {scope}" if scope is not None and not is_function
              else "no thresholds set: every function uses the defaults")
    if is_function and scope is not None:
        team = f" (team {args.team})" if args.team else " (give --team to include its scope)"
        print(f"\nin force for {scope}{team}:")
        _table(["key", "value", "from"],
               [[key, _shown(r.value, "unset (no limit)"), r.source]
                for key, r in thresholds.resolve(scope, args.team or "").items()])
    return 0


def cmd_thresholds_keys(args: argparse.Namespace) -> int:
    """Every threshold key: group, what it accepts, default, meaning."""
    from streams.decisions.thresholds import REGISTRY

    settings = _settings(args)
    _table(["key", "group", "accepts", "default", "meaning"],
           [[spec.key, spec.group, spec.expects(),
             _shown(spec.default_for(settings), "unset (no limit)"), spec.doc]
            for spec in REGISTRY.values()])
    return 0


def cmd_thresholds_set(args: argparse.Namespace) -> int:
    """Set or unset keys on one scope; print old → new."""
    from streams.control.commands import set_thresholds
    from streams.decisions.thresholds import parse_assignments, validate_scope

    scope = validate_scope(args.scope)
    values = parse_assignments(args.assignments)  # bad input fails before the broker
    rows = set_thresholds(_settings(args), scope, values, args.actor, args.reason)
    if rows:
        _print_change(rows)
    else:
        print(f"no change: {scope} already has those values")
    return 0


def cmd_thresholds_undo(args: argparse.Namespace) -> int:
    """Revert the latest change in effect, or the one given."""
    from streams.control.commands import undo

    _print_change(undo(_settings(args), args.actor, args.change_id, args.reason))
    return 0


def cmd_thresholds_history(args: argparse.Namespace) -> int:
    """The audit trail of threshold changes, oldest first."""
    from streams.control.commands import history, undone_changes

    settings = _settings(args)
    rows = history(settings, None, limit=0)
    undone = undone_changes(rows)
    rows = [r for r in rows if args.scope is None or r.function == args.scope][-args.limit:]
    if not rows:
        print("no threshold changes" + (f" on {args.scope}" if args.scope else ""))
        return 0
    _table(["time", "change", "scope", "key", "old", "", "new", "actor", "reason"],
           [[_when(r.time_unix_nano),
             r.change_id[:12] + (" (undone)" if r.change_id in undone else ""),
             r.function, r.key, _audit(r.key, r.old), "→", _audit(r.key, r.new), r.actor,
             r.reason] for r in rows])
    return 0


def _duration(text: str) -> float:
    from streams.control.commands import ControlError, parse_duration

    try:
        return parse_duration(text)
    except ControlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def cmd_verdict(args: argparse.Namespace) -> int:
    """A manual verdict for one function, signed with the workers' key."""
    from schemas import Action
    from streams.control.commands import ControlError, publish_verdict

    action = Action(args.action)
    if action is Action.THROTTLE and args.rps is None:
        raise ControlError("throttle needs --rps N (calls per second per instance)")
    if action is not Action.THROTTLE and args.rps is not None:
        raise ControlError(f"{action.value} takes no --rps; only throttle does")
    settings = _settings(args)
    ttl = args.ttl if args.ttl is not None else settings.verdict_ttl_seconds
    sent = publish_verdict(settings, args.function, action, args.rps, ttl, args.reason,
                           args.actor)
    v = sent.verdict
    rate = f" to {v.rate_rps:g} rps" if v.rate_rps is not None else ""
    print(f"verdict {action.value.upper()} {v.function}{rate} for {_human(ttl)} "
          f"(until {_when(v.expires_at_unix_nano)}), issuer {v.issuer}")
    print(f"sequence {v.sequence}, {sent.topic} partition {sent.partition} offset {sent.offset}")
    return 0


def cmd_keys_function(args: argparse.Namespace) -> int:
    """Print a function's telemetry key (its ``GOVERNOR_FUNCTION_KEY``)."""
    from streams.keys import function_key_for

    print(function_key_for(_settings(args), args.function))
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    """Build the Lambda layer zips (agent + extension) for each architecture asked."""
    from streams.ops.layer import build_layer

    for architecture in args.arch:
        for python in args.python:
            path = build_layer(args.out, architecture, python)
            print(f"{path} ({path.stat().st_size / 1e6:.1f} MB): python {python}, "
                  f"{architecture}")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    """On-call's word on an incident: recorded; a false alarm teaches the function."""
    from schemas import Judgement
    from streams.control.feedback import give_feedback, lookup
    from streams.ops.query import run_query

    settings = _settings(args)
    facts = lookup(lambda sql: run_query(settings, sql), args.incident)
    recorded = give_feedback(settings, facts, Judgement(args.judgement), args.reason,
                             args.actor)
    f = recorded.feedback
    print(f"feedback {f.judgement.value} on incident {f.incident_id} ({f.function}, "
          f"{f.kind or 'incident'}) recorded by {f.actor}")
    for change in recorded.changes:
        print(f"taught {change.function}: {change.key} {change.old or 'default'} -> "
              f"{change.new} (change {change.change_id}; `governor thresholds undo` reverts)")
    if f.judgement is Judgement.FALSE_ALARM and not recorded.changes:
        print("nothing to teach: " + ("no cost ratio in its anomalies" if not f.ratio
                                      else "min_ratio is already above what it showed"))
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
    nab.add_argument("--cv", action="store_true",
                     help="leave one category out: the onset detector's parameters chosen on "
                     "the other categories, each category scored with them")
    nab.add_argument("--workers", type=int, default=None,
                     help="processes running series (default: one per CPU)")
    nab.set_defaults(run=cmd_bench_nab)
    throughput = bench.add_parser(
        "throughput", help="cost events/s through one real worker process (all detectors on)")
    throughput.add_argument("--events", type=int, default=200_000, help="cost events to send")
    throughput.add_argument("--functions", type=int, default=1_000, help="distinct functions")
    throughput.set_defaults(run=cmd_bench_throughput)
    loop = bench.add_parser(
        "loop", help="seconds from an incident's first call to enforcement and to the page")
    loop.add_argument("--functions", type=int, default=24,
                      help="simulated functions, one incident each (at least 20 for the p95)")
    loop.add_argument("--pace", choices=("production", "demo"), default="production",
                      help="the production defaults (10 s windows), or the demo's 2 s "
                      "windows and short holds; GOVERNOR_* variables still win")
    loop.set_defaults(run=cmd_bench_loop)
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
    incidents.add_argument("--suite", choices=("standard", "hard"), default="standard",
                           help="hard: subtle (1.5-3x) incidents and benign changes (a ramp, "
                           "batch bursts, a launch step, noisy cost), false enforcements "
                           "counted")
    incidents.set_defaults(run=cmd_bench_incidents)

    thresholds = sub.add_parser(
        "thresholds", help="live thresholds: show, keys, set, undo, history").add_subparsers(
        dest="thresholds_command", required=True, metavar="ACTION")
    show = thresholds.add_parser("show", help="scopes and values; with a FUNCTION, what is in "
                                 "force for it and where each value comes from")
    show.add_argument("scope", nargs="?", metavar="SCOPE", help="FUNCTION, team:NAME or '*'")
    show.add_argument("--team", default="", help="the function's team, to include its scope")
    show.set_defaults(run=cmd_thresholds_show)
    thresholds.add_parser("keys", help="every threshold key, what it accepts and its default"
                          ).set_defaults(run=cmd_thresholds_keys)
    tset = thresholds.add_parser("set", help="set keys on a scope (key= unsets a key)")
    tset.add_argument("scope", metavar="SCOPE", help="FUNCTION, team:NAME or '*'")
    tset.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    tset.add_argument("--reason", default="", help="why, for the audit trail")
    tset.add_argument("--actor", default=None, help="who (GOVERNOR_ACTOR, default the OS user)")
    tset.set_defaults(run=cmd_thresholds_set)
    tundo = thresholds.add_parser("undo", help="revert the latest change in effect, or CHANGE_ID")
    tundo.add_argument("change_id", nargs="?", default=None, metavar="CHANGE_ID")
    tundo.add_argument("--reason", default="", help="why (default: 'undo of CHANGE_ID')")
    tundo.add_argument("--actor", default=None, help="who (GOVERNOR_ACTOR, default the OS user)")
    tundo.set_defaults(run=cmd_thresholds_undo)
    thist = thresholds.add_parser("history", help="the audit trail of threshold changes")
    thist.add_argument("scope", nargs="?", default=None, metavar="SCOPE")
    thist.add_argument("--limit", type=int, default=50, help="rows, newest kept (50)")
    thist.set_defaults(run=cmd_thresholds_history)

    verdict = sub.add_parser("verdict", help="publish a manual verdict for one function")
    verdict.add_argument("action", choices=("release", "throttle", "isolate"))
    verdict.add_argument("function", metavar="FUNCTION")
    verdict.add_argument("--rps", type=float, default=None,
                         help="allowed calls per second per instance (throttle only)")
    verdict.add_argument("--for", dest="ttl", type=_duration, default=None, metavar="DURATION",
                         help="lifetime: 30s, 10m, 2h (GOVERNOR_VERDICT_TTL_SECONDS)")
    verdict.add_argument("--reason", required=True, help="why, for the agents and the audit")
    verdict.add_argument("--actor", default=None, help="who (GOVERNOR_ACTOR, default the OS user)")
    verdict.set_defaults(run=cmd_verdict)
    feedback = sub.add_parser(
        "feedback", help="say whether an incident was a false alarm (the function learns "
        "from it) or confirmed")
    feedback.add_argument("incident", metavar="INCIDENT_ID",
                          help="the id on the page (Alertmanager label incident_id)")
    feedback.add_argument("judgement", choices=("false-alarm", "confirmed"))
    feedback.add_argument("--reason", required=True, help="why, for the audit")
    feedback.add_argument("--actor", default=None, help="who (GOVERNOR_ACTOR, default the OS user)")
    feedback.set_defaults(run=cmd_feedback)
    keys = sub.add_parser("keys", help="keys functions are given").add_subparsers(
        dest="keys_command", required=True, metavar="KEY")
    fkey = keys.add_parser(
        "function", help="a function's telemetry key, for its GOVERNOR_FUNCTION_KEY (derived "
        "from GOVERNOR_TELEMETRY_KEY; give each function only its own)")
    fkey.add_argument("function", metavar="FUNCTION")
    fkey.set_defaults(run=cmd_keys_function)
    package = sub.add_parser("package", help="build deployment artefacts").add_subparsers(
        dest="artefact", required=True, metavar="ARTEFACT")
    layer = package.add_parser(
        "lambda-layer", help="the agent and its Lambda extension as a layer zip")
    layer.add_argument("--arch", nargs="+", choices=("x86_64", "arm64"),
                       default=["x86_64", "arm64"], help="architectures (both)")
    layer.add_argument("--python", nargs="+", choices=("3.11", "3.12", "3.13"),
                       default=["3.11", "3.12", "3.13"], help="Lambda Python runtimes (all)")
    layer.add_argument("--out", type=Path, default=Path("dist"),
                       help="where the zips go (dist/)")
    layer.set_defaults(run=cmd_package)
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
