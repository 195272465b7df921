"""The outbox delivers each notification exactly once (by idempotency key at the receiver): through
a receiver that is down and comes back, and across a SIGKILL of `driftwarden run` before delivery;
a permanent failure is recorded and counted."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import yaml
from driftwarden.daemon.alerting.config import AlertingConfig
from driftwarden.daemon.config import Settings
from driftwarden.daemon.http.metrics import metrics_registry
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.policies.loader import load_policy
from prometheus_client import generate_latest

from tests.daemon.alerting import streams
from tests.daemon.alerting.receivers import KEY_HEADER, WAIT, Webhook

FAST = {"backoff": "50ms", "max_backoff": "300ms"}


def _config(hook: Webhook, **delivery: str) -> dict:
    return {
        "receivers": [{"name": "hook", "urls": [f"json://{hook.url}/hook"]}],
        "default_receiver": "hook",
        "delivery": {**FAST, **delivery},
    }


def _keys(hook: Webhook) -> collections.Counter[str]:
    return collections.Counter(urllib.parse.unquote(p["headers"][KEY_HEADER]) for p in hook.posts())


def _wait(predicate, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_receiver_down_and_back_gets_each_notification_exactly_once(tmp_path: Path) -> None:
    policy, _ = streams.write(tmp_path)
    hook = Webhook()  # not up yet: connection refused
    settings = Settings(state_dir=tmp_path / "state", alerting=AlertingConfig.model_validate(_config(hook)))
    daemon = Daemon(settings, MemorySource(streams.lines()), [load_policy(policy)])
    try:
        stats = daemon.run()
        assert [a["status"] for a in stats.alerts] == ["firing", "resolved"]
        _wait(lambda: daemon.outbox is not None and daemon.outbox.counts["retried"] >= 4)
        rows = daemon.store.outbox()
        assert {r["state"] for r in rows} == {"pending"}
        firing_row = next(r for r in rows if r["status"] == "firing")
        assert "URL #0 failed" in firing_row["error"] and firing_row["attempts"] >= 4
        hook.up()
        hook.wait_for(lambda posts: len(posts) >= 2)
        _wait(lambda: daemon.store.outbox_counts()["delivered"] == 2)
    finally:
        daemon.close()
        hook.down()
    keys = _keys(hook)
    assert keys == collections.Counter({a["key"]: 1 for a in stats.alerts})
    firing, resolved = (p["body"] for p in hook.posts())
    assert firing["title"] == "[FIRING] degraded on m (critical)"
    assert "accuracy 0." in firing["message"] and "below 0.8" in firing["message"]
    assert resolved["title"].startswith("[RESOLVED]")


def test_a_permanent_failure_is_recorded_and_counted(tmp_path: Path) -> None:
    policy, _ = streams.write(tmp_path)
    hook = Webhook()  # never up
    config = AlertingConfig.model_validate(_config(hook, give_up_after="1s"))
    daemon = Daemon(
        Settings(state_dir=tmp_path / "state", alerting=config), MemorySource(streams.lines()), [load_policy(policy)]
    )
    try:
        daemon.run()
        _wait(lambda: daemon.store.outbox_counts()["failed"] == 2)
        assert daemon.outbox is not None and daemon.outbox.stats()["failed"] == 2
        failed = daemon.store.outbox("state = 'failed'")
        assert all(r["error"].startswith("given up after") for r in failed)
        history = [a for a in daemon.store.audit() if a["type"] == "notification"]
        assert [h["state"] for h in history] == ["failed", "failed"]
        # ... and on /metrics, from the snapshot the loop publishes
        daemon.publisher.publish(daemon, daemon.store.positions(), daemon.store.next_index(), force=True)
        text = generate_latest(metrics_registry(lambda: daemon.publisher.latest)).decode()
        assert 'driftwarden_notifications_total{state="failed"} 2.0' in text
        assert "driftwarden_notifications_pending 0.0" in text
        assert 'driftwarden_alerts_firing{model="m"} 0.0' in text
    finally:
        daemon.close()
        hook.down()


def _run(config: Path, events: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftwarden.daemon.cli",
            "run",
            "--config",
            str(config),
            "--events",
            str(events),
            "--log-level",
            "warning",
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def test_sigkill_before_delivery_delivers_each_notification_once_after_the_restart(tmp_path: Path) -> None:
    policy, events = streams.write(tmp_path)
    hook = Webhook()
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "policies": [str(policy)],
                "state_dir": str(state),
                "alerting": _config(hook, backoff="5s", max_backoff="10s"),
            }
        )
    )
    first = _run(config, events, tmp_path / "run1.log")
    try:

        def written() -> bool:
            try:
                with sqlite3.connect(f"file:{state / 'state.db'}?mode=ro", uri=True) as db:
                    return db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 2
            except sqlite3.Error:
                return False

        _wait(written)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert hook.posts() == []
    hook.up()
    try:
        second = _run(config, events, tmp_path / "run2.log")
        assert second.wait(WAIT * 2) == 0, (tmp_path / "run2.log").read_text()[-3000:]
        hook.wait_for(lambda posts: len(posts) >= 2)
        time.sleep(0.5)
    finally:
        hook.down()
    keys = _keys(hook)
    assert keys == collections.Counter({"m/degraded/999/firing": 1, "m/degraded/999/resolved": 1})
    with sqlite3.connect(state / "state.db") as db:
        assert db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall() == [("delivered", 2)]
