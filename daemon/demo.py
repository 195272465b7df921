"""``driftwarden demo``: the whole lifecycle on bundled data, with no service running.

A serving app (simulated here, in-process) scores a stream of loan applications with whatever
model is deployed in ``<out>/serving/credit``, sends each prediction to the daemon and each true
label ``label_delay`` predictions later. At a known point the world changes (see
:mod:`examples.credit.scenario`); driftwarden notices, retrains, gates and deploys, and the
serving app picks the new model up on its next request.

Actions run synchronously here — the stream waits for training — so the demo is reproducible
event for event; ``driftwarden run`` runs them in worker threads.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from daemon.config import Settings
from daemon.runtime import Daemon, RunStats
from daemon.sources import MemorySource
from deploy.registry import LocalRegistry
from deploy.targets import LocalTarget
from policies.loader import load_policy

MODEL = "credit"
MARKER = ".driftwarden-demo"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "credit"
START_TS = 1_796_140_800.0  # 2026-11-27T00:00:00Z; one prediction per second of event time


@dataclass
class DemoResult:
    out: Path
    drift_at: int
    drift_at_prediction: int
    detected_at: int | None = None
    retrain_at: int | None = None
    deployed_at: int | None = None
    deployed_version: str | None = None
    candidate: dict[str, float] | None = None
    champion: dict[str, float] | None = None
    accuracy: dict[str, float | None] = field(default_factory=dict)
    report: Path | None = None
    stats: RunStats | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "drift_at": self.drift_at, "detected_at": self.detected_at,
            "retrain_at": self.retrain_at, "deployed_at": self.deployed_at, "deployed_version": self.deployed_version,
            "candidate": self.candidate, "champion": self.champion, "accuracy": self.accuracy,
            "report": str(self.report) if self.report else None,
        }


class ServingApp:
    """Scores requests with the model in the serving directory; reloads when a deploy switched it."""

    def __init__(self, serving: Path) -> None:
        self.serving = serving
        self.version: str | None = None
        self.model: Any = None

    def refresh(self) -> str:
        version = (self.serving / "VERSION").read_text().strip()
        if version != self.version:
            self.model = pickle.loads((self.serving / "model.pkl").read_bytes())
            self.version = version
        return version


def prepare_out(out: Path) -> None:
    """Start from an empty output folder; refuse to wipe one the demo did not create."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise SystemExit(f"{out} exists and is not a demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by driftwarden demo; deleted by the next demo run\n")


def bootstrap_champion(out: Path, history: tuple[pd.DataFrame, np.ndarray]) -> str:
    """Train the first model on pre-drift history, register it as champion and deploy it."""
    from examples.credit.train import train

    X, y = history
    art = out / "bootstrap"
    art.mkdir(parents=True, exist_ok=True)
    (art / "model.pkl").write_bytes(pickle.dumps(train(X, pd.Series(y), {})))
    registry = LocalRegistry(out / "registry")
    version = registry.register(MODEL, art, {"source": "demo bootstrap", "rows": len(X)})
    registry.set_alias(MODEL, "champion", version.version)
    LocalTarget(out / "serving" / MODEL).deploy(version)
    return version.version


def run_demo(
    out: Path,
    *,
    n: int = 16_000,
    drift_at: int = 8_000,
    seed: int = 7,
    label_delay: int = 100,
    chunk: int = 100,
    listener: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Run the scenario; ``listener`` sees the scenario line and every signal, decision and action."""
    from examples.credit.scenario import Scenario

    emit = listener or (lambda item: None)
    out = Path(out)
    prepare_out(out)
    world = Scenario(n=n, drift_at=drift_at, seed=seed)
    X, y = world.sample()
    first_version = bootstrap_champion(out, world.history())
    policy = load_policy(EXAMPLES / "policy.yaml")
    settings = Settings(state_dir=out, registry=out / "registry", batch_size=chunk * 2)

    # The daemon's event index counts every record; labels interleave with predictions.
    records_before_drift = drift_at + max(0, drift_at - label_delay + 1)
    result = DemoResult(out=out, drift_at=records_before_drift, drift_at_prediction=drift_at)
    emit({"type": "scenario", "model": MODEL, "at": 0, "ts": START_TS, "drift_at": records_before_drift,
          "drift_at_prediction": drift_at, "predictions": n, "label_delay": label_delay,
          "champion": first_version, "description": "Agrawal rule 2 -> rule 6 with older applicants and newer cars"})

    def on_item(item: dict[str, Any]) -> None:
        if item["type"] == "signal" and item["drift"] and result.detected_at is None:
            result.detected_at = item["at"]
        if item["type"] == "decision" and item["action_type"] == "retrain" and result.retrain_at is None:
            result.retrain_at = item["at"]
        if item["type"] == "action" and item["state"] == "deployed" and result.deployed_version is None:
            result.deployed_version = item.get("version")
            result.candidate, result.champion = item.get("candidate"), item.get("champion")
        if item["type"] == "action" and item["state"] in ("evaluating", "rejected", "promoted") and item.get("candidate"):
            result.candidate, result.champion = item.get("candidate"), item.get("champion")
        emit(item)

    source = MemorySource(closed=False)
    daemon = Daemon(settings, source, [policy], listener=on_item, synchronous_actions=True)
    app = ServingApp(out / "serving" / MODEL)
    records: list[bytes] = []
    correct = np.zeros(n, dtype=bool)
    served_by: list[str] = []
    index_of_prediction = np.zeros(n, dtype=np.int64)
    features = X.to_dict("records")
    for start in range(0, n, chunk):
        version = app.refresh()
        stop = min(n, start + chunk)
        batch = X.iloc[start:stop]
        predictions = app.model.predict(batch)
        scores = app.model.predict_proba(batch)[:, 1]
        pushed: list[bytes] = []
        for i in range(start, stop):
            j = i - label_delay
            if j >= 0:
                pushed.append(_label_event(j, int(y[j]), START_TS + i))
            index_of_prediction[i] = len(records) + len(pushed)
            pushed.append(_prediction_event(i, features[i], int(predictions[i - start]), float(scores[i - start]), START_TS + i))
            correct[i] = predictions[i - start] == y[i]
            served_by.append(version)
        records += pushed
        source.push(pushed)
        daemon.run(count=len(pushed))
        if progress:
            progress(stop, n)
    tail = [_label_event(j, int(y[j]), START_TS + n + k) for k, j in enumerate(range(max(0, n - label_delay), n))]
    records += tail
    source.push(tail)
    source.close_input()
    result.stats = daemon.run()
    daemon.close()
    (out / "events.jsonl").write_bytes(b"\n".join(records) + b"\n")
    assert index_of_prediction[drift_at] == records_before_drift, "scenario index arithmetic"

    served = np.array(served_by)
    new = np.flatnonzero(served != first_version)
    switch = int(new[0]) if len(new) else n
    if len(new):
        result.deployed_at = int(index_of_prediction[switch])
    result.accuracy = {
        "before": _mean(correct[:drift_at]),
        "during": _mean(correct[drift_at:switch]),
        "after": _mean(correct[switch:]) if len(new) else None,
    }
    if result.retrain_at is not None:
        result.report = _report(out, X, index_of_prediction, result.retrain_at)
    return result


def _mean(a: np.ndarray) -> float | None:
    return round(float(a.mean()), 4) if len(a) else None


def _prediction_event(i: int, features: dict[str, Any], prediction: int, score: float, ts: float) -> bytes:
    return orjson.dumps({"model": MODEL, "id": f"a-{i:06d}", "ts": ts, "features": features,
                         "prediction": prediction, "score": round(score, 6)}, option=orjson.OPT_SERIALIZE_NUMPY)


def _label_event(i: int, label: int, ts: float) -> bytes:
    return orjson.dumps({"model": MODEL, "id": f"a-{i:06d}", "ts": ts, "label": label})


def _report(out: Path, X: pd.DataFrame, index_of_prediction: np.ndarray, at: int, window: int = 1000) -> Path | None:
    """Evidently's drift report: the first window (the reference) against the window before the retrain decision."""
    from detectors.evidently_adapter import render_drift_report

    upto = int(np.searchsorted(index_of_prediction, at, "right"))
    current = X.iloc[max(0, upto - window):upto]
    return render_drift_report(X.iloc[:window], current, out / "report.html",
                               title=f"credit: reference vs the {len(current)} predictions before the retrain decision")
