"""Performance without labels: expected accuracy and F1 from calibrated scores (CBPE).

The method is NannyML's confidence-based performance estimation for binary classifiers. If
``score`` is a calibrated probability that the label is ``positive``, an event predicted
positive is a true positive with probability ``score`` and a false positive otherwise; an
event predicted negative is a false negative with probability ``score`` and a true negative
otherwise. Summing these probabilities over a window gives the expected confusion matrix, and
from it the expected accuracy ``(TP + TN) / n`` and F1 ``2 TP / (2 TP + FP + FN)``.

CBPE is only as good as the calibration. Scores are used as they are unless a labeled
``reference`` (``{"score": [...], "label": [...]}``) is given: then they are recalibrated by
histogram binning on the reference (``calibration_bins`` equal-frequency bins, each score
mapped to its bin's positive rate) — NannyML uses isotonic regression; binning is the
bounded-memory equivalent. The estimate cannot see concept drift (a change of P(y | x)):
it tracks covariate shift only, which is what it is for while labels are missing.

Handover to realized metrics: when events of a window already carry their ``label``, the
signal's details hold the realized metric over those events next to the estimate, and once
at least ``handover`` of the window is labeled, ``value`` is the realized metric.

>>> import numpy as np
>>> from driftwarden.detectors.base import Batch
>>> rng = np.random.default_rng(0)
>>> s = rng.beta(4, 2, 1000)
>>> m = EstimatedPerformance(metric="accuracy", window_events=500, threshold=0.7)
>>> b = Batch.of(index=range(1000), score=s, prediction=(s >= 0.5) * 1.0)
>>> [(round(x.value, 3), x.drift) for x in m.update(b)]
[(0.708, False), (0.703, False)]
>>> s = rng.beta(2, 2, 500)   # less confident scores: lower expected accuracy
>>> b = Batch.of(index=range(1000, 1500), score=s, prediction=(s >= 0.5) * 1.0)
>>> [(round(x.value, 3), x.drift) for x in m.update(b)]
[(0.685, True)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Monitor, Signal, column
from driftwarden.detectors.performance import DEFAULT_TOLERANCE
from driftwarden.detectors.windows import Windower

DEFAULT_WINDOW_EVENTS = 1000
"""Events per window: the expected accuracy's own spread is then about 0.01."""

DEFAULT_HANDOVER = 0.9
"""Share of labeled events in a window from which the realized metric replaces the estimate."""

CALIBRATION_BINS = 10
"""Equal-frequency bins of the reference scores for recalibration (10 = NannyML's default
for its calibration check)."""

METRICS = ("accuracy", "f1")


def expected_confusion(score: np.ndarray, predicted_positive: np.ndarray) -> tuple[float, float, float, float]:
    """Expected (TP, FP, FN, TN) counts of calibrated scores and predictions.

    >>> expected_confusion(np.array([0.9, 0.2]), np.array([True, False]))
    (0.9, 0.1, 0.2, 0.8)
    """
    s = np.asarray(score, dtype=np.float64)
    pos = np.asarray(predicted_positive, dtype=bool)
    tp = float(s[pos].sum())
    fp = float((1 - s[pos]).sum())
    fn = float(s[~pos].sum())
    tn = float((1 - s[~pos]).sum())
    return round(tp, 12), round(fp, 12), round(fn, 12), round(tn, 12)


class EstimatedPerformance(Monitor):
    """Expected ``accuracy`` or ``f1`` per window from scores, without labels (CBPE).

    Reads ``score`` (probability of ``positive``) and ``prediction``; without predictions the
    predicted class is ``score >= 0.5``. A window is degraded (``drift``) when the metric is
    below ``threshold``, or without a threshold more than ``tolerance`` below the first
    window's. Memory: one window of scores, predictions and labels, plus the calibration bins.
    """

    kind = "estimated_performance"

    def __init__(
        self,
        metric: str = "accuracy",
        window_events: int | None = DEFAULT_WINDOW_EVENTS,
        window_seconds: float | None = None,
        threshold: float | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        positive: Any = 1,
        handover: float = DEFAULT_HANDOVER,
        reference: Mapping[str, Sequence[Any]] | None = None,
        calibration_bins: int = CALIBRATION_BINS,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric: {metric!r} is not allowed; allowed: {list(METRICS)}")
        if not (isinstance(handover, int | float) and 0 < handover <= 1):
            raise ValueError(f"handover: {handover!r} is not allowed; it must be a share in (0, 1]")
        if not (isinstance(calibration_bins, int) and calibration_bins >= 1):
            raise ValueError(f"calibration_bins: {calibration_bins!r} is not allowed; it must be an integer >= 1")
        if reference is not None and not {"score", "label"} <= set(reference):
            raise ValueError(f"reference: keys {sorted(reference)!r} are not allowed; give both 'score' and 'label'")
        self.metric, self.window_events, self.window_seconds = metric, window_events, window_seconds
        self.threshold, self.tolerance, self.positive = threshold, tolerance, positive
        self.handover, self.reference, self.calibration_bins = handover, reference, calibration_bins
        super().__init__()

    def _reset(self) -> None:
        self._windows = Windower(
            events=self.window_events if self.window_seconds is None else None,
            seconds=self.window_seconds,
        )
        self._baseline: float | None = None
        self._edges: np.ndarray | None = None
        self._rates: np.ndarray | None = None
        if self.reference is not None:
            self._calibrate(
                np.asarray(self.reference["score"], dtype=np.float64),
                column(self.reference["label"]),
            )

    def _calibrate(self, score: np.ndarray, label: np.ndarray) -> None:
        keep = ~np.isnan(score)
        score = score[keep]
        y = np.fromiter((v == self.positive for v in label[keep].tolist()), bool, int(keep.sum()))
        qs = np.quantile(score, np.linspace(0, 1, self.calibration_bins + 1)[1:-1]) if len(score) else np.empty(0)
        edges = np.unique(qs)
        bins = np.searchsorted(edges, score, side="right")
        counts = np.bincount(bins, minlength=len(edges) + 1)
        hits = np.bincount(bins, weights=y.astype(float), minlength=len(edges) + 1)
        rates = np.divide(hits, counts, out=np.full(len(counts), np.nan), where=counts > 0)
        self._edges, self._rates = edges, rates

    def calibrated(self, score: np.ndarray) -> np.ndarray:
        """``score`` mapped through the reference's calibration (unchanged without a reference)."""
        s = np.asarray(score, dtype=np.float64)
        if self._edges is None or self._rates is None:
            return s
        mapped = self._rates[np.searchsorted(self._edges, s, side="right")]
        return np.where(np.isnan(mapped), s, mapped)

    def _select(self, batch: Batch) -> dict[str, np.ndarray]:
        n = len(batch)
        score = np.asarray(batch.score, dtype=np.float64)
        if batch.prediction is not None:
            pred = np.fromiter((v == self.positive for v in batch.prediction.tolist()), bool, n)
        else:
            pred = score >= 0.5
        label = batch.label if batch.label is not None else np.full(n, None, dtype=object)
        if label.dtype != object:
            label = label.astype(object)
            label[np.isnan(np.asarray(batch.label, dtype=np.float64))] = None
        return {"score": score, "predicted": pred.astype(np.float64), "label": label}

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or batch.score is None:
            return []
        out = []
        for w in self._windows.add(batch, self._select):
            score, pred, label = w.columns["score"], w.columns["predicted"] > 0, w.columns["label"]
            ok = ~np.isnan(score)
            p = self.calibrated(score[ok])
            tp, fp, fn, tn = expected_confusion(p, pred[ok])
            n = tp + fp + fn + tn
            if self.metric == "accuracy":
                estimate = (tp + tn) / n if n else math.nan
            else:
                estimate = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
            labeled = np.fromiter((v is not None for v in label.tolist()), bool, len(label))
            realized = None
            if labeled.any():
                yb = np.fromiter((v == self.positive for v in label[labeled].tolist()), bool, int(labeled.sum()))
                pb = pred[labeled]
                if self.metric == "accuracy":
                    realized = float(np.mean(yb == pb))
                else:
                    tp_, fp_, fn_ = (
                        int((yb & pb).sum()),
                        int((~yb & pb).sum()),
                        int((yb & ~pb).sum()),
                    )
                    realized = 2 * tp_ / (2 * tp_ + fp_ + fn_) if tp_ + fp_ + fn_ else None
            share = float(labeled.mean()) if len(labeled) else 0.0
            use_realized = realized is not None and share >= self.handover
            value = realized if use_realized else estimate
            if value is None or math.isnan(value):
                out.append(
                    Signal(
                        kind=self.kind,
                        at=w.at,
                        ts=w.ts,
                        drift=False,
                        window_start=w.start,
                        window_end=w.end,
                        details={"metric": self.metric, "count": len(w)},
                    )
                )
                continue
            if self._baseline is None:
                self._baseline = value
            threshold = self.threshold if self.threshold is not None else self._baseline - self.tolerance
            out.append(
                Signal(
                    kind=self.kind,
                    at=w.at,
                    ts=w.ts,
                    drift=bool(value < threshold),
                    value=float(value),
                    threshold=float(threshold),
                    window_start=w.start,
                    window_end=w.end,
                    details={
                        "metric": self.metric,
                        "count": len(w),
                        "estimated": float(estimate),
                        "realized": realized,
                        "labeled_share": share,
                        "source": "realized" if use_realized else "estimated",
                        "baseline": self._baseline,
                        "expected_confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
                    },
                )
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"windows": self._windows.snapshot(), "baseline": self._baseline}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows.restore(state["windows"])
        self._baseline = state["baseline"]
