"""/metrics against the real thing: promtool checks the exposition, a real Prometheus scrapes the
daemon and PromQL returns the value the daemon last signalled."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import orjson
from driftwarden.daemon.http.metrics import METRICS
from prometheus_client.parser import text_string_to_metric_families

from .conftest import RunningDaemon, events, need

SCRAPE_TIMEOUT = 60.0
"""Seconds for Prometheus to start, scrape and answer (scrapes every second)."""


def signals(d: RunningDaemon) -> list[dict]:
    out = []
    for line in (d.root / "daemon.log").read_text().splitlines():
        if line.startswith("{"):
            item = orjson.loads(line)
            if item.get("type") == "signal":
                out.append(item)
    return out


def test_promtool_accepts_the_exposition(daemon: RunningDaemon, tmp_path: Path) -> None:
    promtool = need("promtool")
    daemon.append(events(1200))
    daemon.wait_for(lambda: daemon.get("/api/v1/status").json()["records"] >= 2700, what="records read")
    text = daemon.get("/metrics").text
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {f.name for f in text_string_to_metric_families(text)}
    # every family of the catalogue is exposed (counters under their base name)
    assert {m.name.removesuffix("_total") if m.type == "counter" else m.name for m in METRICS} <= names
    assert 'driftwarden_feature_p_value{feature="age",model="shop",monitor="inputs"}' in text
    assert 'driftwarden_fairness_group_rate{group="f",model="shop",monitor="parity"}' in text
    assert 'driftwarden_events_total{model="fraud"}' in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prometheus_scrapes_the_last_signalled_value(daemon: RunningDaemon, tmp_path: Path) -> None:
    prometheus = need("prometheus")
    daemon.append(events(1200))
    daemon.wait_for(lambda: daemon.get("/api/v1/status").json()["records"] >= 2700, what="records read")
    last = [s for s in signals(daemon) if s["model"] == "shop" and s["monitor"] == "accuracy"][-1]
    target = daemon.url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: driftwarden\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        query = 'driftwarden_monitor_value{model="shop",monitor="accuracy"}'
        deadline = time.monotonic() + SCRAPE_TIMEOUT
        result: list = []
        while time.monotonic() < deadline and not result:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5)
                result = r.json()["data"]["result"] if r.status_code == 200 else []
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert result, (tmp_path / "prometheus.log").read_text()[-3000:]
        assert float(result[0]["value"][1]) == last["value"]
        up = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up"}, timeout=5).json()
        assert up["data"]["result"][0]["value"][1] == "1"
    finally:
        proc.terminate()
        proc.wait(30)
