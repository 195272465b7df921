"""The first monitors against independent references: River's ADWIN, Evidently's drift numbers, scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from driftwarden.detectors.base import Batch
from driftwarden.detectors.drift import FeatureDrift
from driftwarden.detectors.evidently_adapter import evidently_column_drift
from driftwarden.detectors.performance import Performance
from driftwarden.detectors.streaming import Adwin
from river import drift
from sklearn.metrics import accuracy_score


def feed(monitor, batch: Batch, size: int) -> list:
    out = []
    for start in range(0, len(batch), size):
        out += monitor.update(batch.take(np.arange(start, min(start + size, len(batch)))))
    return out


def test_adwin_alarms_where_river_does_for_any_batch_size() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, 3000), rng.normal(0.8, 1, 3000), rng.normal(-0.5, 1, 3000)])
    raw = drift.ADWIN()
    expected = []
    for i, v in enumerate(x):
        raw.update(v)
        if raw.drift_detected:
            expected.append(i)
    assert len(expected) >= 2
    batch = Batch.of(index=range(len(x)), features={"x": x})
    for size in (1, 97, 1000, len(x)):
        assert [s.at for s in feed(Adwin(series="x"), batch, size)] == expected


def test_feature_drift_equals_evidentlys_numbers() -> None:
    rng = np.random.default_rng(11)
    n = 800
    ref = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.exponential(1, n), "c": rng.choice(["x", "y", "z"], n)})
    cur = pd.DataFrame(
        {
            "a": rng.normal(0.3, 1, n),
            "b": rng.exponential(1.2, n),
            "c": rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]),
        }
    )
    frame = pd.concat([ref, cur], ignore_index=True)
    batch = Batch.of(index=range(2 * n), features={k: frame[k].tolist() for k in frame})
    for method in ("ks", "psi", "wasserstein", "jensenshannon", "auto"):
        (signal,) = FeatureDrift(window_events=n, method=method).update(batch)
        methods = {c: signal.details["features"][c]["method"] for c in frame}
        theirs = evidently_column_drift(ref, cur, methods, categorical=["c"])
        for col, ours in signal.details["features"].items():
            assert ours["method"] == theirs[col].method
            assert ours["drift"] == theirs[col].drift
            if theirs[col].p_value is not None:
                assert ours["p_value"] == pytest.approx(theirs[col].p_value, abs=1e-6)
            else:
                assert ours["value"] == pytest.approx(theirs[col].statistic, abs=1e-6)
        assert signal.value == sum(f["drift"] for f in signal.details["features"].values()) / 3
        if method in ("ks", "wasserstein"):  # numeric-only tests: the categorical feature gets Evidently's auto choice
            assert methods["c"] == "chisquare"
        assert (signal.window_start, signal.window_end, signal.at) == (n, 2 * n, 2 * n - 1)


def test_performance_accuracy_equals_sklearn_per_window_for_any_batch_size() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 5000)
    p = np.where(rng.random(5000) < np.linspace(0.95, 0.6, 5000), y, 1 - y)
    batch = Batch.of(index=range(5000), prediction=p, label=y)
    expected = [accuracy_score(y[i : i + 1000], p[i : i + 1000]) for i in range(0, 5000, 1000)]
    for size in (7, 1000, 5000):
        signals = feed(Performance(window_events=1000, threshold=0.8), batch, size)
        assert [s.value for s in signals] == pytest.approx(expected, abs=1e-12)
        assert [s.drift for s in signals] == [v < 0.8 for v in expected]
        assert [(s.window_start, s.window_end) for s in signals] == [(i, i + 1000) for i in range(0, 5000, 1000)]


def test_time_windows_close_on_event_time() -> None:
    ts = np.arange(0, 300, 1.0)  # one event per second
    y = np.ones(300)
    signals = Performance(window_events=None, window_seconds=60.0).update(
        Batch.of(index=range(300), ts=ts, prediction=y, label=y)
    )
    assert [(s.window_start, s.window_end, s.at) for s in signals] == [
        (0, 60, 60),
        (60, 120, 120),
        (120, 180, 180),
        (180, 240, 240),
    ]
