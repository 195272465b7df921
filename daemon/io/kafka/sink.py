"""The Kafka sink: raw bytes to one topic (JSON decisions and alerts, dead letters with the
reason in the headers, ``model-updated`` events), delivered before a checkpoint goes on.

Settings are kafka-python ``KafkaProducer`` settings, passed through, except the serializers and
the bootstrap address, which the sink sets itself (:mod:`driftwarden.daemon.io.kafka.settings`).

A broker outage is waited out when the sink has a :class:`~driftwarden.daemon.io.kafka.outage.Waiter`
(the daemon gives every output one): :meth:`KafkaSink.flush` then tries until every message is acknowledged,
and sends again each message whose delivery failed (kafka-python gives one up after its
``delivery_timeout_ms``). Delivery is at least once — a message whose acknowledgement was lost can arrive
twice, so consumers deduplicate (decisions carry their idempotency key in a header) — and a message sent again
can arrive after newer ones. Nothing is lost: the checkpoint waits for the flush.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

from driftwarden.daemon.io.kafka.outage import Waiter, transient
from driftwarden.daemon.io.kafka.settings import (
    BOOTSTRAP_TIMEOUT_S,
    CLOSE_TIMEOUT_S,
    check_settings,
    connect,
)
from kafka import KafkaProducer
from kafka import errors as kafka_errors

# flush() waits for every outstanding delivery; a healthy broker acknowledges within a second.
FLUSH_TIMEOUT_S = 30.0

WAIT_SLICE_S = 5.0
"""With a waiter, one try of a flush: the waiter's backoff, its snapshot and its stop check come this often."""

# Settings that KafkaSink sets itself: the bytes-out contract and the constructor's own argument.
_SINK_OWNED = frozenset({"bootstrap_servers", "key_serializer", "value_serializer"})


class SinkError(RuntimeError):
    """Messages sent to a :class:`KafkaSink` were not delivered; ``cause`` is kafka-python's error."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class _Message(NamedTuple):
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]] | None
    partition: int | None


class KafkaSink:
    """Sends raw bytes to one topic. Deliveries are asynchronous; :meth:`flush` waits for them
    and raises :class:`SinkError` if any failed, so a checkpoint never gets ahead of its output.

    ``settings`` are kafka-python ``KafkaProducer`` settings, passed through; the sink's defaults are
    ``acks="all"`` and ``enable_idempotence=False`` (see ``__init__``: with idempotence on, an outage longer
    than ``delivery_timeout_ms`` is not waited out).
    """

    def __init__(self, bootstrap: str, topic: str, *, waiter: Waiter | None = None, **settings: Any) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.waiter = waiter
        """Waits outages out in :meth:`flush` (None: a flush gives up after its timeout)."""
        config = check_settings(settings, _SINK_OWNED, "KafkaSink")
        config.setdefault("bootstrap_timeout_ms", int(BOOTSTRAP_TIMEOUT_S * 1000))
        config.setdefault("acks", "all")
        # Not idempotent by default: kafka-python 3's idempotent producer sends nothing more, and lets nothing
        # sent later expire, once one of its deliveries expired (seen against a killed broker), so an outage
        # longer than delivery_timeout_ms could not be waited out. Delivery is at least once either way.
        config.setdefault("enable_idempotence", False)
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._unacked: dict[int, _Message] = {}
        self._failed: list[tuple[_Message, BaseException]] = []
        self._producer: KafkaProducer = connect(
            "KafkaSink", bootstrap, lambda: KafkaProducer(bootstrap_servers=bootstrap, **config)
        )

    def send(
        self,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        partition: int | None = None,
    ) -> Any:
        """Queue one message (to ``partition``, or the key's); ``headers`` values are sent UTF-8
        encoded. Returns kafka-python's future of the record's metadata (its ``value.offset`` once
        :meth:`flush` returned)."""
        encoded = [(k, v.encode()) for k, v in headers.items()] if headers else None
        try:
            return self._send(_Message(value, key, encoded, partition))
        except kafka_errors.KafkaError as e:
            raise SinkError(f"cannot send to {self.topic}: {e}", e) from e

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued message is acknowledged. Without a waiter, raise :class:`SinkError` when
        that takes longer than ``timeout`` (:data:`FLUSH_TIMEOUT_S`) or a delivery failed. With one, wait a
        broker outage out (see the module docstring): raise only for an error that is no outage, or when a
        stop is asked for meanwhile."""
        if timeout is None:
            timeout = FLUSH_TIMEOUT_S
        while True:
            error = self._try_flush(timeout if self.waiter is None else WAIT_SLICE_S)
            if error is None:
                if self.waiter is not None:
                    self.waiter.ok()
                return
            cause = error.cause if error.cause is not None else error
            if self.waiter is None or not transient(cause) or not self.waiter.pause(cause):
                with self._lock:
                    self._failed = []
                raise error
            self._recover()

    @property
    def pending(self) -> int:
        """Messages sent but not yet acknowledged (or failed): what backpressure watches."""
        return len(self._unacked)

    def close(self) -> None:
        self._producer.close(timeout=CLOSE_TIMEOUT_S)

    def _recover(self) -> None:
        """Send the failed messages again once none is in flight (those are delivered or expire first)."""
        with self._lock:
            if self._unacked or not self._failed:
                return
        self._send_failed_again()

    def _send(self, message: _Message) -> Any:
        future = self._producer.send(
            self.topic, value=message.value, key=message.key, headers=message.headers, partition=message.partition
        )
        n = next(self._ids)
        with self._lock:
            self._unacked[n] = message
        future.add_callback(partial(self._delivered, n))  # may run at once, in this thread: the lock is free
        future.add_errback(partial(self._undelivered, n))
        return future

    def _try_flush(self, timeout: float) -> SinkError | None:
        """One wait for the acknowledgements: None when every message is in, else what is wrong."""
        try:
            self._producer.flush(timeout=timeout)
        except kafka_errors.KafkaTimeoutError as e:
            return SinkError(f"messages to {self.topic} not acknowledged within {timeout:g} s: {e}", e)
        with self._lock:
            failed = list(self._failed)
        if failed:
            return SinkError(
                f"{len(failed)} message(s) to {self.topic} not delivered; first: {failed[0][1]!r}", failed[0][1]
            )
        return None

    def _send_failed_again(self) -> None:
        with self._lock:
            failed, self._failed = self._failed, []
        for i, (message, _) in enumerate(failed):
            try:
                self._send(message)
            except kafka_errors.KafkaError as e:  # the producer's buffer is full: the rest wait for the next try
                with self._lock:
                    self._failed += [(m, e) for m, _ in failed[i:]]
                return

    def _delivered(self, n: int, _metadata: Any) -> None:
        with self._lock:
            self._unacked.pop(n, None)

    def _undelivered(self, n: int, exc: BaseException) -> None:
        with self._lock:
            message = self._unacked.pop(n, None)
            if message is not None:
                self._failed.append((message, exc))
