"""A real daemon process serving HTTP (`driftwarden run --follow --http 127.0.0.1:0`), its events file
written by the test, and the system tools the HTTP tests drive (installed by .ci/install-test-tools)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

START_TIMEOUT = 60.0
"""Seconds a daemon may take to import, load its policies and listen (a loaded 2-core CI machine)."""

POLICY_SHOP = """\
version: 1
model: shop
monitors:
  inputs: {kind: feature_drift, features: all, window: {events: 300}, method: ks}
  accuracy: {kind: performance, metric: accuracy, window: {events: 200}, threshold: 0.7}
  parity: {kind: demographic_parity, attribute: gender, window: {events: 400}, threshold: 0.2}
  errors: {kind: adwin, series: error}
rules:
  - {name: degraded, when: "accuracy.drift", for: 2 windows, do: alert}
  - {name: unfair, when: "parity.drift", do: alert}
actions:
  retrain:
    train: {entrypoint: "driftwarden.examples.credit.train:train", timeout: 2m, params: {max_iter: 10}}
    data: {last: 600}
    holdout: 0.25
    metrics: [accuracy]
    promote_if: "candidate.accuracy >= champion.accuracy - 1.0"
    deploy: {target: local, path: serving/shop}
    verify: {window: 50}
    rollback_if: "live.accuracy < champion.accuracy - 1.0"
"""

POLICY_FRAUD = """\
version: 1
model: fraud
monitors:
  score: {kind: page_hinkley, series: score}
  amounts: {kind: feature_drift, features: [amount], window: {events: 250}, method: psi}
rules:
  - {name: score-shift, when: "score.drift", do: alert}
"""


def need(tool: str) -> str:
    """The path of a system tool, or a skip (a failure in CI, where .ci/install-test-tools installed it)."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed: .ci/install-test-tools should have installed it")
        pytest.skip(f"{tool} is not installed (bash .ci/install-test-tools)")
    return path


def events(n: int, start: int = 0, seed: int = 0, shift: float = 0.0, wrong: float = 0.1) -> list[bytes]:
    """``n`` shop predictions (a share ``wrong`` of them flipped) with their labels right after, and one
    fraud prediction every 4th event; ids from ``start``."""
    rng = np.random.default_rng(seed + start)
    out = []
    for i in range(start, start + n):
        age = float(rng.normal(40 + shift, 10))
        income = float(rng.normal(50 + shift, 15))
        label = int(age + rng.normal(0, 5) > 40)
        prediction = int(age > 40) if rng.random() >= wrong else 1 - int(age > 40)
        gender = "f" if rng.random() < 0.5 else "m"
        ts = 1_780_000_000 + i
        out.append(
            orjson.dumps(
                {
                    "model": "shop",
                    "id": f"s{i}",
                    "ts": ts,
                    "features": {"age": age, "income": income},
                    "prediction": prediction,
                    "score": 0.5,
                    "attributes": {"gender": gender},
                }
            )
        )
        out.append(orjson.dumps({"model": "shop", "id": f"s{i}", "ts": ts, "label": label}))
        if i % 4 == 0:
            amount = float(rng.lognormal(3 + shift / 10, 1))
            out.append(
                orjson.dumps(
                    {
                        "model": "fraud",
                        "id": f"f{i}",
                        "ts": ts,
                        "features": {"amount": amount},
                        "prediction": 0,
                        "score": float(rng.beta(2, 5)),
                    }
                )
            )
    return out


@dataclass
class RunningDaemon:
    """`driftwarden run` following ``events``; ``url`` is where it serves."""

    root: Path
    proc: subprocess.Popen[bytes]
    url: str
    events: Path
    env: dict[str, str] = field(default_factory=dict)

    def append(self, lines: list[bytes]) -> None:
        with self.events.open("ab") as f:
            f.write(b"".join(line + b"\n" for line in lines))

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kw)  # type: ignore[arg-type]

    def wait_for(self, check: object, timeout: float = 60.0, what: str = "") -> object:
        """Poll ``check()`` until it returns a truthy value (bounded)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = check()  # type: ignore[operator]
            except (httpx.HTTPError, KeyError, IndexError, TypeError):
                last = None
            if last:
                return last
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or check}\n{self.log()}")

    def log(self) -> str:
        path = self.root / "daemon.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_daemon(root: Path, env: dict[str, str] | None = None, listen: str = "127.0.0.1:0") -> RunningDaemon:
    (root / "shop.yaml").write_text(POLICY_SHOP)
    (root / "fraud.yaml").write_text(POLICY_FRAUD)
    path = root / "events.jsonl"
    path.touch()
    state = root / "state"
    child_env = {**os.environ, **(env or {})}
    log = (root / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftwarden.daemon.cli", "run", "--policy", "shop.yaml", "--policy", "fraud.yaml"]
        + ["--events", str(path), "--follow", "--http", listen, "--state-dir", str(state), "--json"],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env,
    )
    url_file = state / "http.url"
    deadline = time.monotonic() + START_TIMEOUT
    while not url_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the daemon did not start serving:\n{(root / 'daemon.log').read_text()[-4000:]}")
        time.sleep(0.05)
    return RunningDaemon(root, proc, url_file.read_text().strip(), path, child_env)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    d = start_daemon(tmp_path)
    try:
        yield d
    finally:
        d.stop()
