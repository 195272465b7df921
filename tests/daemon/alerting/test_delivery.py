"""Alerts reach people through real parts: a real Alertmanager routing to a local webhook (the
demo's recorded stream: the concept-drift rule fires, then resolves once the redeployed model has
recovered), and an e-mail to a real SMTP server through a route matching severity: critical."""

from __future__ import annotations

import email
import time
from pathlib import Path

import yaml
from driftwarden.daemon.alerting.config import AlertingConfig
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import FileSource, MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.policies.loader import load_policy

from tests.daemon.alerting import streams
from tests.daemon.alerting.receivers import WAIT, Mailbox, Webhook, alertmanager

ROOT = Path(__file__).resolve().parents[3]


def _demo_alert_policy(folder: Path) -> Path:
    """The demo's policy without its retrain rule: the stream already holds the redeployed model's
    predictions, so its alerts are the demo's own."""
    spec = yaml.safe_load((ROOT / "examples" / "credit" / "policy.yaml").read_text())
    spec["rules"] = [r for r in spec["rules"] if r["do"] == "alert"]
    spec.pop("actions", None)
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _alerts(posts: list[dict], alertname: str, status: str) -> list[dict]:
    return [
        a for p in posts for a in p["body"]["alerts"] if a["labels"]["alertname"] == alertname and a["status"] == status
    ]


def test_the_demo_stream_fires_and_resolves_concept_drift_through_a_real_alertmanager(
    demo_run: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    out, _ = demo_run
    hook = Webhook().up()
    try:
        with alertmanager(tmp_path, f"http://{hook.url}/alertmanager") as am:
            config = AlertingConfig.model_validate({"alertmanager": {"urls": [am], "resend": "1s"}})
            settings = Settings(state_dir=tmp_path / "state", alerting=config)
            seen: list[dict] = []
            policy = load_policy(_demo_alert_policy(tmp_path))
            daemon = Daemon(settings, FileSource(out / "events.jsonl"), [policy], listener=seen.append)
            try:
                while not any(a["rule"] == "concept-drift" for a in daemon.stats.alerts):
                    assert not daemon.source.exhausted, "the demo's stream raised no concept-drift alert"
                    daemon.run(count=1000)
                posts = hook.wait_for(lambda p: _alerts(p, "concept-drift", "firing"))
                daemon.run()  # the rest: the redeployed model recovers
                posts = hook.wait_for(lambda p: _alerts(p, "concept-drift", "resolved"))
            finally:
                daemon.close()
    finally:
        hook.down()
    firing = _alerts(posts, "concept-drift", "firing")[0]
    resolved = _alerts(posts, "concept-drift", "resolved")[0]
    assert {"alertname": "concept-drift", "model": "credit", "severity": "critical"}.items() <= firing["labels"].items()
    summary = firing["annotations"]["summary"]
    ours = [a for a in daemon.stats.alerts if a["rule"] == "concept-drift"]
    signal = next(s for s in seen if s["type"] == "signal" and s["monitor"] == "errors" and s["at"] == ours[0]["at"])
    assert (
        f"rose to {signal['value']:.3f} over the last 100" in summary and f"threshold {signal['threshold']}" in summary
    )
    # the error rate over the last 100 predictions, ~3 % before the change (9 % when concept_drift pages it)
    assert signal["threshold"] is not None and 0.05 < signal["value"] < 1
    assert firing["annotations"]["runbook_url"].endswith("docs/alerting.md")
    assert resolved["labels"] == firing["labels"] and resolved["startsAt"] == firing["startsAt"]
    assert [a["status"] for a in ours[:2]] == ["firing", "resolved"]
    deployed_at = next(i["at"] for i in demo_run[1] if i["type"] == "action" and i["state"] == "deployed")
    assert ours[1]["at"] > deployed_at  # resolved after the redeploy, once the error rate settled


def test_an_email_reaches_a_real_smtp_server_through_the_critical_route(tmp_path: Path) -> None:
    policy, _ = streams.write(tmp_path)
    hook = Webhook().up()
    with Mailbox() as box:
        config = AlertingConfig.model_validate(
            {
                "receivers": [
                    {
                        "name": "ops-mail",
                        "urls": [f"mailto://127.0.0.1:{box.port}?from=dw@example.com&to=ops@example.com&mode=insecure"],
                    },
                    {"name": "hook", "urls": [f"json://{hook.url}/hook"]},
                ],
                "routes": [{"match": {"severity": "critical"}, "receiver": "ops-mail"}],
                "default_receiver": "hook",
            }
        )
        daemon = Daemon(
            Settings(state_dir=tmp_path / "state", alerting=config),
            MemorySource(streams.lines()),
            [load_policy(policy)],
        )
        try:
            daemon.run()
            deadline = time.monotonic() + WAIT
            while len(box.messages) < 2:
                assert time.monotonic() < deadline, box.messages
                time.sleep(0.1)
        finally:
            daemon.close()
            hook.down()
    assert hook.posts() == []  # the critical alert took the first matching route, not the default
    subjects = [email.message_from_string(m["data"])["Subject"] for m in box.messages]
    assert subjects == ["[FIRING] degraded on m (critical)", "[RESOLVED] degraded on m (critical)"]
    assert box.messages[0]["to"] == ["ops@example.com"]
    body = email.message_from_string(box.messages[0]["data"]).get_payload()[0].get_payload(decode=True).decode()
    assert "accuracy 0." in body and "idempotency key: m/degraded/999/firing" in body
