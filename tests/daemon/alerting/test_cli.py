"""`driftwarden alerts test` reaches a receiver; `driftwarden replay` lists the alerts a policy
would have sent, firing and resolved, and sends nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import yaml

from tests.daemon.alerting import streams
from tests.daemon.alerting.receivers import Webhook


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwarden.daemon.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_alerts_test_sends_one_notification_to_the_named_receiver(tmp_path: Path) -> None:
    hook = Webhook().up()
    try:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump({"alerting": {"receivers": [{"name": "hook", "urls": [f"json://{hook.url}/t"]}]}})
        )
        ok = _cli("alerts", "test", "--config", str(config), "--receiver", "hook")
        assert ok.returncode == 0, ok.stderr
        (post,) = hook.posts()
        assert post["path"] == "/t" and "[FIRING] driftwarden-test" in post["body"]["title"]
        hook.down()
        down = _cli("alerts", "test", "--config", str(config), "--receiver", "hook")
        assert down.returncode == 1 and "FAILED hook URL #0" in down.stderr
    finally:
        hook.down()


def test_a_bad_alerting_section_is_refused_with_positions(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "alerting:\n  receivers:\n    - {name: hook, urls: ['json://127.0.0.1/x']}\n  default_receiver: hok\n"
    )
    bad = _cli("alerts", "test", "--config", str(config), "--receiver", "hook")
    assert bad.returncode == 2
    assert f"{config}:4:21: alerting.default_receiver: unknown receiver 'hok'; receivers: hook" in bad.stderr
    run = _cli("run", "--config", str(config), "--policy", "nope.yaml")
    assert run.returncode == 2 and "4:21: alerting.default_receiver" in run.stderr


def test_replay_lists_the_alerts_it_would_have_sent_and_sends_nothing(tmp_path: Path) -> None:
    policy, events = streams.write(tmp_path)
    out = _cli("replay", "--policy", str(policy), "--events", str(events), "--json", "--alerts")
    assert out.returncode == 0, out.stderr
    lines = [orjson.loads(x) for x in out.stdout.splitlines()]
    alerts = [x for x in lines if x["type"] == "alert"]
    assert [(a["status"], a["key"]) for a in alerts] == [
        ("firing", "m/degraded/999/firing"),
        ("resolved", "m/degraded/999/resolved"),
    ]
    assert alerts[0]["labels"] == {"alertname": "degraded", "model": "m", "severity": "critical", "team": "risk"}
    assert lines[-1]["alerts"] == alerts
    plain = _cli("replay", "--policy", str(policy), "--events", str(events), "--json")
    assert [orjson.loads(x)["type"] for x in plain.stdout.splitlines()].count("alert") == 0
    assert orjson.loads(plain.stdout.splitlines()[-1])["alerts"] == alerts
    table = _cli("replay", "--policy", str(policy), "--events", str(events))
    assert "alerts that would have been sent" in table.stdout and "degraded" in table.stdout
