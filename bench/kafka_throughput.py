"""Consuming from a real Kafka broker: KafkaSource.poll against raw kafka-python, in one run.

    python bench/kafka_throughput.py [--events 200000] [--features 20] [--rounds 3]
                                     [--bootstrap HOST:PORT]

Produces ``--events`` JSON prediction events (``--features`` numeric features each, keyed by id,
over 3 partitions) to a fresh topic, then reads the whole topic back in alternating rounds:

- ``raw kafka-python``: a bare ``KafkaConsumer`` (no group, partitions assigned, from the
  beginning), ``poll(max_records=500)``, ``orjson.loads`` of every value;
- ``KafkaSource``: driftwarden's consumer-group source, ``poll(500, ...)`` into ``Record``s,
  ``orjson.loads`` of every value (a new group per round, so it reads from the beginning too).

- ``daemon end to end``: the whole daemon (``Daemon.run`` over a ``KafkaSource``): decode and
  validate, route, the default monitor set of ``bench/throughput.py`` (``feature_drift`` on all
  features with windows of 2,000 events, ``adwin`` on ``error``, ``performance``), rules,
  checkpoints every 20,000 records (SQLite + commit); no changelog, actions not executed.

Prints one table: median events/s per wall second and per CPU second of this process (the
client's IO thread included; the broker is another process), and the ratio to raw. Without
``--bootstrap`` the dev broker (``deploy/kafka/broker``) is used, started if needed and then
stopped again.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BROKER = ROOT / "deploy" / "kafka" / "broker"
BATCH = 500
# One poll waits at most this long for data; an empty poll after the topic's end ends a round.
POLL_TIMEOUT_S = 1.0
# A round that has not read every event in this long is a failure, not a slow result.
ROUND_TIMEOUT_S = 300.0


def events(n: int, features: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, features)).round(4)
    scores = rng.random(n).round(4)
    names = [f"x{j}" for j in range(features)]
    return [
        orjson.dumps(
            {
                "model": "churn",
                "id": f"p-{i}",
                "ts": 1.7e9 + i,
                "features": dict(zip(names, values[i].tolist(), strict=True)),
                "prediction": int(scores[i] > 0.5),
                "score": float(scores[i]),
                "attributes": {"region": "eu" if i % 3 else "us"},
            }
        )
        for i in range(n)
    ]


def produce(bootstrap: str, topic: str, values: list[bytes]) -> float:
    from driftwarden.daemon.io.kafka.sink import KafkaSink

    sink = KafkaSink(bootstrap, topic, linger_ms=20, batch_size=512 * 1024)
    t0 = time.perf_counter()
    for i, value in enumerate(values):
        sink.send(value, key=b"p-%d" % i)
    sink.flush(timeout=600)
    elapsed = time.perf_counter() - t0
    sink.close()
    return len(values) / elapsed


def timed(read: Callable[[], int], n: int) -> tuple[float, float]:
    """(events per wall second, events per CPU second) of ``read``, which must return ``n``."""
    c0, w0 = time.process_time(), time.perf_counter()
    got = read()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if got != n:
        raise SystemExit(f"read {got} events, expected {n}")
    return n / wall, n / cpu


def raw_round(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)

    def read() -> int:
        count, deadline = 0, time.monotonic() + ROUND_TIMEOUT_S
        loads = orjson.loads
        while count < n and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=int(POLL_TIMEOUT_S * 1000), max_records=BATCH).values():
                for m in msgs:
                    loads(m.value)
                count += len(msgs)
        return count

    try:
        return timed(read, n)
    finally:
        consumer.close(autocommit=False)


def source_round(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    from driftwarden.daemon.io.kafka.source import KafkaSource

    source = KafkaSource(bootstrap, [topic], f"bench-{uuid.uuid4().hex[:8]}")

    def read() -> int:
        count, deadline = 0, time.monotonic() + ROUND_TIMEOUT_S
        loads = orjson.loads
        while count < n and time.monotonic() < deadline:
            records = source.poll(BATCH, POLL_TIMEOUT_S)
            for r in records:
                loads(r.value)
            count += len(records)
        return count

    try:
        return timed(read, n)
    finally:
        source.close()


def daemon_round(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    import tempfile

    from driftwarden.daemon.config import Settings
    from driftwarden.daemon.runtime import Daemon
    from driftwarden.daemon.wiring import open_source
    from driftwarden.policies.loader import load_policy

    from bench.throughput import POLICY

    with tempfile.TemporaryDirectory(prefix="driftwarden-bench-") as tmp:
        policy = Path(tmp) / "churn.yaml"
        policy.write_text(POLICY.format(model="churn"))
        settings = Settings.model_validate(
            {
                "policies": [str(policy)],
                "state_dir": str(Path(tmp) / "state"),
                "batch_size": BATCH,
                "poll_timeout": POLL_TIMEOUT_S,
                "execute": False,
                "source": {
                    "kind": "kafka",
                    "bootstrap": bootstrap,
                    "topics": [topic],
                    "group_id": f"bench-{uuid.uuid4().hex[:8]}",
                },
            }
        )
        daemon = Daemon(settings, open_source(settings), [load_policy(policy)])

        def read() -> int:
            daemon.run(count=n, timeout=ROUND_TIMEOUT_S)  # one loop, as `driftwarden run` does
            return daemon.stats.events

        threshold = gc.get_threshold()
        try:
            return timed(read, n)
        finally:
            daemon.close()
            # The loop tunes the collector for its process (gc.freeze, a higher threshold): the next
            # rounds measure the other readers as a process of their own would run them.
            gc.unfreeze()
            gc.set_threshold(*threshold)


def machine() -> str:
    import kafka
    import kafka.record.util as record_util

    try:
        import crc32c

        crc = "crc32c C extension" if record_util._crc32c is crc32c.crc32c else "pure-Python CRC"
    except ImportError:
        crc = "pure-Python CRC (crc32c not installed)"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, kafka-python {kafka.__version__} ({crc})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bootstrap", default=os.environ.get("DRIFTWARDEN_KAFKA_BOOTSTRAP"))
    args = ap.parse_args()

    started_broker = False
    bootstrap = args.bootstrap
    if not bootstrap:
        running = subprocess.run([str(BROKER), "status"], capture_output=True).returncode == 0
        proc = subprocess.run([str(BROKER), "start"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"cannot start the dev broker:\n{proc.stderr}")
        bootstrap, started_broker = proc.stdout.strip().splitlines()[-1], not running
    try:
        from driftwarden.daemon.io.kafka.admin import ensure_topics

        topic = f"bench-{uuid.uuid4().hex[:8]}"
        ensure_topics(bootstrap, {topic: 3})
        values = events(args.events, args.features)
        size = sum(map(len, values)) / len(values)
        produce_rate = produce(bootstrap, topic, values)
        del values

        rates: dict[str, list[tuple[float, float]]] = {"raw": [], "source": [], "daemon": []}
        for _ in range(args.rounds):
            rates["raw"].append(raw_round(bootstrap, topic, args.events))
            rates["source"].append(source_round(bootstrap, topic, args.events))
            rates["daemon"].append(daemon_round(bootstrap, topic, args.events))
    finally:
        if started_broker:
            subprocess.run([str(BROKER), "stop"], capture_output=True)

    def med(name: str, i: int) -> float:
        return statistics.median(r[i] for r in rates[name])

    print(
        f"# Kafka consume throughput: {args.events:,} events of {size:.0f} B"
        f" ({args.features} features), 3 partitions, batches of {BATCH},"
        f" median of {args.rounds} rounds"
    )
    print(f"# {machine()}; produced with KafkaSink at {produce_rate:,.0f} events/s")
    print("| reader | events/s (wall) | events/s (CPU) | ratio to raw (CPU) |")
    print("|---|---:|---:|---:|")
    for name, label in (
        ("raw", "raw kafka-python poll + orjson.loads"),
        ("source", "KafkaSource.poll + orjson.loads"),
        ("daemon", "daemon end to end (decode, default monitors, rules, checkpoints)"),
    ):
        ratio = med(name, 1) / med("raw", 1)
        print(f"| {label} | {med(name, 0):,.0f} | {med(name, 1):,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
