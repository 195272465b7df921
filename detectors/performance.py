"""Model performance over windows of labeled predictions.

>>> from driftwarden.detectors.base import Batch
>>> m = Performance(metric="accuracy", window_events=4, threshold=0.8)
>>> batch = Batch.of(index=range(8), prediction=[1, 1, 0, 0, 1, 0, 0, 0], label=[1, 1, 0, 0, 1, 1, 1, 0])
>>> [(s.value, s.drift) for s in m.update(batch)]
[(1.0, False), (0.5, True)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Monitor, Signal
from driftwarden.detectors.windows import Windower

DEFAULT_WINDOW_EVENTS = 1000
"""Labeled events per window: the standard error of an accuracy near 0.9 is then about 0.01."""

DEFAULT_TOLERANCE = 0.05
"""Without a threshold, a window is degraded when it falls this far below the first window."""


def _as_binary(y: np.ndarray, positive: Any) -> np.ndarray:
    return np.fromiter((v == positive for v in y.tolist()), bool, len(y))


def accuracy(y: np.ndarray, p: np.ndarray, positive: Any = 1) -> float:
    if y.dtype.kind == "f" and p.dtype.kind == "f":  # numbers: the same comparisons, in C
        return float(np.mean(y == p))
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


def roc_auc(y: np.ndarray, score: np.ndarray, positive: Any = 1) -> float:
    """Area under the ROC curve of ``score`` for ``y == positive`` (ties count half, as in
    scikit-learn); NaN when the window has one class only."""
    yb = _as_binary(y, positive)
    n_pos = int(yb.sum())
    n_neg = len(yb) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    from scipy.stats import rankdata

    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[yb].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, score: np.ndarray, positive: Any = 1) -> float:
    """Mean negative log-likelihood of ``score`` = P(y == positive), clipped to [eps, 1 - eps]
    with float64's eps as scikit-learn does."""
    yb = _as_binary(y, positive)
    eps = np.finfo(np.float64).eps
    p = np.clip(np.asarray(score, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(np.where(yb, np.log(p), np.log1p(-p))))


def r2(y: np.ndarray, p: np.ndarray, positive: Any = None) -> float:
    """Coefficient of determination; for a constant ``y`` 1.0 if every prediction is exact, else
    0.0 (scikit-learn's ``force_finite``)."""
    yf, pf = y.astype(float), p.astype(float)
    ss_res = float(np.sum((yf - pf) ** 2))
    ss_tot = float(np.sum((yf - yf.mean()) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


def mae(y: np.ndarray, p: np.ndarray, positive: Any = None) -> float:
    return float(np.mean(np.abs(y.astype(float) - p.astype(float))))


def rmse(y: np.ndarray, p: np.ndarray, positive: Any = None) -> float:
    return float(math.sqrt(np.mean((y.astype(float) - p.astype(float)) ** 2)))


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "roc_auc": roc_auc,
    "log_loss": log_loss,
    "mae": mae,
    "rmse": rmse,
    "r2": r2,
}
LOWER_IS_BETTER = frozenset({"mae", "rmse", "log_loss"})
FROM_SCORE = frozenset({"roc_auc", "log_loss"})
"""Metrics computed from ``score`` (the positive class's probability), not from ``prediction``."""


class Performance(Monitor):
    """A performance metric over tumbling windows of labeled predictions.

    A window is degraded (``drift``) when the metric is worse than ``threshold``; without a
    threshold, when it is worse than the first window's value by more than ``tolerance``.
    ``roc_auc`` and ``log_loss`` read ``score`` (the probability of ``positive``); the others
    read ``prediction``. A window whose metric is undefined (AUC with one class) has
    ``value`` None and no drift. Memory: one window of labels and predictions (or scores).
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
        source = "score" if self.metric in FROM_SCORE else "prediction"
        if len(batch) == 0 or batch.label is None or getattr(batch, source) is None:
            return []
        windows = self._windows.add(batch, lambda b: {"label": b.label, "prediction": getattr(b, source)})
        out = []
        for w in windows:
            value = METRICS[self.metric](w.columns["label"], w.columns["prediction"], self.positive)
            if math.isnan(value):
                out.append(
                    Signal(
                        kind=self.kind,
                        at=w.at,
                        ts=w.ts,
                        drift=False,
                        value=None,
                        threshold=self.threshold,
                        window_start=w.start,
                        window_end=w.end,
                        details={"metric": self.metric, "count": len(w), "baseline": self._baseline},
                    )
                )
                continue
            if self._baseline is None:
                self._baseline = value
            threshold = self.threshold
            if threshold is None:
                sign = 1 if self.metric in LOWER_IS_BETTER else -1
                threshold = self._baseline + sign * self.tolerance
            worse = value > threshold if self.metric in LOWER_IS_BETTER else value < threshold
            out.append(
                Signal(
                    kind=self.kind,
                    at=w.at,
                    ts=w.ts,
                    drift=bool(worse),
                    value=value,
                    threshold=threshold,
                    window_start=w.start,
                    window_end=w.end,
                    details={"metric": self.metric, "count": len(w), "baseline": self._baseline},
                )
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"windows": self._windows.snapshot(), "baseline": self._baseline}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows.restore(state["windows"])
        self._baseline = state["baseline"]
