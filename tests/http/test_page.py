"""The status page in a real headless Chromium: it loads without console errors, shows every model and
monitor of a running daemon, and each plot has as many points as the API returns."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson

from .browser import Browser
from .conftest import RunningDaemon, events, need

SCREENSHOT_ENV = "DRIFTWARDEN_SCREENSHOT"
"""Set to a path (docs/img/status.png) to keep the page's screenshot there."""


def test_the_status_page_shows_every_model_and_monitor(daemon: RunningDaemon, tmp_path: Path) -> None:
    chromium = need("chromium")
    daemon.append(events(1500) + events(1500, start=1500, shift=12, wrong=0.4))
    daemon.wait_for(lambda: daemon.get("/api/v1/status").json()["records"] >= 6750, what="records read")
    status = daemon.get("/api/v1/status").json()
    expected = {m["name"]: m["monitors"] for m in status["models"]}
    assert expected == {"shop": ["inputs", "accuracy", "parity", "errors"], "fraud": ["score", "amounts"]}
    # a drift report the daemon's evidence worker wrote (tests/daemon/alerting/test_evidence.py renders real ones)
    reports = daemon.root / "state" / "evidence"
    reports.mkdir(exist_ok=True)
    (reports / "shop-degraded-900.html").write_text("<html><body>report of shop/degraded</body></html>")
    meta = {"file": "shop-degraded-900.html", "model": "shop", "rule": "degraded", "at": 900, "ts": None}
    (reports / "shop-degraded-900.json").write_bytes(
        orjson.dumps({**meta, "window": [700, 900], "severity": "warning"})
    )
    with Browser(chromium) as browser:
        browser.open(daemon.url + "/")
        browser.wait_for("Number(document.body.dataset.refreshed || 0) >= 2")
        shown = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('section.model')].map(s => [s.dataset.model,"
            " [...s.querySelectorAll('.monitor')].map(m => m.dataset.monitor)]))"
        )
        assert shown == expected
        plotted = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('.monitor')].map(m => [m.dataset.model + '/' +"
            " m.dataset.monitor, [Number(m.querySelector('.chart').dataset.points),"
            " m.querySelectorAll('canvas').length]]))"
        )
        for model, monitors in expected.items():
            for monitor in monitors:
                total = daemon.get(f"/api/v1/models/{model}/monitors/{monitor}/history", params={"limit": 1}).json()
                assert plotted[f"{model}/{monitor}"] == [total["total"], 1], (model, monitor, total["total"])
        assert sum(points for points, _ in plotted.values()) > 20  # the plots are not empty
        assert browser.evaluate("document.getElementById('ready').textContent") == "ready"
        assert "retrain lifecycles" in browser.evaluate("document.body.innerText").lower()
        links = browser.evaluate(
            "[...document.querySelectorAll('section.model')].map(s => [s.dataset.model,"
            " [...s.querySelectorAll('a.evidence-link')].map(a => a.href)])"
        )
        assert links == [["shop", [daemon.url + "/evidence/shop-degraded-900.html"]], ["fraud", []]]
        report = daemon.get("/evidence/shop-degraded-900.html")
        assert report.status_code == 200 and "report of shop/degraded" in report.text
        shot = browser.screenshot(tmp_path / "status.png")
        assert browser.errors == []
    assert shot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copy(shot, os.environ[SCREENSHOT_ENV])
