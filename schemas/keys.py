"""Record keys and partitioning shared by producers and the agents' verdict follower.

Keys are the function name (UTF-8). Partitions follow Kafka's default partitioner
(murmur2, as in the Java client, aiokafka and librdkafka's ``murmur2_random``), so an
agent can compute which verdict partition carries its function without a consumer
group.

>>> partition_for("checkout", 6) == partition_for("checkout", 6)
True
"""

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as a signed 32-bit integer."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[end + 2] << 16
    if tail >= 2:
        h ^= data[end + 1] << 8
    if tail >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(function: str, partitions: int) -> int:
    """Partition of the record keyed by ``function`` in a topic of ``partitions``."""
    return (murmur2(function.encode()) & 0x7FFFFFFF) % partitions
