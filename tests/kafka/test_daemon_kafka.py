"""The daemon over a real Kafka broker: drift → decision → action through topics, dead letters,
a crash between processing and commit, and two daemons sharing a group through a rebalance."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
import pytest
import yaml
from driftwarden.daemon.io.kafka.admin import read_messages
from driftwarden.daemon.state.store import Store

from tests.conftest import ROOT
from tests.detectors.test_conformance import plain_values
from tests.kafka.streams import (
    WAIT_S,
    Runner,
    decided,
    events_seen,
    interleave,
    kafka_daemon,
    member,
    policies,
    produce,
    reference,
    settings,
    stream,
    topic_json,
    wait_for,
)

pytestmark = pytest.mark.kafka


def total(*daemons: object) -> Callable[[], int]:
    return lambda: sum(sum(events_seen(d).values()) for d in daemons)  # type: ignore[arg-type]


def test_drift_decision_action_end_to_end_over_kafka(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    models = ["m0", "m1"]
    paths = policies(tmp_path, models)
    values = interleave({m: stream(m, 2400, seed=i) for i, m in enumerate(models)})
    events, decisions, updates = kafka_topic(2), kafka_topic(1, "decisions"), kafka_topic(1, "updates")
    produce(kafka_bootstrap, events, values)
    s = settings(
        tmp_path / "state",
        kafka_bootstrap,
        [events],
        kafka_group(),
        paths,
        sinks={"decisions_topic": decisions, "model_updated_topic": updates},
    )
    daemon = kafka_daemon(s, paths, synchronous_actions=True)
    runner = Runner(daemon)
    wait_for(lambda: total(daemon)() >= len(values), [runner])
    runner.stop()

    expected = reference(paths, values, tmp_path / "ref")
    assert len(expected) >= 4, "the seeded streams must drift"
    on_topic = topic_json(kafka_bootstrap, decisions)
    made = [m for m in on_topic if m["type"] == "decision"]
    alerts = [m for m in on_topic if m["type"] == "alert"]
    assert decided(made) == decided(expected)  # every decision, once, as the in-memory run makes them
    assert len({m["key"] for m in made}) == len(made)
    assert all(m["_headers"]["key"] == m["key"] and m["_headers"]["type"] == "decision" for m in made)
    assert sorted((a["model"], a["rule"], a["ts"]) for a in alerts) == decided(expected)  # each action ran once
    store = Store(tmp_path / "state" / "state.db")
    try:
        actions = store.actions()
    finally:
        store.close()
    assert sorted(a.key for a in actions) == sorted(m["key"] for m in made)
    assert {a.state for a in actions} == {"done"}
    assert read_messages(kafka_bootstrap, updates) == []  # alerts deploy nothing


def test_malformed_messages_reach_the_dead_letter_topic_and_the_daemon_carries_on(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    paths = policies(tmp_path, ["m0"])
    good = stream("m0", 600, seed=3)
    bad = [b"{not json", b'{"id": "no-model"}', b"\xff\xfe binary", b'{"model": "m0"}', b"[1, 2]"]
    values = good[:300] + bad + good[300:]
    events, dlq = kafka_topic(1), kafka_topic(1, "dlq")
    produce(kafka_bootstrap, events, values, key=lambda v: b"m0")
    s = settings(tmp_path / "state", kafka_bootstrap, [events], kafka_group(), paths, sinks={"dead_letter_topic": dlq})
    daemon = kafka_daemon(s, paths)
    runner = Runner(daemon)
    wait_for(lambda: daemon.stats.events + daemon.stats.dead_letters >= len(values), [runner])
    runner.stop()

    assert (daemon.stats.events, daemon.stats.dead_letters) == (len(good), len(bad))
    letters = read_messages(kafka_bootstrap, dlq)
    assert [m.value for m in letters] == bad  # raw bytes, in order, byte for byte
    assert all(m.key == b"m0" for m in letters)
    assert [m.headers["offset"] for m in letters] == [str(300 + i) for i in range(len(bad))]
    assert all(m.headers["source"] == f"kafka:{events}:0" and m.headers["reason"] for m in letters)
    assert "not JSON" in letters[0].headers["reason"] and "model" in letters[1].headers["reason"]
    lines = (tmp_path / "state" / "dead_letters.jsonl").read_text().splitlines()
    assert len(lines) == len(bad)  # the JSONL file as well


def _config(path: Path, s: object) -> Path:
    path.write_text(yaml.safe_dump(orjson.loads(s.model_dump_json())))  # type: ignore[attr-defined]
    return path


def test_sigkill_between_processing_and_commit_replays_without_counting_twice(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    models = ["m0", "m1"]
    paths = policies(tmp_path, models)
    values = interleave({m: stream(m, 6000, seed=10 + i) for i, m in enumerate(models)})
    events, decisions, changelog = kafka_topic(1), kafka_topic(1, "decisions"), f"changelog-{kafka_group()}"
    produce(kafka_bootstrap, events, values, key=lambda v: b"all")  # one partition: one order, exact keys
    s = settings(
        tmp_path / "state",
        kafka_bootstrap,
        [events],
        kafka_group(),
        paths,
        checkpoint_records=500,
        batch_size=250,
        execute=False,
        sinks={"decisions_topic": decisions},
        source={"changelog_topic": changelog},
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftwarden.daemon.cli",
            "run",
            "--config",
            str(_config(tmp_path / "config.yaml", s)),
            "--json",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    db = tmp_path / "state" / "state.db"
    deadline = time.monotonic() + WAIT_S
    while True:  # kill once a few checkpoints are down, mid-stream
        assert time.monotonic() < deadline and proc.poll() is None, "the daemon did not get going"
        if db.exists():
            try:  # read-only: a store opened for writing beside the starting daemon could race its schema
                store = Store(db, readonly=True)
            except Exception:  # noqa: BLE001 - the daemon has not created its tables yet
                time.sleep(0.02)
                continue
            done = store.next_index()
            store.close()
            if done >= 3000:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert 3000 <= done < len(values), "killed mid-stream"

    daemon = kafka_daemon(s, paths)  # the same state dir and group: a restarted replica
    runner = Runner(daemon)
    wait_for(lambda: total(daemon)() >= len(values), [runner])
    time.sleep(1.0)  # anything counted twice would show now
    runner.stop()

    assert runner.seen == {m: 6000 for m in models}  # each event counted once, none missed
    assert daemon.stats.events < len(values)  # the restart resumed, it did not start over
    expected = reference(paths, values, tmp_path / "ref")
    store = Store(db)
    try:
        keys = sorted(a.key for a in store.actions())
    finally:
        store.close()
    assert keys == sorted(d["key"] for d in expected)  # every decision once, with the same idempotency key
    on_topic = [m for m in topic_json(kafka_bootstrap, decisions) if m["type"] == "decision"]
    assert {m["key"] for m in on_topic} == set(keys)  # at least once on the topic, deduplicated by key


class Crash(Exception):
    """The process dying exactly at the commit: a fault no real part produces on demand."""


def test_failure_at_the_commit_step_commits_nothing_and_the_restart_skips_what_was_checkpointed(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    paths = policies(tmp_path, ["m0"])
    values = stream("m0", 4000, seed=8)
    events, changelog = kafka_topic(1), f"changelog-{kafka_group()}"
    produce(kafka_bootstrap, events, values)
    s = settings(
        tmp_path / "state",
        kafka_bootstrap,
        [events],
        kafka_group(),
        paths,
        execute=False,
        checkpoint_records=500,
        source={"changelog_topic": changelog},
    )
    first = kafka_daemon(s, paths)
    real_commit, commits = first.source.commit, []

    def commit(positions: dict[str, int]) -> None:
        if len(commits) == 3:  # the 4th checkpoint is in the store and the changelog, not committed
            raise Crash("killed at commit")
        commits.append(dict(positions))
        real_commit(positions)

    first.source.commit = commit  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.run(timeout=WAIT_S)
    first.close()  # a failure stop: leaves the group, commits nothing
    name = f"kafka:{events}:0"
    committed = commits[-1][name]
    checkpointed = Store(tmp_path / "state" / "state.db")
    stored = checkpointed.positions()[name]
    checkpointed.close()
    assert stored > committed

    second = kafka_daemon(s, paths)
    runner = Runner(second)
    wait_for(lambda: total(second)() >= len(values), [runner])
    time.sleep(1.0)
    runner.stop()
    assert runner.seen == {"m0": 4000}
    # It resumed at the checkpointed position (seek), not at the older committed offset.
    assert second.stats.records == second.stats.events == len(values) - stored
    expected = reference(paths, values, tmp_path / "ref")
    store = Store(tmp_path / "state" / "state.db")
    try:
        assert sorted(a.key for a in store.actions()) == sorted(d["key"] for d in expected)
    finally:
        store.close()
    # issue 14 item 13: what the changelog carries is plain data (adwin's River state included), no pickle
    messages = [m.value for m in read_messages(kafka_bootstrap, changelog) if m.value is not None]
    assert messages and not any(b"gASV" in v or b"\x80\x04\x95" in v for v in messages)
    snapshots = [orjson.loads(v) for v in messages]
    assert all(s["models"]["m0"]["engine"]["monitors"]["errors"]["river"] for s in snapshots[-1:])
    assert plain_values(snapshots) == []


def test_two_daemons_share_a_group_and_one_stops_mid_stream(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    models = [f"m{i}" for i in range(6)]
    paths = policies(tmp_path, models)
    streams = {m: stream(m, 2400, seed=20 + i) for i, m in enumerate(models)}
    first = interleave({m: v[:1200] for m, v in streams.items()})
    second = interleave({m: v[1200:] for m, v in streams.items()})
    events, decisions, changelog = kafka_topic(4), kafka_topic(1, "decisions"), f"changelog-{kafka_group()}"
    group = kafka_group()

    daemon = partial(
        member,
        root=tmp_path,
        bootstrap=kafka_bootstrap,
        topic=events,
        group=group,
        paths=paths,
        execute=False,
        sinks={"decisions_topic": decisions},
        source={"changelog_topic": changelog},
    )

    produce(kafka_bootstrap, events, first)
    a, b = daemon("a"), daemon("b")
    ra, rb = Runner(a), Runner(b)  # type: ignore[arg-type]
    wait_for(lambda: len(a.ownership.tasks) > 0 and len(b.ownership.tasks) > 0, [ra, rb])  # type: ignore[attr-defined]
    wait_for(lambda: total(a, b)() >= len(first) // 2, [ra, rb])
    ra.stop()  # graceful: checkpoint, changelog, commit on revoke; b takes every partition
    produce(kafka_bootstrap, events, second)
    n = len(first) + len(second)
    wait_for(lambda: total(b)() >= n, [rb])
    time.sleep(1.0)
    rb.stop()

    assert rb.seen == {m: 2400 for m in models}  # every model's whole count, on b
    assert a.stats.events > 0 and a.stats.events + b.stats.events == n  # each event processed once across the two
    assert a.ownership.moves["revoked"] >= 1 and b.ownership.moves["restored_remote"] >= 1  # type: ignore[attr-defined]
    expected = reference(paths, [*first, *second], tmp_path / "ref")
    made = [m for m in topic_json(kafka_bootstrap, decisions) if m["type"] == "decision"]
    assert decided(made) == decided(expected)  # no decision lost or made twice
    assert len({m["key"] for m in made}) == len(made)
    keys = []
    for name in ("a", "b"):
        store = Store(tmp_path / name / "state.db")
        # an action in flight when a stopped: handed over to b, which carries it on (a keeps the record, marked)
        keys += [(x.model, x.rule, x.ts) for x in store.actions() if x.state != "handed_over"]
        store.close()
    assert sorted(keys) == decided(expected)  # each intent carried on by exactly one daemon


def test_backpressure_pauses_the_kafka_source_and_resumes(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_group: Callable[[], str], tmp_path: Path
) -> None:
    from driftwarden.daemon.io.backpressure import Backpressure

    paths = policies(tmp_path, ["m0"])
    values = stream("m0", 1000, seed=5)
    events = kafka_topic(1)
    produce(kafka_bootstrap, events, values)
    daemon = kafka_daemon(settings(tmp_path / "state", kafka_bootstrap, [events], kafka_group(), paths), paths)
    blocked = [True]

    def gate() -> None:
        if blocked[0]:
            raise Backpressure("test: actions behind", retry_after=0.1)

    daemon.flow.checks.append(gate)
    runner = Runner(daemon)
    wait_for(lambda: daemon.source.assignment != [] and daemon.source.paused != [], [runner])  # type: ignore[attr-defined]
    time.sleep(1.0)
    assert daemon.stats.records == 0  # paused, still in the group
    blocked[0] = False
    wait_for(lambda: daemon.stats.events >= len(values), [runner])
    runner.stop()
    assert daemon.flow.paused_for is None and daemon.flow.pauses == 1


def test_a_retrain_that_deploys_sends_model_updated(
    demo_run: tuple[Path, list[dict]],
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    kafka_group: Callable[[], str],
    tmp_path: Path,
) -> None:
    out, _ = demo_run
    values = [line for line in (out / "events.jsonl").read_bytes().splitlines() if line.strip()]
    policy = ROOT / "examples" / "credit" / "policy.yaml"
    predictions, labels = kafka_topic(2), kafka_topic(2)  # co-partitioned, keyed by model
    produce(kafka_bootstrap, predictions, [v for v in values if b'"label"' not in v or b'"features"' in v])
    produce(kafka_bootstrap, labels, [v for v in values if b'"label"' in v and b'"features"' not in v])
    decisions, updates = kafka_topic(1, "decisions"), kafka_topic(1, "updates")
    s = settings(
        tmp_path / "state",
        kafka_bootstrap,
        [predictions, labels],
        kafka_group(),
        [policy],
        sinks={"decisions_topic": decisions, "model_updated_topic": updates},
    )
    daemon = kafka_daemon(s, [policy])
    runner = Runner(daemon)

    def deployed() -> bool:
        return any(a.state == "deployed" for a in daemon.store.actions(type="retrain"))

    wait_for(deployed, [runner], timeout=150)
    runner.stop()
    made = [m for m in topic_json(kafka_bootstrap, decisions) if m["type"] == "decision"]
    assert [m["rule"] for m in made if m["action_type"] == "retrain"] == ["retrain-on-degradation"]
    [update] = topic_json(kafka_bootstrap, updates)
    champion = daemon.registry.aliases("credit")["champion"]
    assert update["type"] == "model-updated" and update["model"] == "credit" and update["state"] == "deployed"
    assert update["version"] == champion and update["_headers"]["type"] == "model-updated"
