"""Scale-out made whole (issue 17), against a real broker: the labeled-data buffer moves with its
task through the labeled-data topic, and a retrain in flight on a daemon that loses its task is
handed over and carried out once, by the new owner, on the rows the old owner would have used."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.kafka.admin import read_messages
from driftwarden.daemon.io.kafka.labeled_log import LabeledLog, Range
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.state.label_join import LabeledRows
from driftwarden.daemon.state.labeled_buffer import LabeledBuffer
from driftwarden.daemon.state.store import Store
from driftwarden.deploy.registry import LocalRegistry

from tests.kafka.streams import (
    POLICY,
    Runner,
    interleave,
    kafka_daemon,
    loaded,
    member,
    policies,
    produce,
    reference,
    settings,
    stream,
    wait_for,
)

pytestmark = pytest.mark.kafka


def total(*daemons: Daemon) -> int:
    return sum(p.engine.events for d in daemons for m, p in d.pipelines.items() if d.ownership and d.ownership.owns(m))


def buffered_ids(root: Path) -> list[str]:
    return list(LabeledBuffer(root).rows().ids)


def test_a_new_owner_rebuilds_the_labeled_buffer_from_the_labeled_topic(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    models = [f"m{i}" for i in range(4)]
    paths = policies(tmp_path, models)
    streams = {m: stream(m, 1600, seed=40 + i) for i, m in enumerate(models)}
    first = interleave({m: v[:800] for m, v in streams.items()})
    second = interleave({m: v[800:] for m, v in streams.items()})
    events, changelog, labeled = kafka_topic(2), f"changelog-{kafka_group()}", f"labeled-{kafka_group()}"
    group = kafka_group()

    daemon = partial(
        member,
        root=tmp_path,
        bootstrap=kafka_bootstrap,
        topic=events,
        group=group,
        paths=paths,
        execute=False,
        source={"changelog_topic": changelog, "labeled_topic": labeled},
    )

    a, b = daemon("a"), daemon("b")
    ra, rb = Runner(a), Runner(b)
    wait_for(lambda: bool(a.ownership and a.ownership.tasks and b.ownership and b.ownership.tasks), [ra, rb])
    # Produced once both own a task: a member that joined first alone would otherwise read the whole first half
    # before the other joined, and take its task back later from its own (tied) copy, not from the topic.
    produce(kafka_bootstrap, events, first)
    wait_for(lambda: total(a, b) >= len(first), [ra, rb])
    moved = sorted(m for m in models if a.ownership and a.ownership.owns(m))
    assert moved, "a owns some models"
    ra.stop()  # graceful: checkpoint (labeled rows to their topic, then the changelog) on revoke
    produce(kafka_bootstrap, events, second)
    wait_for(lambda: total(b) >= len(first) + len(second), [rb])
    time.sleep(0.5)
    rb.stop()

    reference(paths, [*first, *second], tmp_path / "ref")  # one daemon, no Kafka, the same events
    for m in models:  # b holds every model's whole window: the moved ones rebuilt from the topic
        assert buffered_ids(tmp_path / "b" / "buffers" / m) == buffered_ids(tmp_path / "ref" / "buffers" / m), m
    by_key: dict[bytes | None, int] = {}
    for message in read_messages(kafka_bootstrap, labeled):
        by_key[message.key] = by_key.get(message.key, 0) + 1
    assert {k.decode() for k in by_key if k} == set(models)  # keyed by model
    assert b.ownership is not None and b.ownership.moves["restored_remote"] >= 1


TRAIN_SECONDS = 3.0  # the slow trainer: long enough to move its model's partition while it runs

TRAINER = """\
import json, os, pickle, sys, time
import pandas as pd
from sklearn.dummy import DummyClassifier

data, output, trainings = sys.argv[1:4]
frame = pd.read_parquet(data)
line = {{"output": output, "pid": os.getpid(), "ids": frame["__id"].tolist(), "index": frame["__index"].tolist()}}
with open(trainings, "a") as f:
    f.write(json.dumps({{**line, "event": "start"}}) + "\\n")
time.sleep({seconds})
model = DummyClassifier(strategy="most_frequent").fit(frame[["x", "y"]], frame["__label"])
with open(os.path.join(output, "model.pkl"), "wb") as f:
    pickle.dump(model, f)
with open(trainings, "a") as f:
    f.write(json.dumps({{**line, "event": "end"}}) + "\\n")
"""

RETRAIN = """\
version: 1
model: {model}
monitors:
  errors: {{kind: adwin, series: error}}
rules:
  - name: concept-drift
    when: "errors.drift"
    require: "labels.count >= 500"
    cooldown: 2h
    do: retrain
actions:
  retrain:
    train: {{command: {command}, timeout: 60s}}
    data: {{last: 1000}}
    metrics: [accuracy]
    retries: 0
    promote_if: "candidate.accuracy >= 0.0"
    deploy: {{target: local, path: serving/{model}}}
"""


def trainings(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_rebalance_in_the_middle_of_a_retrain_hands_it_over_and_the_new_owner_trains_once_on_the_same_rows(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    log = tmp_path / "trainings.jsonl"
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER.format(seconds=TRAIN_SECONDS))
    command = json.dumps([sys.executable, str(script), "{data}", "{output}", str(log)])
    (tmp_path / "m0.yaml").write_text(RETRAIN.format(model="m0", command=command))
    (tmp_path / "m1.yaml").write_text(POLICY.format(model="m1"))
    paths = [tmp_path / "m0.yaml", tmp_path / "m1.yaml"]
    values = interleave({m: stream(m, 2400, seed=60 + i) for i, m in enumerate(["m0", "m1"])})
    events, changelog, labeled = kafka_topic(2), f"changelog-{kafka_group()}", f"labeled-{kafka_group()}"
    group, registry = kafka_group(), tmp_path / "registry"  # a registry both daemons reach, as in production

    daemon = partial(
        member,
        root=tmp_path,
        bootstrap=kafka_bootstrap,
        topic=events,
        group=group,
        paths=paths,
        registry=str(registry),
        source={"changelog_topic": changelog, "labeled_topic": labeled},
    )

    a, b = daemon("a"), daemon("b")
    runners = {"a": Runner(a), "b": Runner(b)}
    wait_for(
        lambda: bool(a.ownership and a.ownership.tasks and b.ownership and b.ownership.tasks), list(runners.values())
    )
    produce(kafka_bootstrap, events, values)

    def training_on() -> str | None:  # the daemon whose trainer of m0 has read its data and trains
        for t in trainings(log):
            return "a" if t["output"].startswith(str(tmp_path / "a")) else "b"
        return None

    wait_for(lambda: training_on() is not None, list(runners.values()))
    old = training_on()
    assert old is not None
    new = "b" if old == "a" else "a"
    old_daemon, new_daemon = (a, b) if old == "a" else (b, a)
    [key] = [x.key for x in old_daemon.store.actions(type="retrain")]
    runners[old].stop()  # graceful leave mid-training: its task (and the retrain) moves to the other daemon

    def done() -> bool:
        record = new_daemon.store.action(key)
        return record is not None and record.state in ("deployed", "failed", "rejected")

    wait_for(done, [runners[new]])
    wait_for(lambda: sum(p.engine.events for p in new_daemon.pipelines.values()) >= len(values) // 2, [runners[new]])
    runners[new].stop()

    # The uninterrupted single-daemon run: no Kafka, the same events and policies, one process.
    ref_log = len(trainings(log))
    ref = Daemon(
        Settings(state_dir=tmp_path / "ref", batch_size=500),
        MemorySource(values),
        loaded(paths),
        synchronous_actions=True,
    )
    ref.run()
    ref.close()
    [ref_end] = [t for t in trainings(log)[ref_log:] if t["event"] == "end"]

    runs = trainings(log)[:ref_log]
    started = [t for t in runs if t["event"] == "start"]
    ended = [t for t in runs if t["event"] == "end"]
    assert [t["output"].startswith(str(tmp_path / old)) for t in started] == [True, False]  # killed, then anew
    assert len(ended) == 1 and ended[0]["output"].startswith(str(tmp_path / new))  # trained once, by the new owner
    assert ended[0]["ids"] == ref_end["ids"]  # on exactly the rows the uninterrupted run trained on
    assert started[0]["ids"] == ref_end["ids"]  # which the old owner had exported too
    assert len(ref_end["ids"]) == 800  # data.last 1,000 minus the held-out fifth

    old_store, new_store = Store(tmp_path / old / "state.db"), Store(tmp_path / new / "state.db")
    try:
        handed, carried = old_store.action(key), new_store.action(key)
        audit = [e["state"] for e in new_store.audit(key=key) if e["type"] == "action"]
    finally:
        old_store.close()
        new_store.close()
    assert handed is not None and handed.state == "handed_over"
    assert carried is not None and carried.state == "deployed"
    assert [v.version for v in LocalRegistry(registry).versions("m0")] == [carried.version]  # one candidate
    assert audit[0] == "training" and audit[-1] == "deployed"  # adopted as the old owner left it


def test_rows_a_crashed_or_expelled_owner_sent_after_its_checkpoint_are_not_read_back(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    def docs(*ids: int) -> list[bytes]:  # one labeled-buffer document per id, as a pipeline call makes them
        buffer = LabeledBuffer(tmp_path / f"make-{ids[0]}")
        for i in ids:
            buffer.extend(LabeledRows.of([(i, float(i), f"p-{i}", {"x": float(i)}, {}, 1, None, i % 2)]))
        return buffer.pending_docs()

    like, topic = kafka_topic(2), f"labeled-{kafka_group()}"

    def log(owner: str) -> LabeledLog:
        return LabeledLog(kafka_bootstrap, topic, {}, owner=owner, like=like, retention_ms=3_600_000)

    a, b = log("a"), log("b")
    try:
        ranges: dict[int, list[Range]] = {1: []}
        a.send(1, "m", docs(0, 1))
        a.flush(ranges)  # a's checkpoint: its snapshot records these ranges
        checkpointed = [list(r) for r in ranges[1]]
        a.send(1, "m", docs(2))
        a.flush({1: []})  # sent, then a died before its checkpoint: never counted
        moved = {1: [list(r) for r in checkpointed]}  # b restores a's snapshot and replays event 2
        b.send(1, "m", docs(2))
        b.flush(moved)
        a.send(1, "m", docs(99))
        a.flush({1: []})  # a zombie (expelled, still running) writes inside b's range
        b.send(1, "m", docs(3))
        b.send(1, "other", docs(4))
        b.flush(moved)
        assert [r[2] for r in moved[1]] == ["a", "b"]
        read = b.read(1, moved[1], ["m"])
    finally:
        a.close()
        b.close()
    rebuilt = LabeledBuffer(tmp_path / "rebuilt")
    assert rebuilt.adopt(read["m"]) == 4
    assert list(rebuilt.rows().ids) == ["p-0", "p-1", "p-2", "p-3"]  # each checkpointed row once, in order
    assert set(read) == {"m"}  # only the models asked for


def test_a_daemon_stopped_mid_retrain_gets_its_task_back_and_carries_the_retrain_on_once(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    log = tmp_path / "trainings.jsonl"
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER.format(seconds=TRAIN_SECONDS))
    command = json.dumps([sys.executable, str(script), "{data}", "{output}", str(log)])
    (tmp_path / "m0.yaml").write_text(RETRAIN.format(model="m0", command=command))
    paths = [tmp_path / "m0.yaml"]
    values = stream("m0", 2400, seed=60)
    events, changelog, labeled = kafka_topic(1), f"changelog-{kafka_group()}", f"labeled-{kafka_group()}"
    s = settings(
        tmp_path / "state",
        kafka_bootstrap,
        [events],
        kafka_group(),
        paths,
        source={"changelog_topic": changelog, "labeled_topic": labeled},
    )
    produce(kafka_bootstrap, events, values)
    first = Runner(kafka_daemon(s, paths))
    wait_for(lambda: len(trainings(log)) > 0, [first])  # its trainer has read its data and trains
    [key] = [x.key for x in first.daemon.store.actions(type="retrain")]
    first.stop()  # a graceful stop with a changelog hands the retrain over, here to the next life

    second = Runner(kafka_daemon(s, paths))  # the same state folder and group: the restarted replica

    def done() -> bool:
        record = second.daemon.store.action(key)
        return record is not None and record.state in ("deployed", "failed", "rejected")

    wait_for(done, [second])
    carried = second.daemon.store.action(key)
    audit = [e["state"] for e in second.daemon.store.audit(key=key) if e["type"] == "action"]
    second.stop()

    runs = trainings(log)
    assert [t["event"] for t in runs] == ["start", "start", "end"]  # killed at the stop, trained once after
    assert runs[1]["ids"] == runs[0]["ids"]  # on the same rows
    assert carried is not None and carried.state == "deployed"
    assert "handed_over" in audit and audit[-1] == "deployed"
    assert len(LocalRegistry(tmp_path / "state" / "registry").versions("m0")) == 1


def test_a_labeled_topic_with_fewer_partitions_than_the_input_is_refused(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    like, made = kafka_topic(2), kafka_topic(1, "labeled")  # made by hand beforehand, too small
    with pytest.raises(ValueError, match="has 1 partitions, fewer than .* give it as many"):
        LabeledLog(kafka_bootstrap, made, {}, owner="a", like=like, retention_ms=3_600_000)


def test_an_alert_decided_in_the_last_batch_before_a_graceful_stop_is_not_carried_on_again(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    # The stream ends at a decision's event, so the last batch's checkpoint puts the new intent
    # (pending) in its snapshot; the runner carries it out right after; the revoke's checkpoint then
    # writes a snapshot at the same positions without it. The next owner must take the newer one.
    paths = policies(tmp_path, ["m0"])
    values = stream("m0", 1200, seed=25)
    last = reference(paths, values, tmp_path / "ref")[-1]
    values = values[: last["at"] + 1]
    events, changelog, group = kafka_topic(1), f"changelog-{kafka_group()}", kafka_group()

    daemon = partial(
        member,
        root=tmp_path,
        bootstrap=kafka_bootstrap,
        topic=events,
        group=group,
        paths=paths,
        execute=False,
        source={"changelog_topic": changelog},
    )

    produce(kafka_bootstrap, events, values)
    a = Runner(daemon("a"))
    wait_for(lambda: total(a.daemon) >= len(values) and a.daemon.store.action(last["key"]) is not None, [a])
    wait_for(lambda: a.daemon.store.action(last["key"]).state == "skipped", [a])  # type: ignore[union-attr]
    a.stop()  # graceful: the revoke checkpoints once more, at the same positions
    snapshots = [orjson.loads(m.value) for m in read_messages(kafka_bootstrap, changelog) if m.value]
    carried = [[x["key"] for x in s["actions"]] for s in snapshots]
    assert any(last["key"] in keys for keys in carried) and carried[-1] == []  # the premise: a stale one, then none

    b = Runner(daemon("b"))
    wait_for(lambda: b.daemon.ownership is not None and b.daemon.ownership.moves["restored_remote"] >= 1, [b])
    b.stop()
    assert b.seen == {"m0": len(values)}  # b holds m0's state, restored from the changelog
    states = {}
    for name in ("a", "b"):
        store = Store(tmp_path / name / "state.db")
        states[name] = sorted((x.key, x.state) for x in store.actions())
        store.close()
    decided = sorted((d["key"], "skipped") for d in reference(paths, values, tmp_path / "ref2"))
    assert states == {"a": decided, "b": []}  # each carried out once, by a; nothing handed to b


def test_an_assign_reads_the_labeled_log_in_parts_of_a_bounded_size(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    """The documents read on assign are handed on (written as a segment) whenever those held pass the budget:
    an assign's memory is bounded by it, not by the topic's retention; the rebuilt windows are the same."""
    like, topic = kafka_topic(1), f"labeled-{kafka_group()}"
    log = LabeledLog(kafka_bootstrap, topic, {}, owner="a", like=like, retention_ms=3_600_000)
    sent: dict[str, list[bytes]] = {"m": [], "n": []}
    try:
        ranges: dict[int, list[Range]] = {0: []}
        for i in range(30):
            for model in sent:
                buffer = LabeledBuffer(tmp_path / "make" / f"{model}-{i}")
                rows = [
                    (i * 10 + j, float(i), f"{model}-{i * 10 + j}", {"x": float(j)}, {}, 1, None, j % 2)
                    for j in range(10)
                ]
                buffer.extend(LabeledRows.of(rows))
                (doc,) = buffer.pending_docs()
                log.send(0, model, [doc])
                sent[model].append(doc)
        log.flush(ranges)
        parts: list[tuple[str, list[bytes]]] = []
        budget = 4 * max(map(len, sent["m"]))
        read = log.read_into(0, ranges[0], ["m", "n"], lambda model, docs: parts.append((model, docs)), budget=budget)
    finally:
        log.close()
    assert read == {"m": 30, "n": 30}
    assert len(parts) > 10  # in parts...
    assert all(sum(map(len, docs)) <= budget + max(map(len, docs)) for _, docs in parts)  # ...of the budget's size
    for model, docs in sent.items():  # each model's documents once, in order
        assert [d for m, part in parts if m == model for d in part] == docs
        rebuilt = LabeledBuffer(tmp_path / "rebuilt" / model)
        for m, part in parts:
            if m == model:
                rebuilt.adopt(part)
        assert list(rebuilt.rows().ids) == [f"{model}-{k}" for k in range(300)]
