"""A drift alert links an Evidently report of its window (reference against current), rendered in
a worker thread and kept under the state folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
from driftwarden.daemon.alerting.config import AlertingConfig
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.policies.loader import load_policy

from tests.daemon.alerting.receivers import Webhook

POLICY = """
version: 1
model: m
monitors:
  inputs: {kind: feature_drift, features: [x, y], window: {events: 300}, method: ks}
rules:
  - {name: inputs-moved, when: "inputs.drift", severity: warning, do: alert}
"""


def _lines(n: int = 1200, shift_at: int = 600) -> list[bytes]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        x = float(rng.normal() + (2.0 if i >= shift_at else 0.0))
        feats = {"x": round(x, 4), "y": round(float(rng.normal()), 4)}
        ts = 1.7e9 + i
        out.append(orjson.dumps({"model": "m", "id": f"e{i}", "ts": ts, "features": feats, "prediction": 1}))
        out.append(orjson.dumps({"model": "m", "id": f"e{i}", "ts": ts, "label": 1}))
    return out


def test_a_drift_alert_links_an_evidently_report_of_its_window(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    hook = Webhook().up()
    config = AlertingConfig.model_validate(
        {"receivers": [{"name": "hook", "urls": [f"json://{hook.url}/h"]}], "default_receiver": "hook"}
    )
    daemon = Daemon(
        Settings(state_dir=tmp_path / "state", alerting=config),
        MemorySource(_lines()),
        [load_policy(tmp_path / "p.yaml")],
    )
    try:
        stats = daemon.run()
        hook.wait_for(lambda posts: len(posts) >= 1)
    finally:
        daemon.close()
        hook.down()
    firing = next(a for a in stats.alerts if a["status"] == "firing")
    stored = next(r for r in daemon_rows(tmp_path) if r["status"] == "firing")
    link = Path(stored["payload"]["annotations"]["evidence"])
    assert link.parent == tmp_path / "state" / "evidence" and link.name == f"m-inputs-moved-{firing['at']}.html"
    html = link.read_text(encoding="utf-8")
    assert "x" in html and "inputs-moved" in html and len(html) > 10_000
    assert str(link) in hook.posts()[0]["body"]["message"]


def daemon_rows(tmp_path: Path) -> list[dict]:
    from driftwarden.daemon.state.store import Store

    store = Store(tmp_path / "state" / "state.db")
    try:
        return store.outbox()
    finally:
        store.close()
