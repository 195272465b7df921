"""KafkaSource and KafkaSink against a real broker: groups, commits, seeks, rebalances."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from driftwarden.daemon.io.kafka.admin import read_messages
from driftwarden.daemon.io.kafka.names import partition_name
from driftwarden.daemon.io.kafka.settings import KafkaUnavailable
from driftwarden.daemon.io.kafka.sink import KafkaSink
from driftwarden.daemon.io.kafka.source import KafkaSource
from driftwarden.daemon.io.sources import Record

pytestmark = pytest.mark.kafka

# Fast group membership for tests: a rebalance is noticed within one heartbeat.
FAST_GROUP = {"heartbeat_interval_ms": 300, "session_timeout_ms": 6000}
# Every wait in this file is bounded by this.
WAIT_S = 30.0


def produce(bootstrap: str, topic: str, ids: range) -> list[bytes]:
    """JSON prediction events keyed by id (so they spread over the partitions); their values."""
    sink = KafkaSink(bootstrap, topic)
    values = []
    for i in ids:
        value = orjson.dumps({"model": "churn", "id": f"p-{i}", "features": {"x": i}, "score": 0.5})
        sink.send(value, key=f"p-{i}".encode())
        values.append(value)
    sink.flush()
    sink.close()
    return values


def drain(source: KafkaSource, want: int, timeout: float = WAIT_S) -> list[Record]:
    """Poll until ``want`` records came (then fail if more are waiting) or fail at ``timeout``."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(out) < want:
        assert time.monotonic() < deadline, f"got {len(out)} of {want} records in {timeout} s"
        out.extend(source.poll(500, 0.2))
    out.extend(source.poll(500, 0.5))
    assert len(out) == want, f"expected {want} records, got {len(out)}"
    return out


def next_positions(records: list[Record]) -> dict[str, int]:
    positions: dict[str, int] = {}
    for r in records:
        positions[r.partition] = max(positions.get(r.partition, 0), r.offset + 1)
    return positions


def source(bootstrap: str, topic: str, group: str, **kwargs: Any) -> KafkaSource:
    return KafkaSource(bootstrap, [topic], group, settings=FAST_GROUP, **kwargs)


def test_consume_all_commit_then_same_group_resumes_after_commit(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str]
) -> None:
    topic, group = kafka_topic(3), kafka_group()
    first = produce(kafka_bootstrap, topic, range(300))

    src = source(kafka_bootstrap, topic, group)
    got = drain(src, 300)
    assert sorted(r.value for r in got) == sorted(first)
    assert {r.partition for r in got} == {partition_name(topic, p) for p in range(3)}
    for p in {r.partition for r in got}:  # each partition in order, from offset 0, no gaps
        offsets = [r.offset for r in got if r.partition == p]
        assert offsets == list(range(len(offsets)))
    assert all(r.ts is not None and abs(r.ts - time.time()) < 120 for r in got)
    assert all(r.key is not None and r.key.startswith(b"p-") for r in got)
    assert src.exhausted is False
    positions = next_positions(got)
    src.commit(positions)
    assert {p: src.committed(p) for p in positions} == positions
    src.close()

    second = produce(kafka_bootstrap, topic, range(300, 360))
    src2 = source(kafka_bootstrap, topic, group)
    try:
        again = drain(src2, 60)
    finally:
        src2.close()
    assert sorted(r.value for r in again) == sorted(second)  # nothing of the first 300 re-read
    for r in again:
        assert r.offset >= positions[r.partition]


def test_seek_rereads_exactly_from_stored_positions(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str]
) -> None:
    topic = kafka_topic(3)
    produce(kafka_bootstrap, topic, range(150))
    with_end = {m.partition: m.offset + 1 for m in read_messages(kafka_bootstrap, topic)}
    assert len(with_end) == 3

    # A checkpoint's positions, given before the first poll (no assignment yet).
    stored = {name: end // 2 for name, end in with_end.items()}
    stored["file:other.jsonl"] = 7  # another source's position: ignored
    src = source(kafka_bootstrap, topic, kafka_group())
    src.seek(stored)
    try:
        got = drain(src, sum(end - stored[name] for name, end in with_end.items()))
        for name, end in with_end.items():
            assert sorted(r.offset for r in got if r.partition == name) == list(range(stored[name], end))

        # Seeking an assigned partition mid-stream re-reads exactly from there.
        name = sorted(with_end)[0]
        src.seek({name: 1})
        again = drain(src, with_end[name] - 1)
        assert [r.offset for r in again] == list(range(1, with_end[name]))
        assert {r.partition for r in again} == {name}
    finally:
        src.close()


def test_sink_delivers_headers_and_keys(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic(1)
    sink = KafkaSink(kafka_bootstrap, topic, client_id="driftwarden-test-dlq")
    sink.send(b"{not json", key=b"k1", headers={"reason": "invalid JSON: line 1", "source": "kafka:p:2"})
    sink.send(b'{"ok": 1}')
    sink.flush()
    sink.close()
    msgs = read_messages(kafka_bootstrap, topic)
    assert [(m.value, m.key, m.headers) for m in msgs] == [
        (b"{not json", b"k1", {"reason": "invalid JSON: line 1", "source": "kafka:p:2"}),
        (b'{"ok": 1}', None, {}),
    ]


class Member:
    """A KafkaSource polled by its own thread, as one daemon replica would."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.records: list[Record] = []
        self.events: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()
        self.source = source(bootstrap, topic, group, on_assign=self._assigned, on_revoke=self._revoked)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _assigned(self, names: list[str]) -> None:
        self.events.append(("assign", names))

    def _revoked(self, names: list[str]) -> None:
        # What a daemon does: checkpoint, then commit what the checkpoint holds.
        self.events.append(("revoke", names))
        with self.lock:
            positions = next_positions(self.records)
        self.source.commit({n: p for n, p in positions.items() if n in names})

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = self.source.poll(500, 0.1)
                with self.lock:
                    self.records.extend(batch)
            self.source.close()
        except BaseException as e:  # surfaced by the test
            self.error = e

    def assignment(self) -> set[str]:
        owned: set[str] = set()
        for kind, names in list(self.events):
            owned = owned | set(names) if kind == "assign" else owned - set(names)
        return owned

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "member did not stop"
        assert self.error is None, self.error


def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def test_two_sources_split_partitions_revoke_commits_and_nothing_is_read_twice(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str]
) -> None:
    topic, group = kafka_topic(3), kafka_group()
    everything = set(produce(kafka_bootstrap, topic, range(200)))
    all_partitions = {partition_name(topic, p) for p in range(3)}

    a = Member(kafka_bootstrap, topic, group)
    b: Member | None = None
    try:
        wait_until(lambda: a.assignment() == all_partitions, "the first member to own everything")
        wait_until(lambda: len(a.records) == 200, "the first member to read the first 200")

        b = Member(kafka_bootstrap, topic, group)
        wait_until(
            lambda: b is not None and bool(b.assignment()) and bool(a.assignment()),
            "the second member to join and the group to split",
        )
        assert a.assignment() | b.assignment() == all_partitions
        assert not a.assignment() & b.assignment()
        # The first member's partitions were revoked (eager protocol: all of them) before the
        # new assignment, and its revoke callback committed what it had read.
        kinds = [kind for kind, _ in a.events]
        assert kinds[:3] == ["assign", "revoke", "assign"]
        assert a.events[1][1] == sorted(all_partitions)

        more = set(produce(kafka_bootstrap, topic, range(200, 320)))
        everything |= more
        wait_until(lambda: len(a.records) + len(b.records) >= 320, "all 320 records to be read")
        time.sleep(0.5)  # a duplicate would arrive now
        values = [r.value for r in a.records + b.records]
        assert len(values) == 320 and set(values) == everything  # each exactly once
        assert {r.value for r in b.records} <= more  # b resumed after a's revoke-time commit
    finally:
        a.finish()
        if b is not None:
            b.finish()


@pytest.mark.parametrize("graceful", [True, False])
def test_graceful_close_commits_in_on_revoke_failure_close_does_not(
    graceful: bool,
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    kafka_group: Callable[[], str],
) -> None:
    topic, group = kafka_topic(3), kafka_group()
    produce(kafka_bootstrap, topic, range(90))
    seen: list[Record] = []
    revoked: list[list[str]] = []

    def on_revoke(names: list[str]) -> None:
        revoked.append(names)
        src.commit(next_positions(seen))

    src = source(kafka_bootstrap, topic, group, on_revoke=on_revoke)
    seen.extend(drain(src, 90))
    src.close(revoke=graceful)

    check = source(kafka_bootstrap, topic, group)
    try:
        committed = {p: check.committed(p) for p in next_positions(seen)}
    finally:
        check.close()
    if graceful:
        assert revoked == [sorted(next_positions(seen))]
        assert committed == next_positions(seen)
    else:
        assert revoked == []
        assert set(committed.values()) == {None}


def test_pause_stops_fetching_and_resume_restarts(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str]
) -> None:
    topic = kafka_topic(3)
    produce(kafka_bootstrap, topic, range(30))
    src = source(kafka_bootstrap, topic, kafka_group())
    try:
        src.pause()  # before the assignment: applies to the partitions when they arrive
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert src.poll(500, 0.2) == []
        assert src.paused == sorted(src.assignment) and len(src.assignment) == 3
        src.resume()
        assert len(drain(src, 30)) == 30
    finally:
        src.close()


def test_unreachable_broker_is_a_clear_error() -> None:
    with pytest.raises(KafkaUnavailable, match="127.0.0.1:9"):
        KafkaSource("127.0.0.1:9", ["t"], "g", settings={"bootstrap_timeout_ms": 500})
    with pytest.raises(ValueError, match="enable_auto_commit"):
        KafkaSource("127.0.0.1:9", ["t"], "g", settings={"enable_auto_commit": True})
