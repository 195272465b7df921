"""Kafka partition names: ``kafka:<topic>:<partition>``, the stream ids that records, positions
and checkpoints use (other sources have their own prefixes, e.g. ``file:``)."""

from __future__ import annotations

PARTITION_PREFIX = "kafka:"


def partition_name(topic: str, partition: int) -> str:
    """``kafka:<topic>:<partition>``, the stream id records and checkpoints use.

    >>> partition_name("predictions", 3)
    'kafka:predictions:3'
    """
    return f"{PARTITION_PREFIX}{topic}:{partition}"


def parse_partition_name(name: str) -> tuple[str, int] | None:
    """The (topic, partition) of a Kafka partition name, or None for another source's name.

    >>> parse_partition_name("kafka:predictions:3"), parse_partition_name("file:a.jsonl")
    (('predictions', 3), None)
    """
    if not name.startswith(PARTITION_PREFIX):
        return None
    topic, sep, number = name[len(PARTITION_PREFIX) :].rpartition(":")
    if not sep or not topic or not number.isdigit():
        raise ValueError(f"partition name {name!r} is not of the form 'kafka:<topic>:<partition>'")
    return topic, int(number)
