"""A drift alert links an Evidently report of its window (reference against current), rendered in
a worker thread and kept under the state folder."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import numpy as np
import orjson
from driftwarden.daemon.alerting.config import AlertingConfig
from driftwarden.daemon.alerting.evidence import Evidence
from driftwarden.daemon.config import Settings
from driftwarden.daemon.http.face import serve
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
    """The report is rendered, linked from the alert and from the status page's API, and served by
    the daemon's HTTP face (issue 16): both links resolve to the report."""
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
    server = serve(daemon, "127.0.0.1:0")
    assert daemon.evidence is not None
    daemon.evidence.external_url = server.url  # alerting.external_url: this daemon's address
    try:
        stats = daemon.run()
        hook.wait_for(lambda posts: len(posts) >= 1)
        daemon.evidence.wait(120)
        firing = next(a for a in stats.alerts if a["status"] == "firing")
        stored = next(r for r in daemon_rows(tmp_path) if r["status"] == "firing")
        link = stored["payload"]["annotations"]["evidence"]
        name = f"m-inputs-moved-{firing['at']}.html"
        assert link == f"{server.url}/evidence/{name}"
        assert link in hook.posts()[0]["body"]["message"]
        served = httpx.get(link, timeout=30)
        assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
        assert "inputs-moved" in served.text and len(served.text) > 10_000
        report = tmp_path / "state" / "evidence" / name
        assert served.text == report.read_text(encoding="utf-8")
        assert stat.S_IMODE(report.stat().st_mode) == 0o600

        listed = httpx.get(f"{server.url}/api/v1/evidence", params={"model": "m"}, timeout=30).json()
        (entry,) = listed["items"]
        assert (entry["file"], entry["rule"], entry["at"], entry["url"]) == (
            name,
            "inputs-moved",
            firing["at"],
            f"evidence/{name}",
        )
        assert entry["window"] == stored["payload"]["window"]
        assert httpx.get(f"{server.url}/{entry['url']}", timeout=30).text == served.text  # the page's link
        assert httpx.get(f"{server.url}/api/v1/evidence", params={"model": "other"}, timeout=30).json()["total"] == 0
        for bad in ("..%2Fstate.db", "state.db", name.replace(".html", ".json"), ".hidden.html", "nope.html"):
            assert httpx.get(f"{server.url}/evidence/{bad}", timeout=30).status_code == 404, bad
    finally:
        server.stop()
        daemon.close()
        hook.down()
    assert Evidence(tmp_path / "e").link("r.html") == str(tmp_path / "e" / "r.html")  # no external_url: the path


def daemon_rows(tmp_path: Path) -> list[dict]:
    from driftwarden.daemon.state.store import Store

    store = Store(tmp_path / "state" / "state.db")
    try:
        return store.outbox()
    finally:
        store.close()
