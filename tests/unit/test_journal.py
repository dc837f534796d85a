"""The embedded stack's journal keeps what Kafka's compaction would keep, once."""

from __future__ import annotations

from pathlib import Path

from streams.ops.durable import durable_topics
from streams.ops.journal import Journal, Record

COMPACTED = frozenset({"g.control"})


def _record(topic: str, key: bytes | None, value: bytes | None, t: int = 1,
            partition: int = 0) -> Record:
    return Record(topic, partition, key, value, (("h", b"\x00\xff"), ("empty", None)), t)


def test_compacted_topics_keep_the_latest_per_key_and_tombstones_drop_it(
        tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.add([_record("g.control", b"a", b"1"), _record("g.control", b"b", b"1"),
                 _record("g.control", b"a", b"2", t=2), _record("g.control", b"c", b"1")],
                COMPACTED)
    journal.add([_record("g.control", b"c", None)], COMPACTED)
    assert [(r.key, r.value) for r in journal.records()] == [(b"b", b"1"), (b"a", b"2")]


def test_other_topics_keep_every_record_once_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    audit = [_record("g.audit", b"s", b"x", t=1), _record("g.audit", b"s", b"x", t=2),
             _record("g.audit", None, b"y", t=3, partition=1)]
    journal.add(audit, COMPACTED)
    journal.add(audit, COMPACTED)  # copied again from the topic's beginning: no change
    assert list(journal.records()) == audit


def test_what_was_added_is_there_after_reopening(tmp_path: Path) -> None:
    first = Journal(tmp_path / "j.sqlite")
    first.add([_record("g.control", b"a", b"1")], COMPACTED)
    first.close()
    assert [r.value for r in Journal(tmp_path / "j.sqlite").records()] == [b"1"]


def test_the_durable_topics_are_the_state_operators_and_agents_rely_on() -> None:
    assert durable_topics("g") == {"g.verdicts": True, "g.control": True, "g.state": True,
                                   "g.feedback": False, "g.audit": False}
