"""Topics and reading them whole, without a group: for the dev broker, the demo, the changelog,
tests and debugging. Production topics are usually made by their owners."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from driftwarden.daemon.io.kafka.names import partition_name
from driftwarden.daemon.io.kafka.settings import connect
from kafka import KafkaConsumer, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient


def ensure_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    **settings: Any,
) -> None:
    """Create the topics that do not exist yet (replication factor: the broker's default), with
    ``configs[topic]`` as their topic configs (e.g. ``{"cleanup.policy": "compact"}``).

    For the dev broker, the demo and tests; production topics are usually made by their owners.
    """
    admin = connect("admin client", bootstrap, lambda: KafkaAdminClient(bootstrap_servers=bootstrap, **settings))
    try:
        existing = set(admin.list_topics())
        missing = {name: n for name, n in partitions.items() if name not in existing}
        if missing:
            try:
                admin.create_topics(
                    {
                        name: {"num_partitions": n, "configs": dict((configs or {}).get(name, {}))}
                        for name, n in missing.items()
                    },
                    wait_for_metadata=True,
                )
            except kafka_errors.TopicAlreadyExistsError:
                pass  # another process created it meanwhile
    finally:
        admin.close()


@dataclass(frozen=True, slots=True)
class Message:
    """A message as :func:`read_messages` returns it, headers included."""

    partition: str
    offset: int
    value: bytes | None
    key: bytes | None
    headers: dict[str, str]
    ts: float | None


def read_messages(bootstrap: str, topic: str, *, timeout: float = 10.0, **settings: Any) -> list[Message]:
    """Every message in ``topic`` now, from the beginning, without joining a group.

    For tests, the CLI and debugging (decisions, alerts, the dead-letter topic); raises
    :class:`TimeoutError` if the topic's current end is not reached within ``timeout`` s.
    """
    consumer = connect(
        "reader",
        bootstrap,
        lambda: KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **settings),
    )
    try:
        numbers = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, n) for n in sorted(numbers)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(out)} messages of {topic}, not its end, in {timeout} s")
            for tp, msgs in consumer.poll(timeout_ms=200).items():
                name = partition_name(tp.topic, tp.partition)
                out.extend(
                    Message(
                        name,
                        m.offset,
                        m.value,
                        m.key,
                        {k: (v or b"").decode("utf-8", "replace") for k, v in m.headers or ()},
                        m.timestamp / 1000.0 if m.timestamp >= 0 else None,
                    )
                    for m in msgs
                    if m.offset < end[tp]
                )
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close(autocommit=False)


def partition_count(bootstrap: str, topic: str, *, timeout: float = 10.0, **settings: Any) -> int:
    """How many partitions ``topic`` has (0 when it does not exist within ``timeout`` s)."""
    consumer = connect("reader", bootstrap, lambda: KafkaConsumer(bootstrap_servers=bootstrap, **settings))
    try:
        deadline = time.monotonic() + timeout
        while True:
            numbers = consumer.partitions_for_topic(topic)
            if numbers or time.monotonic() > deadline:
                return len(numbers or ())
            time.sleep(0.1)
    finally:
        consumer.close(autocommit=False)
