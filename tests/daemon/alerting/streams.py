"""Small recorded streams with a known alert: accuracy falls for a while, then recovers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

POLICY = """
version: 1
model: m
monitors:
  acc: {kind: performance, metric: accuracy, window: {events: 100}, threshold: 0.8}
rules:
  - name: degraded
    when: "acc.drift"
    for: 2 windows
    severity: critical
    labels: {team: risk}
    annotations: {summary: "accuracy {value:.2f} below {threshold}"}
    do: alert
"""


def lines(n_good: int = 300, n_bad: int = 300, n_after: int = 400, seed: int = 0) -> list[bytes]:
    """A prediction and its label per entry, one second of event time apart."""
    rng = np.random.default_rng(seed)
    p = np.r_[np.full(n_good, 0.95), np.full(n_bad, 0.5), np.full(n_after, 0.95)]
    correct = rng.random(len(p)) < p
    out = []
    for i, ok in enumerate(correct):
        ts = 1.7e9 + i
        out.append(orjson.dumps({"model": "m", "id": f"e{i}", "ts": ts, "features": {"x": 1.0}, "prediction": 1}))
        out.append(orjson.dumps({"model": "m", "id": f"e{i}", "ts": ts, "label": int(ok)}))
    return out


def write(folder: Path) -> tuple[Path, Path]:
    """(policy, events) files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    policy = folder / "policy.yaml"
    policy.write_text(POLICY)
    events = folder / "events.jsonl"
    events.write_bytes(b"\n".join(lines()) + b"\n")
    return policy, events
