"""Model performance over windows of labeled predictions.

>>> from detectors.base import Batch
>>> m = Performance(metric="accuracy", window_events=4, threshold=0.8)
>>> [(s.value, s.drift) for s in m.update(Batch.of(index=range(8), prediction=[1, 1, 0, 0, 1, 0, 0, 0], label=[1, 1, 0, 0, 1, 1, 1, 0]))]
[(1.0, False), (0.5, True)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from detectors.base import Batch, Monitor, Signal
from detectors.windows import Windower

DEFAULT_WINDOW_EVENTS = 1000
"""Labeled events per window: the standard error of an accuracy near 0.9 is then about 0.01."""

DEFAULT_TOLERANCE = 0.05
"""Without a threshold, a window is degraded when it falls this far below the first window."""


def _as_binary(y: np.ndarray, positive: Any) -> np.ndarray:
    return np.fromiter((v == positive for v in y.tolist()), bool, len(y))


def accuracy(y: np.ndarray, p: np.ndarray, positive: Any = 1) -> float:
    return float(np.mean(np.fromiter((a == b for a, b in zip(y.tolist(), p.tolist(), strict=True)), bool, len(y))))


def precision(y: np.ndarray, p: np.ndarray, positive: Any = 1) -> float:
    yb, pb = _as_binary(y, positive), _as_binary(p, positive)
    predicted = int(pb.sum())
    return float((yb & pb).sum() / predicted) if predicted else 0.0


def recall(y: np.ndarray, p: np.ndarray, positive: Any = 1) -> float:
    yb, pb = _as_binary(y, positive), _as_binary(p, positive)
    actual = int(yb.sum())
    return float((yb & pb).sum() / actual) if actual else 0.0


def f1(y: np.ndarray, p: np.ndarray, positive: Any = 1) -> float:
    pr, rc = precision(y, p, positive), recall(y, p, positive)
    return 2 * pr * rc / (pr + rc) if pr + rc else 0.0


def mae(y: np.ndarray, p: np.ndarray, positive: Any = None) -> float:
    return float(np.mean(np.abs(y.astype(float) - p.astype(float))))


def rmse(y: np.ndarray, p: np.ndarray, positive: Any = None) -> float:
    return float(math.sqrt(np.mean((y.astype(float) - p.astype(float)) ** 2)))


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1, "mae": mae, "rmse": rmse,
}
LOWER_IS_BETTER = frozenset({"mae", "rmse"})


class Performance(Monitor):
    """A performance metric over tumbling windows of labeled predictions.

    A window is degraded (``drift``) when the metric is worse than ``threshold``; without a
    threshold, when it is worse than the first window's value by more than ``tolerance``.
    Memory: one window of labels and predictions.
    """

    kind = "performance"
    stream = "labeled"

    def __init__(
        self,
        metric: str = "accuracy",
        window_events: int | None = DEFAULT_WINDOW_EVENTS,
        window_seconds: float | None = None,
        threshold: float | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        positive: Any = 1,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
        self.metric, self.window_events, self.window_seconds = metric, window_events, window_seconds
        self.threshold, self.tolerance, self.positive = threshold, tolerance, positive
        super().__init__()

    def _reset(self) -> None:
        self._windows = Windower(
            events=self.window_events if self.window_seconds is None else None, seconds=self.window_seconds
        )
        self._baseline: float | None = None

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or batch.label is None or batch.prediction is None:
            return []
        windows = self._windows.add(batch, lambda b: {"label": b.label, "prediction": b.prediction})  # type: ignore[dict-item]
        out = []
        for w in windows:
            value = METRICS[self.metric](w.columns["label"], w.columns["prediction"], self.positive)
            if self._baseline is None:
                self._baseline = value
            threshold = self.threshold
            if threshold is None:
                sign = 1 if self.metric in LOWER_IS_BETTER else -1
                threshold = self._baseline + sign * self.tolerance
            worse = value > threshold if self.metric in LOWER_IS_BETTER else value < threshold
            out.append(Signal(
                kind=self.kind, at=w.at, ts=w.ts, drift=bool(worse), value=value, threshold=threshold,
                window_start=w.start, window_end=w.end,
                details={"metric": self.metric, "count": len(w), "baseline": self._baseline},
            ))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"windows": self._windows.snapshot(), "baseline": self._baseline}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows.restore(state["windows"])
        self._baseline = state["baseline"]
