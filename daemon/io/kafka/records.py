"""Kafka record batches straight into :class:`~driftwarden.daemon.io.sources.Record`\\ s: the source's fetch path.

kafka-python turns every fetched record into a ``DefaultRecord`` (a Python call per varint, seven
per record), then a 13-field ``ConsumerRecord`` (deserializers, header sizes), and the source then
made a ``Record`` of that: ~10 µs of Python per message, more than the daemon's decoding of it.
:func:`parse_batch` reads a message-format-v2 batch's records in one loop over its bytes (one-byte
varints inline) into ``Record``\\ s, and :func:`install` makes a consumer's fetcher do that: its
``poll`` then returns ``Record``\\ s. Everything else of the fetch (CRC check of the batch,
decompression, transaction markers and aborted batches, positions, the old message formats) is
kafka-python's own code, unchanged.

>>> from kafka.record.memory_records import MemoryRecordsBuilder
>>> builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20, offset=40)
>>> for i in range(3):
...     _ = builder.append(timestamp=1_700_000_000_000 + i, key=b"k%d" % i, value=b'{"n": %d}' % i, headers=[])
>>> _ = builder.append(timestamp=1_700_000_000_500, key=None, value=b"{}", headers=[("h", b"v")])
>>> builder.close()
>>> from kafka.record.default_records import DefaultRecordBatch
>>> batch = DefaultRecordBatch(builder.buffer())
>>> [(r.offset, r.value, r.key, r.ts) for r in parse_batch(batch, "kafka:t:0")]  # doctest: +NORMALIZE_WHITESPACE
[(40, b'{"n": 0}', b'k0', 1700000000.0), (41, b'{"n": 1}', b'k1', 1700000000.001),
 (42, b'{"n": 2}', b'k2', 1700000000.002), (43, b'{}', None, 1700000000.5)]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

from driftwarden.daemon.io.sources import Record
from kafka import errors as kafka_errors
from kafka.consumer.fetcher import Fetcher, IsolationLevel
from kafka.record.default_records import DefaultRecordBatch


def _unsigned(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` of ``buf`` before its zigzag decoding: (value, next position).

    >>> _unsigned(bytes([0x01]), 0), _unsigned(bytes([0xF8, 0x05]), 0), _unsigned(bytes([0x80, 0x80, 0x01]), 0)
    ((1, 1), (760, 2), (16384, 3))
    """
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise ValueError("a varint out of the int64 range")


def parse_batch(batch: DefaultRecordBatch, partition: str) -> list[Record]:
    """The records of a v2 ``batch`` (its CRC already checked: reading decompresses it) as ``Record``\\ s of
    ``partition``: value, offset, timestamp in seconds (None when the broker has none), key. Headers are
    skipped (the daemon reads none). A record whose fields do not add up to its length raises
    ``CorruptRecordError``, as kafka-python's own reader does."""
    iter(batch)  # decompresses in place (kafka-python 3: pinned <4 in pyproject)
    buf = bytes(batch._buffer)
    pos = batch._pos
    base = batch.base_offset
    append_time = batch.timestamp_type == DefaultRecordBatch.LOG_APPEND_TIME
    first_ts = batch.max_timestamp if append_time else batch.first_timestamp
    out: list[Record] = []
    add = out.append
    size_of_buf = len(buf)
    try:
        for _ in range(batch.records_count):
            # Length, Attributes (int8), TimestampDelta, OffsetDelta, Key, Value, Headers. Varints of one
            # and two bytes (all of a record of < 8 kB but its timestamp delta past 8 s) are read inline.
            b = buf[pos]
            if b < 0x80:
                length = b
                pos += 1
            elif (c := buf[pos + 1]) < 0x80:
                length = (b & 0x7F) | (c << 7)
                pos += 2
            else:
                length, pos = _unsigned(buf, pos)
            length = (length >> 1) ^ -(length & 1)
            end = pos + length
            pos += 1  # attributes
            b = buf[pos]
            if b < 0x80:
                ts_delta = b
                pos += 1
            elif (c := buf[pos + 1]) < 0x80:
                ts_delta = (b & 0x7F) | (c << 7)
                pos += 2
            else:
                ts_delta, pos = _unsigned(buf, pos)
            b = buf[pos]
            if b < 0x80:
                offset_delta = b
                pos += 1
            elif (c := buf[pos + 1]) < 0x80:
                offset_delta = (b & 0x7F) | (c << 7)
                pos += 2
            else:
                offset_delta, pos = _unsigned(buf, pos)
            offset = base + ((offset_delta >> 1) ^ -(offset_delta & 1))
            b = buf[pos]
            if b < 0x80:
                size = b
                pos += 1
            elif (c := buf[pos + 1]) < 0x80:
                size = (b & 0x7F) | (c << 7)
                pos += 2
            else:
                size, pos = _unsigned(buf, pos)
            if not size & 1:  # zigzag: odd is negative, -1 for no key
                size >>= 1
                key = buf[pos : pos + size]
                pos += size
            else:
                key = None
            b = buf[pos]
            if b < 0x80:
                size = b
                pos += 1
            elif (c := buf[pos + 1]) < 0x80:
                size = (b & 0x7F) | (c << 7)
                pos += 2
            else:
                size, pos = _unsigned(buf, pos)
            if not size & 1:
                size >>= 1
                value: Any = buf[pos : pos + size]
                pos += size
            else:  # a tombstone: None, as kafka-python gives it
                value = None
            if buf[pos] == 0:  # no headers
                pos += 1
            else:  # headers (the daemon reads none): the record's length says where the next one starts
                if buf[pos] & 1:
                    raise kafka_errors.CorruptRecordError(f"a negative header count at offset {offset}")
                pos = end
            if pos != end or pos > size_of_buf:
                raise kafka_errors.CorruptRecordError(f"a record of {length} bytes at offset {offset} does not add up")
            ts = first_ts if append_time else first_ts + ((ts_delta >> 1) ^ -(ts_delta & 1))
            add(Record(value, partition, offset, ts / 1000.0 if ts >= 0 else None, key))
    except (IndexError, ValueError) as e:
        raise kafka_errors.CorruptRecordError(f"a record batch of {partition} does not parse: {e!r}") from None
    if pos != len(buf):
        raise kafka_errors.CorruptRecordError(
            f"{size_of_buf - pos} bytes after the last record of a batch of {partition}"
        )
    return out


def install(fetcher: Fetcher, name: Callable[[Any], str]) -> None:
    """Make ``fetcher`` (a ``KafkaConsumer``'s) return ``Record``\\ s, with partition names ``name(tp)``."""
    base: Any = fetcher.PartitionRecords
    fetcher.PartitionRecords = _partition_records(base, name)  # type: ignore[method-assign]


def _partition_records(base: Any, name: Callable[[Any], str]) -> Any:
    class PartitionRecords(base):  # type: ignore[misc,valid-type]
        """kafka-python's unpacking of one fetched partition (fetcher.py, ``_unpack_records``, ``take``) a batch
        at a time: :func:`parse_batch` for v2 batches, ``Record``\\ s for the old formats, and ``take`` slices the
        batch's list (kafka-python passes every record through two iterators and sets the position per record)."""

        _ready: list[Record] = []
        _at = 0

        def _maybe_skip_record(self, batch: list[Record]) -> bool:
            return False  # the lists come without the records before the fetch offset

        def take(self, n: int | None = None) -> list[Record]:
            self._maybe_raise_next_inline_exception()
            out: list[Record] = []
            want = sys.maxsize if n is None else n
            try:
                while len(out) < want and self.record_iterator is not None:
                    if self._at >= len(self._ready):
                        self._ready, self._at = next(self.record_iterator, []), 0  # the end drains
                        continue
                    part = self._ready[self._at : self._at + want - len(out)]
                    self._at += len(part)
                    self.next_fetch_offset = part[-1].offset + 1
                    out += part
            except Exception as e:
                if not out:
                    raise
                self._next_inline_exception = e  # raised by the next take, as kafka-python does
            return out

        def _unpack_records(
            self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
        ) -> Iterator[list[Record]]:
            partition = name(tp)
            batch = records.next_batch()
            last = None
            while batch is not None:
                last = batch
                if self.check_crcs and not batch.validate_crc():
                    raise kafka_errors.CorruptRecordError(
                        f"Record batch for partition {tp} at offset {batch.base_offset} failed crc check"
                    )
                if batch.magic == 2:
                    self.leader_epoch = batch.leader_epoch
                    if self.isolation_level == IsolationLevel.READ_COMMITTED and batch.has_producer_id():
                        self._consume_aborted_transactions_up_to(batch.last_offset)
                        if self._contains_abort_marker(batch):
                            self.aborted_producer_ids.discard(batch.producer_id)
                        elif self._is_batch_aborted(batch):
                            self.next_fetch_offset = batch.next_offset
                            batch = records.next_batch()
                            continue
                    if batch.is_control_batch:
                        self.next_fetch_offset = batch.next_offset
                        batch = records.next_batch()
                        continue
                    parsed = parse_batch(batch, partition)
                    self.records_read += len(parsed)
                    self.bytes_read += batch.size_in_bytes
                else:  # message formats v0/v1 (brokers before 0.11): kafka-python's records, one CRC each
                    parsed = []
                    for record in batch:
                        if self.check_crcs and not record.validate_crc():
                            raise kafka_errors.CorruptRecordError(
                                f"Record for partition {tp} at offset {record.offset} failed crc check"
                            )
                        ts = record.timestamp
                        parsed.append(
                            Record(record.value, partition, record.offset, ts / 1000.0 if ts >= 0 else None, record.key)
                        )
                        self.records_read += 1
                        self.bytes_read += record.size_in_bytes
                if parsed and parsed[0].offset < self.fetch_offset:  # fetched from inside a batch
                    kept = [r for r in parsed if r.offset >= self.fetch_offset]
                    if not kept:
                        self.next_fetch_offset = parsed[-1].offset + 1
                    parsed = kept
                if parsed:
                    yield parsed
                batch = records.next_batch()
            if last is not None and last.magic == 2:
                self.next_fetch_offset = last.next_offset
            self.drain()

    return PartitionRecords
