"""Operator commands on Kafka: live thresholds (set, undo, history) and manual verdicts.

Thresholds live on the compacted control topic (:mod:`streams.control.follower`):
:func:`set_thresholds` publishes a scope's new complete values, :func:`read_control`
rebuilds what is in force.

Every change also writes one :class:`~schemas.ThresholdChange` per changed key to
the audit topic (who, when, why, old → new), all sharing a ``change_id``; that is
the history :func:`undo` walks back through.

Manual verdicts (:func:`publish_verdict`) are issued by the same
:class:`~streams.decisions.lifecycle.VerdictIssuer` as the workers' (same key) and
numbered so they supersede the verdicts already published.

The broker is ``GOVERNOR_KAFKA_BOOTSTRAP`` or, when unset, the one recorded in the
stack file of a running ``governor up``.
"""

from __future__ import annotations

import getpass
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import KafkaException

from agents.compacted import read_to_end
from schemas import (
    Action,
    ControlKind,
    ControlUpdate,
    SchemaError,
    ThresholdChange,
    Verdict,
    decode,
    encode,
    new_event_id,
    now_ns,
    partition_for,
    sign_record,
)
from streams.control.follower import control_key, load_control
from streams.decisions.lifecycle import OPERATOR, VerdictIssuer
from streams.decisions.thresholds import (
    ALL,
    REGISTRY,
    TEAM_PREFIX,
    ThresholdError,
    Thresholds,
    Value,
    spec_for,
    validate_scope,
)
from streams.errors import ControlError, StackError
from streams.kafka import ensure_topics, partition_count, wait_for_kafka
from streams.keys import checking_key, load_verdict_key
from streams.ops.stackfile import read_stack_file
from streams.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Message

log = logging.getLogger("governor.control")

_NO_BROKER = "start `governor up` or set GOVERNOR_KAFKA_BOOTSTRAP"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class PublishedVerdict:
    """A manual verdict and where it landed."""

    verdict: Verdict
    topic: str
    partition: int
    offset: int


def default_actor(settings: Settings) -> str:
    """``GOVERNOR_ACTOR``, else the OS user."""
    if settings.actor:
        return settings.actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``2h``, ``1d``, ``500ms`` or plain seconds, as seconds (> 0).

    >>> parse_duration("10m"), parse_duration("90")
    (600.0, 90.0)
    """
    match = _DURATION.match(text)
    seconds = float(match[1]) * _UNITS[match[2] or "s"] if match else 0.0
    if seconds <= 0:
        raise ControlError(f"duration {text!r}: expected a positive number with a unit "
                           "(30s, 10m, 2h, 1d)")
    return seconds


def bootstrap_for(settings: Settings, timeout_s: float = 5.0) -> str:
    """The broker to talk to, checked to answer: ``GOVERNOR_KAFKA_BOOTSTRAP``, else the
    running stack's (from its stack file)."""
    if settings.kafka_bootstrap:
        bootstrap, origin = settings.kafka_bootstrap, "GOVERNOR_KAFKA_BOOTSTRAP"
    else:
        stack = read_stack_file(settings)
        if not stack or not stack.get("bootstrap"):
            raise ControlError(f"no broker to talk to: {_NO_BROKER} "
                               f"(no running stack found in {settings.data_dir})")
        bootstrap, origin = str(stack["bootstrap"]), f"the stack file in {settings.data_dir}"
    try:
        wait_for_kafka(bootstrap, timeout_s)
    except StackError as exc:
        raise ControlError(f"{exc} (from {origin}); {_NO_BROKER}") from None
    return bootstrap


# ---------------------------------------------------------------- thresholds


def read_control(settings: Settings, timeout_s: float = 10.0) -> Thresholds:
    """The thresholds in force: the control topic read from the beginning up to its
    high watermarks, each update applied in order (latest per scope wins)."""
    return _in_force(bootstrap_for(settings), settings, timeout_s)


def _in_force(bootstrap: str, settings: Settings, timeout_s: float = 10.0) -> Thresholds:
    try:
        return load_control(bootstrap, settings, checking_key(settings), timeout_s)
    except (TimeoutError, KafkaException) as exc:
        raise ControlError(f"cannot read {settings.topic('control')}: {exc}") from None


def set_thresholds(settings: Settings, scope: str, values: Mapping[str, Value | None],
                   actor: str | None = None, reason: str = "") -> list[ThresholdChange]:
    """Set (or, with ``None`` / ``""``, unset) ``values`` on ``scope``.

    Publishes the scope's new complete values to the control topic and one audit row
    per changed key, all with one ``change_id``; returns those rows (old → new), empty
    if nothing changed.
    """
    validate_scope(scope)
    if not values:
        raise ThresholdError(f"nothing to set on {scope}: give key=value (key= unsets it)")
    checked = {key: None if value is None or value == "" else spec_for(key).validate(value)
               for key, value in values.items()}
    bootstrap = bootstrap_for(settings)
    current = _in_force(bootstrap, settings).values(scope)
    new = dict(current)
    for key, value in checked.items():
        if value is None:
            new.pop(key, None)
        else:
            new[key] = value
    return _publish_change(bootstrap, settings, scope, current, new,
                           actor or default_actor(settings), reason, undo_of="")


def undo(settings: Settings, actor: str | None = None, change_id: str | None = None,
         reason: str = "") -> list[ThresholdChange]:
    """Revert ``change_id``, or the latest change still in effect (not an undo, not
    undone); undoing repeatedly walks back through the history.

    Refuses when a key was changed again since (undo that change first). Returns the
    audit rows of the reverting change, whose ``undo_of`` is the reverted change.
    """
    bootstrap = bootstrap_for(settings)
    changes = _changes(_read_audit(bootstrap, settings))
    undone_by = _undone_by(changes)
    if change_id is None:
        change_id = next((cid for cid in reversed(changes)
                          if not changes[cid][0].undo_of and cid not in undone_by), None)
        if change_id is None:
            raise ControlError("nothing to undo: no threshold change in effect in the "
                               f"audit topic {settings.topic('audit')}")
    rows = changes.get(change_id)
    if rows is None:
        raise ControlError(f"no change {change_id!r} in the audit topic "
                           f"{settings.topic('audit')} (see `governor thresholds history`)")
    if change_id in undone_by:
        raise ControlError(f"change {change_id} is already undone (by {undone_by[change_id]})")
    scope = rows[0].function
    current = _in_force(bootstrap, settings).values(scope)
    new = dict(current)
    conflicts = []
    for row in rows:
        now = _json(current.get(row.key))
        if now != row.new:
            conflicts.append(f"{row.key} is {now or 'unset'}, not {row.new or 'unset'}")
        old = audit_value(row.key, row.old)
        if old is None:
            new.pop(row.key, None)
        else:
            new[row.key] = old
    if conflicts:
        raise ControlError(
            f"cannot undo change {change_id} on {scope}: changed since ({'; '.join(conflicts)}); "
            "undo the later change first, or set the values directly")
    return _publish_change(bootstrap, settings, scope, current, new,
                           actor or default_actor(settings), reason or f"undo of {change_id}",
                           undo_of=change_id)


def history(settings: Settings, scope: str | None = None,
            limit: int = 50) -> list[ThresholdChange]:
    """The last ``limit`` audit rows (of ``scope``, if given), oldest first."""
    rows = _read_audit(bootstrap_for(settings), settings)
    if scope is not None:
        rows = [row for row in rows if row.function == scope]
    return rows[-limit:] if limit > 0 else rows


def audit_value(key: str, text: str) -> Value | None:
    """An audit row's ``old``/``new`` (JSON, ``''`` when unset) as a value."""
    if not text:
        return None
    try:
        return spec_for(key).validate(orjson.loads(text))
    except orjson.JSONDecodeError:
        raise ControlError(f"audit value of {key} is not JSON: {text!r}") from None


def undone_changes(rows: Iterable[ThresholdChange]) -> dict[str, str]:
    """``{change_id: undoing change_id}`` for the changes no longer in effect."""
    return _undone_by(_changes(rows))


# ---------------------------------------------------------------- verdicts


def publish_verdict(settings: Settings, function: str, action: Action,
                    rate_rps: float | None = None, ttl_s: float | None = None,
                    reason: str = "", actor: str | None = None,
                    timeout_s: float = 10.0) -> PublishedVerdict:
    """Publish a manual verdict for ``function``, signed like the workers' ones.

    ``issuer`` is ``operator:<actor>``; the sequence is above every verdict already
    on the function's partition (and at least ``now`` in µs, like
    :class:`~streams.decisions.detection.VerdictIssuer`), so agents take it over earlier ones.
    ``ttl_s`` defaults to ``verdict_ttl_seconds``.
    """
    action = Action(action)
    function = validate_scope(function)
    if function == ALL or function.startswith(TEAM_PREFIX):
        raise ControlError(f"a verdict is for one function, not {function!r}")
    if action is Action.THROTTLE:
        if rate_rps is None or not rate_rps > 0:
            raise ControlError("throttle needs a rate above 0 calls per second (--rps N)")
    elif rate_rps is not None:
        raise ControlError(f"{action.value} takes no rate; only throttle does")
    ttl = settings.verdict_ttl_seconds if ttl_s is None else ttl_s
    if not ttl > 0:
        raise ControlError(f"verdict lifetime {ttl!r}: expected seconds > 0")
    if not reason.strip():
        raise ControlError("a manual verdict needs a reason (--reason TEXT)")
    key = load_verdict_key(settings)
    actor = actor or default_actor(settings)
    bootstrap = bootstrap_for(settings)
    topic = settings.topic("verdicts")
    partitions = partition_count(bootstrap, topic)
    if not partitions:
        raise ControlError(f"topic {topic} does not exist: {_NO_BROKER}, or create it from "
                           "infra/kafka/topics.toml")
    partition = partition_for(function, partitions)
    last = 0
    for msg in _read(bootstrap, topic, [partition], timeout_s):
        value = msg.value()
        if msg.key() == function.encode() and value is not None:
            try:
                last = max(last, decode(value, Verdict).sequence)
            except SchemaError:
                continue
    issuer = VerdictIssuer(key, int(ttl * 1e9), OPERATOR + actor)
    issuer.after(function, last)
    verdict = issuer.issue(function, action, reason.strip(), now_ns(), rate_rps=rate_rps)
    [(partition, offset)] = publish_records(
        bootstrap, [(topic, function.encode(), encode(verdict), partition)], timeout_s)
    return PublishedVerdict(verdict, topic, partition, offset)


# ---------------------------------------------------------------- internals


def _read_audit(bootstrap: str, settings: Settings) -> list[ThresholdChange]:
    rows = []
    for msg in _read(bootstrap, settings.topic("audit"), None, 10.0):
        value = msg.value()
        if value is None:
            continue
        try:
            rows.append(decode(value, ThresholdChange))
        except SchemaError as exc:
            log.warning("audit record at offset %d skipped: %s", msg.offset(), exc)
    rows.sort(key=lambda row: row.time_unix_nano)  # stable: one partition keeps its order
    return rows


def _changes(rows: Iterable[ThresholdChange]) -> dict[str, list[ThresholdChange]]:
    changes: dict[str, list[ThresholdChange]] = {}
    for row in rows:
        changes.setdefault(row.change_id, []).append(row)
    return changes


def _undone_by(changes: Mapping[str, list[ThresholdChange]]) -> dict[str, str]:
    """Changes reverted by an undo that is itself still in effect (an undo of an undo
    puts the original back)."""
    undoers: dict[str, list[str]] = {}
    for cid, rows in changes.items():
        if rows[0].undo_of:
            undoers.setdefault(rows[0].undo_of, []).append(cid)
    memo: dict[str, str | None] = {}

    def by(cid: str) -> str | None:
        if cid not in memo:
            memo[cid] = None  # guards against a (malformed) cycle
            memo[cid] = next((u for u in reversed(undoers.get(cid, [])) if by(u) is None), None)
        return memo[cid]

    return {cid: u for cid in changes if (u := by(cid)) is not None}


def _json(value: Value | None) -> str:
    return "" if value is None else orjson.dumps(value).decode()


def _publish_change(bootstrap: str, settings: Settings, scope: str, current: dict[str, Value],
                    new: dict[str, Value], actor: str, reason: str,
                    undo_of: str) -> list[ThresholdChange]:
    order = list(REGISTRY) + sorted((set(current) | set(new)) - set(REGISTRY))
    changed = [k for k in order if _json(current.get(k)) != _json(new.get(k))]
    if not changed:
        return []
    _ensure_topics(bootstrap, settings)
    now, change_id = now_ns(), new_event_id()
    values = {k: new[k] for k in order if k in new}
    update = sign_record(ControlUpdate(function=scope, kind=ControlKind.THRESHOLDS,
                                       values=values, actor=actor, reason=reason,
                                       time_unix_nano=now), load_verdict_key(settings))
    rows = [ThresholdChange(function=scope, key=k, old=_json(current.get(k)),
                            new=_json(new.get(k)), actor=actor, reason=reason,
                            change_id=change_id, undo_of=undo_of, time_unix_nano=now)
            for k in changed]
    publish_records(bootstrap, [
        (settings.topic("control"), control_key(scope), encode(update), None),
        *((settings.topic("audit"), scope.encode(), encode(row), None) for row in rows)])
    return rows


def _ensure_topics(bootstrap: str, settings: Settings) -> None:
    if not (partition_count(bootstrap, settings.topic("control"))
            and partition_count(bootstrap, settings.topic("audit"))):
        ensure_topics(bootstrap, settings.topic_prefix)


def _read(bootstrap: str, topic: str, partitions: list[int] | None,
          timeout_s: float) -> list[Message]:
    """Every record of ``topic`` (or of its ``partitions``) up to its end, or an error."""
    try:
        reading = read_to_end(bootstrap, topic, partitions, timeout_s)
    except KafkaException as exc:
        raise ControlError(f"cannot read {topic}: {exc}") from None
    if reading.unread:
        raise ControlError(f"timed out after {timeout_s:.0f}s reading {topic} "
                           f"(partitions {reading.unread} not read to the end)")
    return reading.records


def publish_records(bootstrap: str, records: list[tuple[str, bytes, bytes, int | None]],
             timeout_s: float = 10.0) -> list[tuple[int, int]]:
    """Produce ``(topic, key, value, partition)`` records, wait for every delivery and
    return their ``(partition, offset)``; a failed delivery raises ControlError."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "message.timeout.ms": int(timeout_s * 1000),
        "log_level": 0,
    })
    delivered: dict[int, tuple[int, int]] = {}
    failures: list[str] = []

    def report(i: int) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(f"{msg.topic()}: {err}")
            else:
                delivered[i] = (msg.partition(), msg.offset())
        return on_delivery

    try:
        for i, (topic, key, value, partition) in enumerate(records):
            if partition is None:
                producer.produce(topic, value, key, on_delivery=report(i))
            else:
                producer.produce(topic, value, key, partition, on_delivery=report(i))
    except (KafkaException, BufferError) as exc:
        raise ControlError(f"cannot publish to {records[0][0]}: {exc}") from None
    left = producer.flush(timeout_s)
    if failures or left:
        raise ControlError("publishing failed: " + "; ".join(
            failures or [f"{left} records not delivered within {timeout_s:.0f}s"]))
    return [delivered[i] for i in range(len(records))]
