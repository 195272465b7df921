"""Windowed data drift: each feature's current window against a reference, two-sample tests per feature.

The statistics come from :mod:`driftwarden.detectors.stats` (numpy/scipy, equal to Evidently's own numbers);
Evidently itself only renders reports. A window's ``drift`` is Evidently's dataset-drift rule:
the share of drifted features is at least ``drift_share``.

>>> import numpy as np
>>> from driftwarden.detectors.base import Batch
>>> rng = np.random.default_rng(1)
>>> m = FeatureDrift(window_events=500, method="ks")
>>> same = m.update(Batch.of(index=range(1000), features={"a": rng.normal(0, 1, 1000), "b": rng.normal(0, 1, 1000)}))
>>> [(s.window_start, s.window_end, s.drift) for s in same]   # the first window is the reference
[(500, 1000, False)]
>>> live = {"a": rng.normal(1, 1, 500), "b": rng.normal(0, 1, 500)}
>>> moved = m.update(Batch.of(index=range(1000, 1500), features=live))
>>> moved[0].value, moved[0].details["features"]["a"]["drift"], moved[0].details["features"]["b"]["drift"]
(0.5, True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from driftwarden.detectors import stats
from driftwarden.detectors.base import Batch, Monitor, Part, Signal, column
from driftwarden.detectors.windows import Window, Windower, decode

DEFAULT_WINDOW_EVENTS = 2000
"""Events per window: enough for KS to see a 0.1-sd shift, small enough to react within minutes."""

DEFAULT_DRIFT_SHARE = 0.5
"""Evidently's dataset-drift rule: the dataset drifted when half of its features did."""

CORRECTIONS = ("none", "bonferroni", "bh")

DEFAULT_CORRECTION = "bh"
"""Benjamini-Hochberg by default. Measured in bench/detection.py (20 N(0,1) features, windows of
500 events against the first window, 10 seeds x 50 windows): without a correction 58 % of
no-drift windows had at least one "drifted" feature, with BH or Bonferroni 4 %; when all
features moved by 0.25 sd, BH still flagged 18.3 of 20 features per window (Bonferroni 12.4),
so the share-of-features verdict (drift_share 0.5) fired in 100 % of windows (Bonferroni 92 %)
and in none of the no-drift windows."""


class FeatureDrift(Monitor):
    """Reference window vs current window, per feature, with the share of drifted features.

    ``features`` is a list of names or ``"all"`` (every feature seen in the first batch).
    ``reference`` maps feature name → values; without it the first window is the reference.
    ``reference_mode`` ``"rolling"`` makes each window the reference of the next.
    ``per_feature`` overrides ``{"method": ..., "threshold": ...}`` for single features.
    ``correction`` controls false alarms across many p-value tests: ``"bh"`` (Benjamini-Hochberg,
    the default), ``"bonferroni"`` or ``"none"``. Memory: the reference plus one window of the
    watched features.
    """

    kind = "feature_drift"

    def __init__(
        self,
        features: Sequence[str] | str = "all",
        window_events: int | None = DEFAULT_WINDOW_EVENTS,
        window_seconds: float | None = None,
        method: str = "auto",
        threshold: float | None = None,
        drift_share: float = DEFAULT_DRIFT_SHARE,
        correction: str = DEFAULT_CORRECTION,
        per_feature: Mapping[str, Mapping[str, Any]] | None = None,
        reference: Mapping[str, Sequence[Any]] | None = None,
        reference_mode: str = "fixed",
    ) -> None:
        if method != "auto" and method not in stats.METHODS:
            raise ValueError(f"method must be 'auto' or one of {list(stats.METHODS)}, got {method!r}")
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {list(CORRECTIONS)}, got {correction!r}")
        if not 0 < drift_share <= 1:
            raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
        if reference_mode not in ("fixed", "rolling"):
            raise ValueError(f"reference_mode must be 'fixed' or 'rolling', got {reference_mode!r}")
        if isinstance(features, str) and features != "all":
            raise ValueError(f"features must be a list of names or 'all', got {features!r}")
        for name, override in (per_feature or {}).items():
            unknown = sorted(set(override) - {"method", "threshold"}) if isinstance(override, Mapping) else None
            if unknown is None or unknown:
                raise ValueError(f"per_feature.{name} takes 'method' and 'threshold', got {override!r}")
            m = override.get("method", "auto")
            if m != "auto" and m not in stats.METHODS:
                raise ValueError(f"per_feature.{name}.method must be 'auto' or one of {list(stats.METHODS)}, got {m!r}")
        self.features, self.window_events, self.window_seconds = features, window_events, window_seconds
        self.method, self.threshold, self.drift_share, self.correction = method, threshold, drift_share, correction
        self.per_feature, self.reference, self.reference_mode = per_feature, reference, reference_mode
        super().__init__()

    def __repr__(self) -> str:
        return f"FeatureDrift(features={self.features!r}, method={self.method!r}, window_events={self.window_events})"

    def _reset(self) -> None:
        self._windows = Windower(
            events=self.window_events if self.window_seconds is None else None, seconds=self.window_seconds
        )
        self._names: list[str] | None = None if self.features == "all" else list(self.features)
        self._prepared: dict[str, stats.Reference] | None = None
        if self.reference is not None:
            self._set_reference({k: column(v) for k, v in self.reference.items()})

    def _set_reference(self, columns: Mapping[str, np.ndarray]) -> None:
        """Only the prepared form is kept (sorted values, category counts): not the raw window."""
        self._prepared = {
            name: stats.Reference(values, categorical=values.dtype == object) for name, values in columns.items()
        }
        self._reference_state: Part | None = None

    def preload(self) -> None:
        stats.preload()

    def _select(self, batch: Batch) -> dict[str, np.ndarray]:
        if self._names is None:
            self._names = sorted(batch.features)
        return {n: batch.features[n] for n in self._names if n in batch.features}

    def update(self, batch: Batch) -> list[Signal]:
        out = []
        for window in self._windows.add(batch, self._select):
            if self._prepared is None:
                self._set_reference(window.columns)
                continue
            out.append(self._compare(window))
            if self.reference_mode == "rolling":
                self._set_reference(window.columns)
        return out

    def _compare(self, window: Window) -> Signal:
        per = self.per_feature or {}
        results: dict[str, stats.TestResult] = {}
        skipped: dict[str, str] = {}
        assert self._prepared is not None
        for name, ref in self._prepared.items():
            current = window.columns.get(name)
            if current is None:
                continue
            override = per.get(name, {})
            method = override.get("method", self.method)
            if ref.categorical and method in stats.NUMERIC_ONLY:
                method = "auto"  # a numeric-only test asked for all features: categorical ones get Evidently's choice
            threshold = override.get("threshold", self.threshold)
            try:
                results[name] = stats.two_sample(method, ref, current, threshold=threshold)
            except ValueError as e:  # e.g. nothing but missing values in the window: no verdict, no crash
                skipped[name] = str(e)
        drifted = self._verdicts(results)
        n = len(results)
        share = sum(drifted.values()) / n if n else 0.0
        features = {
            name: {
                "method": r.method,
                "value": r.statistic,
                "p_value": r.p_value,
                "threshold": r.threshold,
                "drift": drifted[name],
            }
            for name, r in results.items()
        }
        return Signal(
            kind=self.kind,
            at=window.at,
            ts=window.ts,
            drift=share >= self.drift_share and n > 0,
            value=share,
            threshold=self.drift_share,
            window_start=window.start,
            window_end=window.end,
            details={
                "share_drifted": share,
                "drifted": sum(drifted.values()),
                "count": n,
                "rows": len(window),
                "features": features,
                "skipped": skipped,
            },
        )

    def _verdicts(self, results: Mapping[str, stats.TestResult]) -> dict[str, bool]:
        """Distance methods compare with their threshold; p-values are corrected for multiple tests first."""
        verdicts = {name: r.drift for name, r in results.items()}
        tested = [name for name, r in results.items() if r.p_value is not None]
        if self.correction == "none" or len(tested) < 2:
            return verdicts
        p = np.array([results[n].p_value for n in tested], dtype=float)
        if self.correction == "bonferroni":
            q = np.minimum(1.0, p * len(p))
        else:
            q = stats.bh_adjusted(p)
        for name, q_value in zip(tested, q, strict=True):
            verdicts[name] = bool(q_value < results[name].threshold)
        return verdicts

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": self._windows.snapshot(),
            "names": self._names,
            "reference": self._reference_snapshot(),
        }

    def _reference_snapshot(self) -> Part | None:
        """The prepared reference's state, made once per reference (a checkpoint does not re-encode it)."""
        if self._prepared is None:
            return None
        if getattr(self, "_reference_state", None) is None:
            self._reference_state = Part({n: r.state() for n, r in self._prepared.items()})
        return self._reference_state

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows.restore(state["windows"])
        self._names = state["names"]
        if state["reference"] is not None:
            reference = Part.content(state["reference"])
            self._prepared = {name: _restore_reference(v) for name, v in reference.items()}
            kept = state["reference"]
            self._reference_state = kept if isinstance(kept, Part) else Part(reference)


def _restore_reference(state: Mapping[str, Any]) -> stats.Reference:
    if "dtype" in state:  # earlier snapshots held the raw reference window
        values = decode(state)
        return stats.Reference(values, categorical=values.dtype == object)
    return stats.Reference.from_state(state)


class PredictionDrift(FeatureDrift):
    """:class:`FeatureDrift` over the model's outputs: ``prediction`` and ``score``.

    ``series`` is a list of ``"prediction"`` and/or ``"score"`` or ``"all"`` (those present in
    the first batch). Predicted classes take the categorical tests (``auto``: z-test for two
    classes, chi-square for more), scores the numeric ones. ``reference`` maps ``"prediction"``
    / ``"score"`` to values. Memory: the reference plus one window of the two columns.

    >>> import numpy as np
    >>> from driftwarden.detectors.base import Batch
    >>> rng = np.random.default_rng(3)
    >>> m = PredictionDrift(window_events=400)
    >>> s = rng.beta(2, 5, 800)
    >>> m.update(Batch.of(index=range(800), score=s, prediction=(s > 0.5).astype(float)))[0].drift
    False
    >>> s = rng.beta(5, 2, 400)
    >>> sig = m.update(Batch.of(index=range(800, 1200), score=s, prediction=(s > 0.5).astype(float)))
    >>> sig[0].drift, sorted(sig[0].details["features"])
    (True, ['prediction', 'score'])
    """

    kind = "prediction_drift"
    OUTPUTS = ("prediction", "score")

    def __init__(
        self,
        series: Sequence[str] | str = "all",
        window_events: int | None = DEFAULT_WINDOW_EVENTS,
        window_seconds: float | None = None,
        method: str = "auto",
        threshold: float | None = None,
        drift_share: float = DEFAULT_DRIFT_SHARE,
        correction: str = DEFAULT_CORRECTION,
        per_feature: Mapping[str, Mapping[str, Any]] | None = None,
        reference: Mapping[str, Sequence[Any]] | None = None,
        reference_mode: str = "fixed",
    ) -> None:
        if isinstance(series, str):
            if series != "all":
                raise ValueError(f"series: {series!r} is not allowed; give 'all' or a list of {list(self.OUTPUTS)}")
        else:
            bad = [s for s in series if s not in self.OUTPUTS]
            if bad or not series:
                raise ValueError(
                    f"series: {list(series)!r} is not allowed; give 'all' or a list of {list(self.OUTPUTS)}"
                )
        self.series = series if isinstance(series, str) else list(series)
        super().__init__(
            features=self.series,
            window_events=window_events,
            window_seconds=window_seconds,
            method=method,
            threshold=threshold,
            drift_share=drift_share,
            correction=correction,
            per_feature=per_feature,
            reference=reference,
            reference_mode=reference_mode,
        )

    def __repr__(self) -> str:
        return f"PredictionDrift(series={self.series!r}, method={self.method!r}, window_events={self.window_events})"

    def _select(self, batch: Batch) -> dict[str, np.ndarray]:
        if self._names is None:
            self._names = [n for n in self.OUTPUTS if batch.has(n)]
        out = {}
        for name in self._names:
            values = batch.series(name) if batch.has(name) else np.full(len(batch), np.nan)
            out[name] = values if values.dtype == object else np.asarray(values, dtype=np.float64)
        return out
