"""The loop closed process to process: the example model server serves predictions and writes
them (and the labels) as events; a separate daemon process reads them, retrains, deploys
through the server's reload endpoint, and the server serves the new model from then on."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tests.conftest import ROOT
from tests.daemon.test_lifecycle_crash import write_policy
from tests.daemon.test_lifecycle_runner import MODEL, seed_champion
from tests.deploy.trainers import FEATURES, LinearRule


def call(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def traffic(url: str, start: int, n: int) -> float:
    """``n`` requests in batches, their labels after; returns the served accuracy."""
    rng = np.random.default_rng(start)
    x = rng.normal(size=(n, len(FEATURES)))
    truth = (x[:, 0] + x[:, 1] > 0).astype(int)
    correct = 0
    for lo in range(0, n, 100):
        ids = range(start + lo, start + min(n, lo + 100))
        batch = [
            {
                "id": f"r{i}",
                "ts": 1_800_000_000 + i,
                "features": dict(zip(FEATURES, map(float, x[i - start]), strict=True)),
            }
            for i in ids
        ]
        answers = call(f"{url}/predict", {"instances": batch})["predictions"]
        correct += sum(a["prediction"] == truth[i - start] for a, i in zip(answers, ids, strict=True))
        call(
            f"{url}/label",
            {"labels": [{"id": f"r{i}", "ts": 1_800_000_000 + i, "label": int(truth[i - start])} for i in ids]},
        )
    return correct / n


def test_server_and_daemon_close_the_loop(tmp_path: Path) -> None:
    state = tmp_path / "state"
    seed_champion(state)
    events = tmp_path / "events.jsonl"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftwarden.examples.credit.server",
            "--serving",
            str(state / "serving" / MODEL),
            "--events",
            str(events),
            "--model",
            MODEL,
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().decode().split()[-1]
        assert call(f"{url}/health") == {"status": "ok", "version": "v0001", "model": MODEL}
        before = traffic(url, 0, 400)  # the world changed; the served model has not
        assert before < 0.7

        model = tmp_path / "candidate.pkl"
        model.write_bytes(pickle.dumps(LinearRule()))
        deploy = f"{{target: http, path: serving/{MODEL}, url: '{url}/reload', health: '{url}/health'}}"
        policy = write_policy(tmp_path, f"cp {model} {{output}}/model.pkl", deploy)
        daemon = subprocess.run(
            [
                sys.executable,
                "-m",
                "driftwarden.daemon.cli",
                "run",
                "--policy",
                str(policy),
                "--events",
                str(events),
                "--state-dir",
                str(state),
                "--json",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=120,
        )
        assert daemon.returncode == 0, daemon.stderr.decode()[-3000:]
        lines = [orjson.loads(x) for x in daemon.stdout.splitlines() if x.startswith(b"{")]
        states = [x["state"] for x in lines if x["type"] == "action"]
        assert states == ["training", "evaluating", "promoted", "deploying", "deployed"]
        assert lines[-1]["type"] == "summary" and lines[-1]["labels_joined"] == 400

        assert call(f"{url}/health")["version"] == "v0002"  # reloaded by the deploy
        after = traffic(url, 400, 200)
        assert after == 1.0
    finally:
        server.terminate()
        server.wait(timeout=10)
    served = [
        orjson.loads(x)["attributes"]["model_version"] for x in events.read_bytes().splitlines() if b'"prediction"' in x
    ]
    assert served[:400] == ["v0001"] * 400 and served[400:] == ["v0002"] * 200
