"""A seeded test stream for golden replay tests: 16 features, delayed labels, a drift at prediction 6,000.

Run ``python -m tests.golden.stream`` to rewrite the golden replay output after an intended change.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "replay.jsonl"
POLICY = HERE / "policy.yaml"
SUMMARY_COUNTS = ("type", "records", "events", "dead_letters", "labels_joined", "signals", "decisions")


def write_stream(path: Path, n: int = 12_000, drift_at: int = 6_000, delay: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    num = rng.normal(size=(n, 12))
    num[drift_at:, :3] += 0.5
    cats = rng.integers(0, 4, size=(n, 4))
    cats[drift_at:, 0] = np.where(rng.random(n - drift_at) < 0.3, 4, cats[drift_at:, 0])
    lines = []
    for i in range(n):
        feats: dict[str, object] = {f"x{j}": round(float(num[i, j]), 4) for j in range(12)}
        feats.update({f"c{j}": f"v{cats[i, j]}" for j in range(4)})
        if i % 997 == 0:
            feats["x5"] = None
        p = int(num[i, 0] > 0) if rng.random() < 0.92 else int(num[i, 0] <= 0)
        lines.append(
            orjson.dumps(
                {
                    "model": "g",
                    "id": f"e{i}",
                    "ts": 1.7e9 + i,
                    "features": feats,
                    "prediction": p,
                    "score": round(float(rng.random()), 4),
                }
            )
        )
        if i == 4321:
            lines.append(b'{"model": "g", "id": 1, "features": [1]}')
        if i >= delay:
            lines.append(
                orjson.dumps(
                    {
                        "model": "g",
                        "id": f"e{i - delay}",
                        "ts": 1.7e9 + i,
                        "label": int(num[i - delay, 0] > (0 if i - delay < drift_at else 0.5)),
                    }
                )
            )
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def replay_lines(events: Path, batch_size: int = 1000) -> list[bytes]:
    """The replay's JSON lines; the summary keeps only its counts (timings and tables may change)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftwarden.daemon.cli",
            "replay",
            "--policy",
            str(POLICY),
            "--events",
            str(events),
            "--json",
            "--batch-size",
            str(batch_size),
        ],
        capture_output=True,
        check=True,
        cwd=HERE.parent.parent,
    )
    out = []
    for line in proc.stdout.splitlines():
        obj = orjson.loads(line)
        if obj["type"] == "summary":
            obj = {k: obj[k] for k in SUMMARY_COUNTS}
        out.append(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        events = write_stream(Path(tmp) / "events.jsonl")
        GOLDEN.write_bytes(b"\n".join(replay_lines(events)) + b"\n")
    print(f"wrote {GOLDEN}")
