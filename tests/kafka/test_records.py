"""The source's own reader of Kafka record batches (daemon/io/kafka/records.py) gives what kafka-python's gives."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from driftwarden.daemon.io.kafka.names import partition_name
from driftwarden.daemon.io.kafka.records import parse_batch
from driftwarden.daemon.io.kafka.source import KafkaSource
from driftwarden.daemon.io.sources import Record
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecordsBuilder

WAIT_S = 30.0
GZIP = 1


def _batch(rng: random.Random, compression: int, n: int) -> tuple[bytes, list[tuple[Any, ...]]]:
    """A v2 batch of ``n`` random records (keys and values of 0 B to 20 kB or none, headers, timestamps
    minutes apart: varints of one to three bytes) and what each record holds."""
    base_offset = rng.choice([0, 7, 123_456_789])
    builder = MemoryRecordsBuilder(magic=2, compression_type=compression, batch_size=1 << 24, offset=base_offset)
    ts = 1_700_000_000_000
    for _ in range(n):
        ts += rng.choice([0, 1, 70, 9_000, 200_000])
        key = None if rng.random() < 0.2 else rng.randbytes(rng.choice([0, 5, 100, 20_000]))
        value = None if rng.random() < 0.1 else rng.randbytes(rng.choice([0, 40, 380, 9_000, 20_000]))
        headers = [(f"h{j}", rng.randbytes(3)) for j in range(rng.choice([0, 0, 1, 3]))]
        builder.append(timestamp=ts, key=key, value=value, headers=headers)
    builder.close()
    data = bytes(builder.buffer())
    expected = [(r.offset, r.value, r.key, r.timestamp / 1000.0) for r in DefaultRecordBatch(data)]
    return data, expected


@pytest.mark.parametrize("compression", [0, GZIP])
def test_a_batch_parses_to_the_records_kafka_python_reads(compression: int) -> None:
    rng = random.Random(compression)
    for n in (1, 2, 64, 300):
        data, expected = _batch(rng, compression, n)
        records = parse_batch(DefaultRecordBatch(data), "kafka:t:4")
        assert [(r.offset, r.value, r.key, r.ts) for r in records] == expected
        assert {r.partition for r in records} == {"kafka:t:4"}


def test_a_record_whose_fields_do_not_add_up_is_a_corrupt_batch() -> None:
    data, _ = _batch(random.Random(1), 0, 3)
    body = bytearray(data)
    body[DefaultRecordBatch.HEADER_STRUCT.size] += 2  # the first record's length, one byte longer
    with pytest.raises(CorruptRecordError):
        parse_batch(DefaultRecordBatch(bytes(body)), "kafka:t:0")
    with pytest.raises(CorruptRecordError):  # cut short
        parse_batch(DefaultRecordBatch(data[:-10]), "kafka:t:0")


@pytest.mark.kafka
def test_the_source_reads_what_a_bare_consumer_reads(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    """Compressed and plain batches, keys and none, headers, tombstones, over two partitions: the source's
    records are a bare kafka-python consumer's, value, key, offset and time alike."""
    topic = kafka_topic(partitions=2)
    for compression in (None, "gzip"):
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, compression_type=compression, linger_ms=5)
        for i in range(300):
            producer.send(
                topic,
                value=None if i % 50 == 7 else b'{"i": %d}' % i * (1 + i % 40),
                key=None if i % 9 == 0 and i % 50 != 7 else b"k%d" % i,  # a tombstone needs a key
                headers=[("owner", b"x")] if i % 4 == 0 else [],
                partition=i % 2,
                timestamp_ms=1_700_000_000_000 + i * 1000,
            )
        producer.flush()
        producer.close()

    bare = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in (0, 1)]
    bare.assign(tps)
    bare.seek_to_beginning(*tps)
    expected: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + WAIT_S
    while len(expected) < 600 and time.monotonic() < deadline:
        for tp, msgs in bare.poll(timeout_ms=500).items():
            name = partition_name(tp.topic, tp.partition)
            expected += [(name, m.offset, m.value, m.key, m.timestamp / 1000.0) for m in msgs]
    bare.close()

    def read(want: int, max_records: int, seek: dict[str, int] | None = None) -> list[tuple[Any, ...]]:
        source = KafkaSource(kafka_bootstrap, [topic], f"records-{max_records}-{topic}")
        if seek:
            source.seek(seek)
        got: list[Record] = []
        deadline = time.monotonic() + WAIT_S
        try:
            while len(got) < want and time.monotonic() < deadline:
                got += source.poll(max_records, 0.5)
        finally:
            source.close()
        return sorted((r.partition, r.offset, r.value, r.key, r.ts) for r in got)

    assert len(expected) == 600
    assert read(600, 500) == sorted(expected)
    # Polls of 7 (a batch taken in slices) from inside the first batches: from there on, each record once.
    start = {partition_name(topic, 0): 5, partition_name(topic, 1): 13}
    assert read(600 - 18, 7, seek=start) == sorted(e for e in expected if e[1] >= start[e[0]])


@pytest.mark.kafka
def test_a_read_committed_source_skips_aborted_transactions_and_their_markers(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """Transaction markers (control batches) and aborted batches are kafka-python's logic, kept by the source's
    reader: with ``isolation_level: read_committed`` only the committed records come, at their offsets."""
    topic = kafka_topic(partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{topic}")
    producer.init_transactions()
    for i, commit in enumerate([True, False, True]):
        producer.begin_transaction()
        for j in range(5):
            producer.send(topic, value=b'{"t": %d, "j": %d}' % (i, j), key=b"k")
        producer.flush()  # in the log before the outcome: an aborted batch is there to skip
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    producer.close()

    source = KafkaSource(kafka_bootstrap, [topic], f"tx-{topic}", settings={"isolation_level": "read_committed"})
    got: list[Record] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(got) < 10 and time.monotonic() < deadline:
            got += source.poll(500, 0.5)
        got += source.poll(500, 1.0)  # nothing more: the aborted ones and the markers are not records
    finally:
        source.close()
    assert [r.value for r in got] == [b'{"t": %d, "j": %d}' % (i, j) for i in (0, 2) for j in range(5)]
    assert [r.offset for r in got] == [*range(0, 5), *range(12, 17)]  # a marker after each transaction
