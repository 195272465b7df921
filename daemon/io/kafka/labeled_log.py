"""The labeled-data log: every joined labeled row a daemon buffers, also in a Kafka topic, so the
next owner of a task rebuilds the training window (daemon/partitions.py).

One message per labeled-buffer document (the rows one pipeline call joined, as the segment files
hold them: :mod:`driftwarden.daemon.state.labeled_buffer`), key = the model, sent to the
partition of the model's task (the input topics' partition number), header ``owner`` = the
daemon that wrote it. The topic deletes by time (``retention.ms``) and optionally by size
(``retention.bytes`` per partition), never compacts: it must keep a model's newest
``data.last`` rows, so its retention is the longest time a model takes to label that many.

Which messages count is a list of **ranges** per task, ``[first offset, end offset, owner]``:
an owner extends its range with each checkpoint's flushed messages, and the list travels with
the task's snapshot (changelog and local store). Messages outside every range, or inside one
but from another owner, were sent by a daemon that crashed (or was expelled) before its
checkpoint: their rows are replayed by the next owner, which writes them again, so they are
skipped — a rebuilt window holds each checkpointed row once.

This module moves bytes only; parsing rows is the labeled buffer's (``LabeledBuffer.adopt``).

>>> ranges = []
>>> extend(ranges, "a", 0, 10); extend(ranges, "a", 10, 15); extend(ranges, "b", 21, 30); ranges
[[0, 15, 'a'], [21, 30, 'b']]
>>> counted(ranges, 12, "a"), counted(ranges, 17, "a"), counted(ranges, 25, "a"), counted(ranges, 25, "b")
(True, False, False, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from driftwarden.daemon.io.kafka.admin import ensure_topics, partition_count
from driftwarden.daemon.io.kafka.outage import Waiter
from driftwarden.daemon.io.kafka.settings import connect, shared_settings
from driftwarden.daemon.io.kafka.sink import KafkaSink, SinkError
from kafka import KafkaConsumer, TopicPartition

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest message: one pipeline call's joined rows (a batch of thousands of rows with tens of
features is a few MB of JSON, gzip-compressed in the topic)."""

READ_BUDGET_BYTES = 64 * 1024 * 1024
"""Documents held at once while a task's log is read on assign: past this, each model's are handed on
(written as a segment of its buffer) before more are read, so an assign's memory does not grow with the
topic's retention."""

READ_TIMEOUT_S = 60.0
"""Reading one task's retained rows on assign (a few hundred MB at most at these sizes)."""

NEVER_EXPIRES_MS = 2**31 - 1
"""kafka-python's delivery timeout for the log's messages (~25 days, the broker protocol's int32 bound):
a delivery does not expire while an outage is waited out (see :class:`LabeledLog`)."""

OWNER_HEADER = "owner"

Range = list[Any]
"""``[first offset, end offset (exclusive), owner]``."""


def extend(ranges: list[Range], owner: str, first: int, end: int) -> None:
    """Count offsets ``first`` to ``end`` (exclusive) written by ``owner``: the last range grows
    when it is ``owner``'s, else a new one starts."""
    if ranges and ranges[-1][2] == owner and ranges[-1][1] <= first:
        ranges[-1][1] = end
    else:
        ranges.append([first, end, owner])


def counted(ranges: Sequence[Range], offset: int, owner: str | None) -> bool:
    """Whether the message at ``offset`` from ``owner`` belongs to the log (see the module docstring)."""
    return any(lo <= offset < hi and who == owner for lo, hi, who in ranges)


class LabeledLog:
    """The topic ``topic`` (created, when missing, with the partition count of ``like``, the first
    input topic), written by ``owner``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        client: Mapping[str, Any],
        *,
        owner: str,
        like: str,
        retention_ms: int,
        retention_bytes: int | None = None,
        waiter: Waiter | None = None,
    ) -> None:
        """``waiter``: a :class:`~driftwarden.daemon.io.kafka.outage.Waiter`, so that a flush waits a broker
        outage out (None: a flush gives up after ``FLUSH_TIMEOUT_S``)."""
        self.bootstrap, self.topic, self.owner = bootstrap, topic, owner
        self._client = shared_settings(client)
        configs = {
            "cleanup.policy": "delete",
            "retention.ms": str(retention_ms),
            "max.message.bytes": str(MAX_MESSAGE_BYTES),
        }
        if retention_bytes is not None:
            configs["retention.bytes"] = str(retention_bytes)
        partitions = max(partition_count(bootstrap, like, **self._client), 1)
        ensure_topics(bootstrap, {topic: partitions}, configs={topic: configs}, **self._client)
        have = partition_count(bootstrap, topic, **self._client)
        if have < partitions:  # made by hand beforehand: a task would have no partition to go to
            raise ValueError(
                f"labeled_topic {topic!r} has {have} partitions, fewer than {like!r} ({partitions}): "
                "give it as many as the input topics"
            )
        # Idempotent, and no delivery ever expires: while an outage is waited out (``waiter``) the producer
        # retries the same batches, which the broker keeps once each, so the acknowledged offsets (the
        # ranges) hold every row once. (A delivery that expired would be sent again as a new message: a row
        # twice inside a range; and kafka-python 3's idempotent producer sends nothing after an expiry.)
        self._sink = KafkaSink(
            bootstrap,
            topic,
            waiter=waiter,
            compression_type="gzip",
            max_request_size=MAX_MESSAGE_BYTES,
            **{"enable_idempotence": True, "delivery_timeout_ms": NEVER_EXPIRES_MS, **self._client},
        )
        self._sent: dict[int, list[Any]] = {}
        """task → the futures of the messages sent since the last :meth:`flush`."""

    def send(self, task: int, model: str, docs: Sequence[bytes]) -> None:
        """Queue ``docs`` (labeled-buffer documents of ``model``) to ``task``'s partition."""
        futures = self._sent.setdefault(task, [])
        key = model.encode()
        for doc in docs:
            futures.append(self._sink.send(doc, key=key, headers={OWNER_HEADER: self.owner}, partition=task))

    def flush(self, ranges: Mapping[int, list[Range]]) -> None:
        """Wait for the queued messages (with a waiter, through a broker outage), then count them in
        ``ranges[task]`` (extended in place). Raises :class:`~driftwarden.daemon.io.kafka.sink.SinkError` when
        one was not delivered (nothing is counted: the checkpoint is not written, its rows are replayed)."""
        self._sink.flush()
        sent, self._sent = self._sent, {}
        lost = [f for futures in sent.values() for f in futures if not f.succeeded()]
        if lost:  # sent again by the sink after a failure: a new message, whose offset is not this one's
            raise SinkError(
                f"{len(lost)} labeled-data message(s) to {self.topic} not delivered once: {lost[0].exception!r}"
            )
        for task, futures in sent.items():
            if futures:
                offsets = [f.value.offset for f in futures]
                extend(ranges[task], self.owner, min(offsets), max(offsets) + 1)

    def read(self, task: int, ranges: Sequence[Range], models: Collection[str]) -> dict[str, list[bytes]]:
        """``models``' documents counted in ``task``'s ``ranges``, oldest first, all at once (see :meth:`read_into`)."""
        out: dict[str, list[bytes]] = {}
        self.read_into(task, ranges, models, lambda model, docs: out.setdefault(model, []).extend(docs), budget=None)
        return out

    def read_into(
        self,
        task: int,
        ranges: Sequence[Range],
        models: Collection[str],
        adopt: Callable[[str, list[bytes]], object],
        budget: int | None = READ_BUDGET_BYTES,
    ) -> dict[str, int]:
        """Hand ``models``' documents counted in ``task``'s ``ranges`` to ``adopt(model, docs)``, oldest first,
        whenever those held reach more than ``budget`` bytes (None: once, at the end), and the rest at the end;
        returns the documents read per model. Ranges whose messages the topic's retention deleted are removed
        from ``ranges`` (a list, edited)."""
        if not ranges:
            return {}
        tp = TopicPartition(self.topic, task)
        consumer = connect(
            "labeled-log reader",
            self.bootstrap,
            lambda: KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                fetch_max_bytes=MAX_MESSAGE_BYTES,
                **self._client,
            ),
        )
        held: dict[str, list[bytes]] = {}
        size = 0
        count: dict[str, int] = {}
        wanted = {m.encode() for m in models}

        def hand_on() -> None:
            nonlocal held, size
            for model, docs in held.items():
                adopt(model, docs)
            held, size = {}, 0

        try:
            consumer.assign([tp])
            begin = consumer.beginning_offsets([tp])[tp]
            if isinstance(ranges, list):
                ranges[:] = [r for r in ranges if r[1] > begin]
            if not ranges:
                return {}
            start, end = max(begin, min(r[0] for r in ranges)), max(r[1] for r in ranges)
            consumer.seek(tp, start)
            deadline = time.monotonic() + READ_TIMEOUT_S
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.topic}:{task}: offsets {start}-{end} not read in {READ_TIMEOUT_S} s")
                for message in consumer.poll(timeout_ms=200).get(tp, []):
                    if message.key not in wanted or message.value is None:
                        continue
                    owner = dict(message.headers or ()).get(OWNER_HEADER)
                    if counted(ranges, message.offset, owner.decode() if owner is not None else None):
                        model = message.key.decode()
                        held.setdefault(model, []).append(message.value)
                        count[model] = count.get(model, 0) + 1
                        size += len(message.value)
                        if budget is not None and size > budget:
                            hand_on()
        finally:
            consumer.close(autocommit=False)
        hand_on()
        return count

    def close(self) -> None:
        self._sink.close()
