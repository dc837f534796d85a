"""Record keys partition exactly as Kafka's default partitioner does."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.keys import murmur2, partition_for
from streams.errors import StateKeyError, VerdictKeyError
from streams.keys import KEY_FILE, STATE_KEY_FILE, load_state_key, load_verdict_key
from streams.settings import Settings

KAFKA_VECTORS = [
    # From the Java client's UtilsTest.testMurmur2.
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def java_murmur2(data: bytes) -> int:
    """A line-by-line port of ``org.apache.kafka.common.utils.Utils.murmur2``.

    Java ints wrap at 32 bits and ``>>>`` is an unsigned shift; both are spelled out.
    """
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = _int32(0x9747B28C ^ length)
    for i in range(length // 4):
        i4 = i * 4
        k = _int32(data[i4] + (data[i4 + 1] << 8) + (data[i4 + 2] << 16) + (data[i4 + 3] << 24))
        k = _int32(k * m)
        k ^= (k & 0xFFFFFFFF) >> r
        k = _int32(k * m)
        h = _int32(h * m)
        h = _int32(h ^ k)
    rest = length % 4
    base = length & ~3
    if rest == 3:
        h = _int32(h ^ (data[base + 2] << 16))
    if rest >= 2:
        h = _int32(h ^ (data[base + 1] << 8))
    if rest >= 1:
        h = _int32(h ^ data[base])
        h = _int32(h * m)
    h = _int32(h ^ ((h & 0xFFFFFFFF) >> 13))
    h = _int32(h * m)
    h = _int32(h ^ ((h & 0xFFFFFFFF) >> 15))
    return h


@pytest.mark.parametrize(
    ("data", "expected"), KAFKA_VECTORS, ids=[d.decode() for d, _ in KAFKA_VECTORS]
)
def test_murmur2_matches_kafka_java_client(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected
    assert java_murmur2(data) == expected


def test_murmur2_of_empty_input() -> None:
    assert murmur2(b"") == java_murmur2(b"")


@given(data=st.binary(max_size=64))
def test_murmur2_matches_the_java_port_for_every_tail_length(data: bytes) -> None:
    value = murmur2(data)
    assert -(2**31) <= value < 2**31
    assert value == java_murmur2(data)


@given(data=st.binary(max_size=64))
def test_murmur2_matches_aiokafka(data: bytes) -> None:
    partitioner = pytest.importorskip("aiokafka.partitioner")
    assert murmur2(data) & 0xFFFFFFFF == partitioner.murmur2(data)


@given(function=st.text(max_size=300), partitions=st.integers(min_value=1, max_value=10_000))
def test_partition_for_is_in_range_stable_and_kafkas(function: str, partitions: int) -> None:
    partition = partition_for(function, partitions)
    assert 0 <= partition < partitions
    assert partition_for(function, partitions) == partition
    assert partition == (murmur2(function.encode()) & 0x7FFFFFFF) % partitions
    assert partition == (java_murmur2(function.encode("utf-8")) & 0x7FFFFFFF) % partitions


def test_partition_for_known_keys() -> None:
    # toPositive(murmur2(key)) % n, as in Kafka's BuiltInPartitioner.
    assert partition_for("21", 1) == 0
    assert partition_for("foobar", 6) == (-790332482 & 0x7FFFFFFF) % 6
    assert partition_for("abc", 12) == 479470107 % 12
    assert partition_for("checkout", 6) == partition_for("checkout", 6)


def test_partition_for_non_ascii_key_uses_utf8() -> None:
    assert partition_for("façade", 7) == (murmur2("façade".encode()) & 0x7FFFFFFF) % 7


@pytest.mark.parametrize("key", ["change-me-in-production", "secret", "short-but-random-9f3"])
def test_a_placeholder_or_short_verdict_key_is_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(VerdictKeyError, match="GOVERNOR_VERDICT_KEY is"):
        load_verdict_key(Settings(verdict_key=key, data_dir=tmp_path))
    strong = "9f3c" * 8
    assert load_verdict_key(Settings(verdict_key=strong, data_dir=tmp_path)) == strong.encode()


STRONG = "5ad1" * 16


def test_a_worker_needs_a_state_key_of_its_own(tmp_path: Path) -> None:
    with pytest.raises(StateKeyError, match="no state key: set GOVERNOR_STATE_KEY"):
        load_state_key(Settings(data_dir=tmp_path))
    assert load_state_key(Settings(state_key=STRONG, data_dir=tmp_path)) == STRONG.encode()
    with pytest.raises(StateKeyError, match="is the verdict key"):
        load_state_key(Settings(state_key=STRONG, verdict_key=STRONG, data_dir=tmp_path))
    (tmp_path / KEY_FILE).write_text(STRONG)  # the embedded stack's verdict key file
    with pytest.raises(StateKeyError, match="is the verdict key"):
        load_state_key(Settings(state_key=STRONG, data_dir=tmp_path))
    (tmp_path / KEY_FILE).unlink()
    with pytest.raises(StateKeyError, match="is a telemetry key"):
        load_state_key(Settings(state_key=STRONG, telemetry_key=f"a:{'0' * 32},b:{STRONG}",
                                data_dir=tmp_path))


@pytest.mark.parametrize("key", ["change-me-in-production", "secret", "short-but-random-9f3"])
def test_a_placeholder_or_short_state_key_is_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(StateKeyError, match="GOVERNOR_STATE_KEY is"):
        load_state_key(Settings(state_key=key, data_dir=tmp_path))
    (tmp_path / STATE_KEY_FILE).write_text(key)
    with pytest.raises(StateKeyError, match=f"{STATE_KEY_FILE} is"):
        load_state_key(Settings(data_dir=tmp_path))


def test_the_embedded_stack_makes_a_state_key_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    made = load_state_key(settings, create=True)
    assert len(made) == 64 and made != load_verdict_key(settings, create=True)
    assert load_state_key(settings) == made == load_state_key(settings, create=True)
    assert (settings.data_dir / STATE_KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_functions_never_get_the_state_key() -> None:
    """No agent module reads it, and an agent's settings keep nothing of it even when
    a function's environment has it."""
    import dataclasses

    import agents
    from agents._settings import AgentSettings

    sources = Path(agents.__file__).parent.rglob("*.py")
    for source in sources:
        text = source.read_text().lower()
        assert "state_key" not in text and "state.key" not in text, source
    secret = "f00d" * 16
    settings = AgentSettings.from_env({"GOVERNOR_STATE_KEY": secret,
                                       "GOVERNOR_VERDICT_KEY": "ed25519-pub:k:AAAA"})
    assert secret not in repr(dataclasses.asdict(settings))
