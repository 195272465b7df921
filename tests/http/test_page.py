"""The status page in a real headless Chromium: it loads without console errors, shows every model and
monitor of a running daemon, and each plot has as many points as the API returns."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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
        shot = browser.screenshot(tmp_path / "status.png")
        assert browser.errors == []
    assert shot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copy(shot, os.environ[SCREENSHOT_ENV])
