"""The embedded stack's journal: the records of the topics that must outlive the
in-memory broker, in a SQLite file under the data dir.

Compacted topics keep the latest record per key (a tombstone drops the key), as
Kafka's compaction would; the others keep every record once. Adding what is already
there changes nothing, so a topic can be copied in again from its beginning.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    identity BLOB NOT NULL,
    key BLOB,
    value BLOB,
    headers BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    UNIQUE (topic, identity)
)
"""


class Record(NamedTuple):
    """One Kafka record as the journal keeps it."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int

    def identity(self, compacted: bool) -> bytes:
        """What makes two records one: the key on a compacted topic, else everything."""
        if compacted and self.key is not None:
            return b"k" + self.key
        digest = hashlib.sha256(orjson.dumps(
            [self.partition, _hex(self.key), _hex(self.value),
             [[name, _hex(v)] for name, v in self.headers], self.timestamp_ms]))
        return b"r" + digest.digest()


class Journal:
    """A SQLite journal of records; one connection, used from one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")  # a killed writer loses no commit
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    def add(self, records: Iterable[Record], compacted: frozenset[str]) -> None:
        """Keep ``records`` (in their order); topics in ``compacted`` keep the latest
        per key."""
        with self._db:
            for r in records:
                is_compacted = r.topic in compacted
                identity = r.identity(is_compacted)
                if is_compacted and r.value is None:
                    self._db.execute("DELETE FROM records WHERE topic = ? AND identity = ?",
                                     (r.topic, identity))
                    continue
                verb = "INSERT OR REPLACE" if is_compacted else "INSERT OR IGNORE"
                self._db.execute(
                    f"{verb} INTO records (topic, partition, identity, key, value, headers, "
                    "timestamp_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (r.topic, r.partition, identity, r.key, r.value,
                     orjson.dumps([[name, _hex(v)] for name, v in r.headers]), r.timestamp_ms))

    def records(self) -> Iterator[Record]:
        """Every record kept, in the order they were (last) added."""
        rows = self._db.execute("SELECT topic, partition, key, value, headers, timestamp_ms "
                                "FROM records ORDER BY seq")
        for topic, partition, key, value, headers, timestamp_ms in rows:
            yield Record(topic, partition, key, value,
                         tuple((name, None if v is None else bytes.fromhex(v))
                               for name, v in orjson.loads(headers)), timestamp_ms)

    def close(self) -> None:
        self._db.close()


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()
