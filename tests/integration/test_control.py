"""Live thresholds and manual verdicts against the real broker."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from schemas import (
    Action,
    ControlKind,
    ControlUpdate,
    ThresholdChange,
    Verdict,
    decode,
    encode,
    now_ns,
    partition_for,
    sign_record,
    sign_verdict,
    verify_verdict,
)
from schemas.signing import SignatureError, new_private_key, public_key
from streams.control.commands import (
    ControlError,
    history,
    publish_verdict,
    read_control,
    set_thresholds,
    undo,
)
from streams.control.follower import ControlFollower, control_key
from streams.decisions.lifecycle import OPERATOR
from streams.decisions.thresholds import REGISTRY, ThresholdError
from streams.errors import VerdictKeyError
from streams.kafka import topic_spec
from streams.ops.stackfile import write_stack_file
from streams.settings import Settings
from tests.integration.conftest import VERDICT_KEY, wait_for

pytestmark = pytest.mark.integration

VERDICT_PARTITIONS = int(topic_spec()["verdicts"]["partitions"])


@pytest.fixture
def settings(broker: str, prefix: str, tmp_path: Path) -> Settings:
    return Settings(kafka_bootstrap=broker, topic_prefix=prefix, verdict_key=VERDICT_KEY,
                    data_dir=tmp_path)


def changes(rows: list[ThresholdChange]) -> list[tuple[str, str, str]]:
    return [(r.key, r.old, r.new) for r in rows]


def test_set_is_read_back_and_audited(settings: Settings) -> None:
    rows = set_thresholds(settings, "checkout", {"zscore_threshold": "8", "min_ratio": 3},
                          "alice", "too noisy")
    assert changes(rows) == [("zscore_threshold", "", "8.0"), ("min_ratio", "", "3.0")]
    assert len({r.change_id for r in rows}) == 1
    assert all(r.actor == "alice" and r.reason == "too noisy" and r.function == "checkout"
               for r in rows)

    thresholds = read_control(settings)
    assert thresholds.values("checkout") == {"zscore_threshold": 8.0, "min_ratio": 3.0}
    assert thresholds.effective("checkout")["zscore_threshold"] == 8.0
    assert thresholds.effective("search")["zscore_threshold"] == settings.zscore_threshold

    rows = set_thresholds(settings, "checkout", {"zscore_threshold": 9.5}, "bob", "")
    assert changes(rows) == [("zscore_threshold", "8.0", "9.5")]
    assert read_control(settings).values("checkout") == {"zscore_threshold": 9.5,
                                                          "min_ratio": 3.0}
    audit = history(settings)
    assert changes(audit) == [("zscore_threshold", "", "8.0"), ("min_ratio", "", "3.0"),
                              ("zscore_threshold", "8.0", "9.5")]


def test_setting_the_same_values_publishes_nothing(settings: Settings) -> None:
    set_thresholds(settings, "*", {"min_ratio": 3}, "alice", "")
    assert set_thresholds(settings, "*", {"min_ratio": 3.0}, "alice", "") == []
    assert len(history(settings)) == 1


def test_unset_removes_the_key_and_an_empty_scope(settings: Settings) -> None:
    set_thresholds(settings, "team:payments", {"budget_usd_per_hour": 2.5,
                                               "egress_allow": "api.stripe.com"}, "a", "")
    rows = set_thresholds(settings, "team:payments", {"egress_allow": None}, "a", "")
    assert changes(rows) == [("egress_allow", '"api.stripe.com"', "")]
    assert read_control(settings).values("team:payments") == {"budget_usd_per_hour": 2.5}
    set_thresholds(settings, "team:payments", {"budget_usd_per_hour": ""}, "a", "")
    assert read_control(settings).scopes() == {}


def test_bad_input_is_refused_before_publishing(settings: Settings) -> None:
    with pytest.raises(ThresholdError, match="valid keys"):
        set_thresholds(settings, "checkout", {"zscore": 3}, "a", "")
    with pytest.raises(ThresholdError, match=">= 1"):
        set_thresholds(settings, "checkout", {"min_ratio": 0.5}, "a", "")
    with pytest.raises(ThresholdError, match="scope"):
        set_thresholds(settings, "team:", {"min_ratio": 3}, "a", "")
    assert history(settings) == []


def test_undo_twice_walks_back(settings: Settings) -> None:
    first = set_thresholds(settings, "checkout", {"zscore_threshold": 8}, "a", "one")
    second = set_thresholds(settings, "checkout", {"zscore_threshold": 9,
                                                   "hold_seconds": 60}, "a", "two")

    rows = undo(settings, "b")
    assert {r.undo_of for r in rows} == {second[0].change_id}
    assert sorted(changes(rows)) == [("hold_seconds", "60.0", ""),
                                     ("zscore_threshold", "9.0", "8.0")]
    assert read_control(settings).values("checkout") == {"zscore_threshold": 8.0}

    rows = undo(settings, "b")
    assert {r.undo_of for r in rows} == {first[0].change_id}
    assert changes(rows) == [("zscore_threshold", "8.0", "")]
    assert read_control(settings).scopes() == {}

    with pytest.raises(ControlError, match="nothing to undo"):
        undo(settings, "b")
    with pytest.raises(ControlError, match="already undone"):
        undo(settings, "b", first[0].change_id)
    with pytest.raises(ControlError, match="no change 'nope'"):
        undo(settings, "b", "nope")


def test_undo_of_an_undo_redoes_and_conflicts_are_refused(settings: Settings) -> None:
    first = set_thresholds(settings, "*", {"min_ratio": 3}, "a", "")
    reverted = undo(settings, "a")
    redone = undo(settings, "a", reverted[0].change_id)
    assert changes(redone) == [("min_ratio", "", "3.0")]
    assert read_control(settings).values("*") == {"min_ratio": 3.0}

    set_thresholds(settings, "*", {"min_ratio": 4}, "a", "")
    with pytest.raises(ControlError, match="changed since"):
        undo(settings, "a", first[0].change_id)  # in effect again, but min_ratio moved on
    assert read_control(settings).values("*") == {"min_ratio": 4.0}


def test_history_by_scope_and_limit(settings: Settings) -> None:
    set_thresholds(settings, "checkout", {"min_ratio": 3}, "a", "")
    set_thresholds(settings, "search", {"min_ratio": 4}, "a", "")
    set_thresholds(settings, "checkout", {"min_ratio": 5}, "a", "")
    assert [r.new for r in history(settings, "checkout")] == ["3.0", "5.0"]
    assert [r.new for r in history(settings, limit=2)] == ["4.0", "5.0"]
    assert history(settings, "nobody") == []


def test_read_control_skips_other_kinds_and_bad_records(settings: Settings,
                                                        broker: str) -> None:
    set_thresholds(settings, "*", {"min_ratio": 3}, "a", "")
    producer = Producer({"bootstrap.servers": broker})
    topic = settings.topic("control")
    bundle = ControlUpdate(function="*", kind=ControlKind.POLICY_BUNDLE, values={"d": "x"})
    producer.produce(topic, encode(bundle), control_key("*", ControlKind.POLICY_BUNDLE))
    producer.produce(topic, b"not json", b"junk")
    producer.produce(topic, None, control_key("gone"))
    assert producer.flush(10) == 0
    assert read_control(settings).scopes() == {"*": {"min_ratio": 3.0}}
    assert control_key("*") == b"thresholds:*"


def test_unsigned_forged_altered_and_tombstone_control_records_are_ignored_and_counted(
        settings: Settings, broker: str) -> None:
    """Whatever can write to the control topic (a function holding only the public key)
    cannot lift a budget: only records signed with the operators' key are applied."""
    operators = new_private_key("ops")
    settings = settings.replace(verdict_key=operators.decode())
    set_thresholds(settings, "checkout", {"budget_usd_per_hour": 5.0}, "alice", "cap")
    follower = ControlFollower(settings.kafka_bootstrap, settings, operators).start()
    try:
        assert follower.wait_synced(20)
        assert follower.thresholds.values("checkout") == {"budget_usd_per_hour": 5.0}
        lift = ControlUpdate(function="checkout", kind=ControlKind.THRESHOLDS,
                             values={"zscore_threshold": 1e308}, actor="mallory")
        genuine = sign_record(dataclasses.replace(lift, values={"min_ratio": 3.0}), operators)
        attacks = [
            encode(lift),  # unsigned
            encode(sign_record(lift, new_private_key("ops"))),  # another key, same key id
            encode(dataclasses.replace(genuine, values=lift.values)),  # altered after signing
            encode(sign_record(lift, VERDICT_KEY.encode())),  # a shared secret, not Ed25519
            None,  # a tombstone would erase the scope
        ]
        producer = Producer({"bootstrap.servers": broker})
        for value in attacks:
            producer.produce(settings.topic("control"), value, control_key("checkout"))
        assert producer.flush(10) == 0
        with pytest.raises(SignatureError, match="public key cannot sign"):
            sign_record(lift, public_key(operators))  # what a function holds
        wait_for(lambda: follower.rejected == len(attacks), timeout_s=15)
        set_thresholds(settings, "search", {"min_ratio": 3}, "alice", "")  # still obeyed
        wait_for(lambda: follower.thresholds.values("search") == {"min_ratio": 3.0},
                 timeout_s=15)
        assert follower.rejected == len(attacks)
        assert follower.thresholds.values("checkout") == {"budget_usd_per_hour": 5.0}
        assert read_control(settings).values("checkout") == {"budget_usd_per_hour": 5.0}
    finally:
        follower.stop()


def test_broker_found_through_the_stack_file(settings: Settings, tmp_path: Path) -> None:
    set_thresholds(settings, "checkout", {"min_ratio": 3}, "a", "")
    write_stack_file(settings, bootstrap=settings.kafka_bootstrap)  # this process: "running"
    via_stack = settings.replace(kafka_bootstrap="")
    assert read_control(via_stack).values("checkout") == {"min_ratio": 3.0}


def test_no_broker_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match=r"governor up.*GOVERNOR_KAFKA_BOOTSTRAP"):
        read_control(Settings(data_dir=tmp_path))


def _read_verdicts(broker: str, topic: str, partition: int) -> list[Verdict]:
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "test-unused",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        found = []
        for _ in range(50):
            msg = consumer.poll(0.2)
            value = msg.value() if msg is not None and not msg.error() else None
            if value is not None:
                found.append(decode(value, Verdict))
            elif found:
                break
        return found
    finally:
        consumer.close()


def test_manual_verdict_is_signed_and_supersedes_the_workers(settings: Settings,
                                                             broker: str) -> None:
    topic = settings.topic("verdicts")
    partition = partition_for("checkout", VERDICT_PARTITIONS)
    ahead = now_ns() // 1000 + 10**9  # a worker whose clock runs ahead
    worker = sign_verdict(Verdict(function="checkout", action=Action.ISOLATE, sequence=ahead,
                                  expires_at_unix_nano=now_ns() + 10**11, issuer="w"),
                          VERDICT_KEY.encode())
    producer = Producer({"bootstrap.servers": broker})
    producer.produce(topic, encode(worker), b"checkout", partition)
    assert producer.flush(10) == 0

    sent = publish_verdict(settings, "checkout", Action.THROTTLE, 5, 600, "load test", "alice")
    assert (sent.topic, sent.partition) == (topic, partition)
    verdict = sent.verdict
    verify_verdict(verdict, VERDICT_KEY.encode())
    assert verdict.issuer == OPERATOR + "alice"
    assert verdict.sequence == ahead + 1
    assert verdict.rate_rps == 5.0 and verdict.reason == "load test"
    ttl = verdict.expires_at_unix_nano - verdict.issued_at_unix_nano
    assert ttl == 600 * 10**9

    on_partition = _read_verdicts(broker, topic, partition)
    assert on_partition[-1] == verdict
    verify_verdict(on_partition[-1], VERDICT_KEY.encode())

    release = publish_verdict(settings, "checkout", Action.RELEASE, None, None, "done", "bob")
    assert release.verdict.sequence > verdict.sequence
    assert (release.verdict.expires_at_unix_nano - release.verdict.issued_at_unix_nano
            == int(settings.verdict_ttl_seconds * 1e9))


def test_manual_verdict_uses_the_data_dir_key(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "verdict.key").write_text("from-the-file\n")
    sent = publish_verdict(settings.replace(verdict_key=""), "refund", Action.ISOLATE, None,
                           60, "fraud", "alice")
    verify_verdict(sent.verdict, b"from-the-file")
    assert sent.partition == partition_for("refund", VERDICT_PARTITIONS)


def test_manual_verdict_refusals(settings: Settings) -> None:
    with pytest.raises(VerdictKeyError, match="no verdict key"):
        publish_verdict(settings.replace(verdict_key=""), "f", Action.ISOLATE, None, 60, "r")
    with pytest.raises(ControlError, match="--rps"):
        publish_verdict(settings, "f", Action.THROTTLE, None, 60, "r")
    with pytest.raises(ControlError, match="reason"):
        publish_verdict(settings, "f", Action.ISOLATE, None, 60, " ")
    with pytest.raises(ControlError, match="one function"):
        publish_verdict(settings, "team:x", Action.ISOLATE, None, 60, "r")


def _governor(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOVERNOR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "GOVERNOR_TOPIC_PREFIX": settings.topic_prefix,
           "GOVERNOR_DATA_DIR": str(settings.data_dir), "GOVERNOR_VERDICT_KEY": VERDICT_KEY,
           "GOVERNOR_ACTOR": "carol"}
    return subprocess.run([sys.executable, "-m", "streams", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_bad_key_exits_2_listing_valid_keys(settings: Settings) -> None:
    result = _governor(settings, "thresholds", "set", "checkout", "zscore=3")
    assert result.returncode == 2, result
    assert "unknown threshold key 'zscore'" in result.stderr
    assert all(key in result.stderr for key in REGISTRY)
    result = _governor(settings, "verdict", "throttle", "checkout", "--reason", "x")
    assert result.returncode == 2 and "--rps" in result.stderr


def test_cli_set_show_undo_and_verdict(settings: Settings) -> None:
    result = _governor(settings, "thresholds", "set", "checkout", "zscore_threshold=8",
                       "--reason", "noisy")
    assert result.returncode == 0, result.stderr
    assert "by carol: noisy" in result.stdout
    assert "zscore_threshold" in result.stdout and "8.0" in result.stdout

    result = _governor(settings, "thresholds", "show", "checkout")
    assert result.returncode == 0, result.stderr
    in_force = result.stdout.split("in force for checkout")[1]
    assert any(line.split()[:3] == ["zscore_threshold", "8.0", "checkout"]
               for line in in_force.splitlines())
    assert any(line.split()[:3] == ["min_ratio", "2.0", "default"]
               for line in in_force.splitlines())

    result = _governor(settings, "thresholds", "undo")
    assert result.returncode == 0, result.stderr
    assert "undoing" in result.stdout
    assert read_control(settings).scopes() == {}

    result = _governor(settings, "verdict", "isolate", "checkout", "--for", "10m",
                       "--reason", "runaway")
    assert result.returncode == 2, result  # no cost event of checkout in this history
    assert "checkout has never been seen" in result.stderr and "--force" in result.stderr
    result = _governor(settings, "verdict", "isolate", "checkout", "--for", "10m",
                       "--reason", "runaway", "--force")
    assert result.returncode == 0, result.stderr
    assert "checkout has never been seen" in result.stderr  # warned all the same
    assert "ISOLATE checkout for 10m" in result.stdout and "operator:carol" in result.stdout
    assert "sequence " in result.stdout


def _cost_event(settings: Settings, function: str, team: str) -> None:
    """One cost event of ``function`` in the history of ``settings`` (another process:
    chDB opens one data directory per process)."""
    code = ("import sys\n"
            "from schemas import CostEvent\n"
            "from streams.storage.clickhouse import ClickHouseSink, connect, migrate\n"
            "client = connect(sys.argv[1])\nmigrate(client)\n"
            "ClickHouseSink(client).write([CostEvent(function=sys.argv[2], team=sys.argv[3], "
            "invocation_id='1')])\n")
    subprocess.run([sys.executable, "-c", code, settings.clickhouse_dsn, function, team],
                   check=True, timeout=60)


def test_cli_takes_the_team_from_the_history_and_guards_unknown_functions(
        settings: Settings) -> None:
    result = _governor(settings, "thresholds", "set", "team:payments", "min_ratio=4")
    assert result.returncode == 0, result.stderr
    result = _governor(settings, "thresholds", "show", "checkout")
    assert result.returncode == 0, result.stderr
    assert "in force for checkout (team unknown: no cost event of checkout in the history; " \
        "give --team)" in result.stdout
    assert any(line.split()[:3] == ["min_ratio", "2.0", "default"]
               for line in result.stdout.splitlines())

    _cost_event(settings, "checkout", "payments")
    result = _governor(settings, "thresholds", "show", "checkout")
    assert result.returncode == 0, result.stderr
    assert re.search(r"in force for checkout \(team payments, from its latest cost event "
                     r"\(\d{4}-\d\d-\d\dT[\d:.]+Z\); --team overrides\)", result.stdout)
    assert any(line.split()[:3] == ["min_ratio", "4.0", "team:payments"]
               for line in result.stdout.splitlines())
    result = _governor(settings, "thresholds", "show", "checkout", "--team", "search")
    assert "in force for checkout (team search, from --team)" in result.stdout
    assert any(line.split()[:3] == ["min_ratio", "2.0", "default"]
               for line in result.stdout.splitlines())

    result = _governor(settings, "verdict", "throttle", "checkout", "--rps", "2",
                       "--reason", "retry storm")
    assert result.returncode == 0 and "never been seen" not in result.stderr, result
    result = _governor(settings, "verdict", "throttle", "checkuot", "--rps", "2",
                       "--reason", "retry storm")
    assert result.returncode == 2 and "checkuot has never been seen" in result.stderr


def test_follower_applies_history_then_live_updates(settings: Settings) -> None:
    set_thresholds(settings, "*", {"min_ratio": 3}, "a", "")
    seen: list[ControlUpdate] = []
    follower = ControlFollower(settings.kafka_bootstrap, settings, VERDICT_KEY.encode(),
                               on_update=lambda update, problems: seen.append(update)).start()
    try:
        assert follower.wait_synced(20)
        assert follower.thresholds.values("*") == {"min_ratio": 3.0}
        set_thresholds(settings, "team:payments", {"zscore_threshold": 4}, "a", "")
        wait_for(lambda: follower.thresholds.effective("checkout", "payments")
                 ["zscore_threshold"] == 4.0, timeout_s=15)
        set_thresholds(settings, "*", {"min_ratio": None}, "a", "")
        wait_for(lambda: follower.thresholds.values("*") == {}, timeout_s=15)
        assert [u.function for u in seen] == ["*", "team:payments", "*"]
    finally:
        follower.stop()


def test_follower_on_an_empty_topic_is_synced(settings: Settings) -> None:
    follower = ControlFollower(settings.kafka_bootstrap, settings, VERDICT_KEY.encode()).start()
    try:
        assert follower.wait_synced(20)
        assert follower.thresholds.scopes() == {}
    finally:
        follower.stop()
