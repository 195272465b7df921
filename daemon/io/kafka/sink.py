"""The Kafka sink: raw bytes to one topic (JSON decisions and alerts, dead letters with the
reason in the headers, ``model-updated`` events), delivered before a checkpoint goes on.

Settings are kafka-python ``KafkaProducer`` settings, passed through, except the serializers and
the bootstrap address, which the sink sets itself (:mod:`driftwarden.daemon.io.kafka.settings`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from driftwarden.daemon.io.kafka.settings import BOOTSTRAP_TIMEOUT_S, CLOSE_TIMEOUT_S, check_settings, connect
from kafka import KafkaProducer
from kafka import errors as kafka_errors

# flush() waits for every outstanding delivery; a healthy broker acknowledges within a second.
FLUSH_TIMEOUT_S = 30.0

# Settings that KafkaSink sets itself: the bytes-out contract and the constructor's own argument.
_SINK_OWNED = frozenset({"bootstrap_servers", "key_serializer", "value_serializer"})


class SinkError(RuntimeError):
    """Messages sent to a :class:`KafkaSink` were not delivered."""


class KafkaSink:
    """Sends raw bytes to one topic. Deliveries are asynchronous; :meth:`flush` waits for them
    and raises :class:`SinkError` if any failed, so a checkpoint never gets ahead of its output.

    ``settings`` are kafka-python ``KafkaProducer`` settings, passed through (its defaults are
    ``acks="all"`` and an idempotent producer).
    """

    def __init__(self, bootstrap: str, topic: str, **settings: Any) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        config = check_settings(settings, _SINK_OWNED, "KafkaSink")
        config.setdefault("bootstrap_timeout_ms", int(BOOTSTRAP_TIMEOUT_S * 1000))
        self._errors: list[BaseException] = []
        self._errors_lock = threading.Lock()
        self._pending = 0
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
            future = self._producer.send(self.topic, value=value, key=key, headers=encoded, partition=partition)
        except kafka_errors.KafkaError as e:
            raise SinkError(f"cannot send to {self.topic}: {e}") from e
        with self._errors_lock:
            self._pending += 1
        future.add_callback(self._delivered)
        future.add_errback(self._failed)
        return future

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Wait until every queued message is acknowledged; raise :class:`SinkError` otherwise."""
        try:
            self._producer.flush(timeout=timeout)
        except kafka_errors.KafkaTimeoutError as e:
            raise SinkError(f"messages to {self.topic} not acknowledged within {timeout} s: {e}") from e
        with self._errors_lock:
            errors, self._errors = self._errors, []
        if errors:
            raise SinkError(f"{len(errors)} message(s) to {self.topic} not delivered; first: {errors[0]!r}")

    @property
    def pending(self) -> int:
        """Messages sent but not yet acknowledged (or failed): what backpressure watches."""
        return self._pending

    def close(self) -> None:
        self._producer.close(timeout=CLOSE_TIMEOUT_S)

    def _delivered(self, _metadata: Any) -> None:
        with self._errors_lock:
            self._pending -= 1

    def _failed(self, exc: BaseException) -> None:
        with self._errors_lock:
            self._pending -= 1
            self._errors.append(exc)
