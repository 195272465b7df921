"""Issue 13 item 4: a real broker killed (kill -9) mid-stream and started again is waited out: the
`driftwarden run` process survives, /readyz answers 503 with the reason while the broker is gone,
every event is counted exactly once, and every dead letter reaches its topic (the daemon goes on
through the records it had fetched, so dead letters are sent while the broker is gone)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from driftwarden.daemon.io.kafka import sink as kafka_sink
from driftwarden.daemon.io.kafka.admin import ensure_topics, read_messages
from driftwarden.daemon.io.sources import Record
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.state.labeled_buffer import LabeledBuffer
from driftwarden.daemon.state.store import Store
from driftwarden.daemon.wiring import open_source

from tests.conftest import ROOT
from tests.kafka.conftest import OwnBroker
from tests.kafka.streams import loaded, policies, produce, settings, stream

pytestmark = pytest.mark.kafka

EVENTS = 12_000
BAD_EVERY = 100
"""One malformed record after every BAD_EVERY events: a dead letter for the topic now and then."""
WAIT_S = 120.0
"""A hang guard for each wait (a loaded 2-core machine restarts a JVM broker in 10-30 s)."""


def _counted(db: Path) -> int:
    """Events the model's checkpointed state has counted (0 before the first checkpoint)."""
    if not db.exists():
        return 0
    try:
        store = Store(db, readonly=True)
    except Exception:  # noqa: BLE001 - the daemon has not created its tables yet
        return 0
    try:
        state = store.pipeline_state("m0")
        return 0 if state is None else int(state["engine"]["counts"][0])
    finally:
        store.close()


def _wait(check, proc: subprocess.Popen[bytes], log: Path, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the daemon exited {proc.returncode} ({what}):\n{log.read_text()[-4000:]}"
        try:
            got = check()
        except httpx.HTTPError:
            got = None
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}\n{log.read_text()[-4000:]}")


def test_a_broker_killed_mid_stream_is_waited_out_and_every_event_counted_once(
    own_broker: OwnBroker, tmp_path: Path
) -> None:
    boot = own_broker.bootstrap
    topic = "events"
    ensure_topics(boot, {topic: 1, "dead-letters": 1})
    good = stream("m0", EVENTS, seed=4)
    values = [v for i, g in enumerate(good) for v in ([g, b"{not json"] if i % BAD_EVERY == BAD_EVERY - 1 else [g])]
    bad_offsets = {i for i, v in enumerate(values) if v == b"{not json"}
    produce(boot, topic, values, key=lambda v: b"m0")
    paths = policies(tmp_path, ["m0"])
    # kafka-python gives a delivery up after delivery_timeout_ms: 3 s, so that deliveries fail while the broker
    # is gone (they are sent again once it is back) instead of outliving the outage.
    sinks = {"dead_letter_topic": "dead-letters", "settings": {"delivery_timeout_ms": 3000, "request_timeout_ms": 1000}}
    s = settings(
        tmp_path / "state",
        boot,
        [topic],
        "outage",
        paths,
        execute=False,
        checkpoint_records=500,
        batch_size=100,
        sinks=sinks,
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(orjson.loads(s.model_dump_json())))
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftwarden.daemon.cli", "run", "--config", str(config), "--http", "127.0.0.1:0"]
        + ["--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    db = tmp_path / "state" / "state.db"
    try:
        url = _wait(lambda: (f := tmp_path / "state" / "http.url").exists() and f.read_text().strip(), proc, log, "up")
        _wait(lambda: _counted(db) >= 1000, proc, log, "a few checkpoints")
        own_broker.kill()
        killed_at = _counted(db)
        assert killed_at < EVENTS, "killed mid-stream"
        gone = _wait(lambda: (r := httpx.get(url + "/readyz", timeout=5)).status_code == 503 and r, proc, log, "503")
        reason = gone.json()["reason"]
        assert reason.startswith(f"the source is unreachable: Kafka broker {boot} unreachable for "), reason
        time.sleep(3)  # gone for a while: the loop keeps turning (the process is alive, /livez answers)
        assert httpx.get(url + "/livez", timeout=5).status_code == 200
        own_broker.start()  # the same data: the topic and the group's offsets are back
        _wait(lambda: _counted(db) >= EVENTS, proc, log, "every event")
        _wait(lambda: httpx.get(url + "/readyz", timeout=5).status_code == 200, proc, log, "ready again")
        time.sleep(1.0)  # anything counted twice would show now
        assert _counted(db) == EVENTS
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, log.read_text()[-4000:]
    assert _counted(db) == EVENTS, "each event counted once, none lost"
    letters = read_messages(boot, "dead-letters")
    assert {int(m.headers["offset"]) for m in letters} == bad_offsets  # every one (at least once: maybe twice)
    text = log.read_text()
    assert "unreachable" in text and "answers again after" in text, text[-4000:]
    assert "Traceback" not in text, text[-4000:]


def test_run_with_no_broker_at_start_exits_69_with_one_line(tmp_path: Path) -> None:
    """No broker at all (a closed port): one line naming the address and exit 69 (EX_UNAVAILABLE), for a
    supervisor to retry; no traceback."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        boot = f"127.0.0.1:{sock.getsockname()[1]}"
    paths = policies(tmp_path, ["m0"])
    s = settings(
        tmp_path / "state", boot, ["events"], "nobody", paths, source={"settings": {"bootstrap_timeout_ms": 1500}}
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(orjson.loads(s.model_dump_json())))
    proc = subprocess.run(
        [sys.executable, "-m", "driftwarden.daemon.cli", "run", "--config", str(config), "--log-level", "warning"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert proc.returncode == 69, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"driftwarden: no Kafka broker reachable at {boot}") and "start again" in last, last
    assert "Traceback" not in proc.stderr


def test_a_checkpoint_with_labeled_rows_waits_a_broker_outage_out_and_the_log_holds_each_row_once(
    own_broker: OwnBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: the labeled-data log's flush waits an outage out as the changelog's does (it ended the run
    before), and what the new owner would read back within the ranges holds every labeled row once, in order.
    A flush without a waiter gives up after 30 s; here after 2 s, so that the outage outlasts it."""
    monkeypatch.setattr(kafka_sink, "FLUSH_TIMEOUT_S", 2.0)
    boot = own_broker.bootstrap
    ensure_topics(boot, {"labeled-events": 1})
    values = stream("m0", 800, seed=5)  # labeled predictions: every event is a labeled row
    produce(boot, "labeled-events", values[:600], key=lambda v: b"m0")
    paths = policies(tmp_path, ["m0"])
    s = settings(
        tmp_path / "state",
        boot,
        ["labeled-events"],
        "labeled-outage",
        paths,
        execute=False,
        checkpoint_seconds=600,  # checkpoints by count only: the one below is the outage's
        source={"changelog_topic": "labeled-changelog", "labeled_topic": "labeled"},
    )
    daemon = Daemon(s, open_source(s), loaded(paths))
    try:
        daemon.run(count=600, timeout=WAIT_S)  # read and checkpointed with the broker up
        own = daemon.ownership
        assert own is not None and own.labeled is not None
        # Read before the broker went: applied, their labeled rows pending for the next checkpoint.
        daemon.process([Record(v, "kafka:labeled-events:0", 600 + i) for i, v in enumerate(values[600:])])
        own_broker.kill()
        errors: list[BaseException] = []

        def checkpoint() -> None:
            try:
                daemon.write_checkpoint()
            except BaseException as e:  # noqa: BLE001 - reported in the test's thread
                errors.append(e)

        writer = threading.Thread(target=checkpoint)
        writer.start()
        writer.join(4.0)  # longer than a flush without a waiter takes to give up
        assert not errors, f"the checkpoint gave up during the outage: {errors[0]!r}"
        assert writer.is_alive(), "the checkpoint did not wait for the broker"
        own_broker.start()
        writer.join(WAIT_S)
        assert not writer.is_alive() and not errors, errors
        assert daemon.store.positions() == {"kafka:labeled-events:0": 800}
        docs = own.labeled.read(0, own.labeled_ranges[0], ["m0"])
    finally:
        daemon.close()
    rebuilt = LabeledBuffer(tmp_path / "rebuilt")
    rebuilt.adopt(docs["m0"])
    assert list(rebuilt.rows(last=10_000).ids) == [f"m0-{i}" for i in range(800)]
