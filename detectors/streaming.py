"""Streaming change detectors on one series, backed by River's drift module.

Each detector watches the series named by ``series``: a feature, ``prediction``, ``score``,
``error`` (0/1 mistakes of labeled predictions) or ``residual``. A signal is emitted on the
update where River raises an alarm (an *edge*); missing values are skipped.

>>> import numpy as np
>>> from driftwarden.detectors.base import Batch
>>> rng = np.random.default_rng(7)
>>> x = np.concatenate([rng.normal(0, 1, 1000), rng.normal(1, 1, 1000)])
>>> signals = Adwin(series="x").update(Batch.of(index=range(2000), features={"x": x}))
>>> [s.at for s in signals]
[1055]
"""

from __future__ import annotations

import base64
import math
import pickle
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from driftwarden.detectors.base import Batch, Monitor, Signal, Stream
from driftwarden.detectors.lazy import import_leaf

LABELED_SERIES = frozenset({"error", "residual", "label"})


class RiverDetector(Monitor):
    """A River detector behind the monitor interface. Subclasses name the River class and its arguments."""

    edge = True
    river_class: ClassVar[str]
    """``module:Class`` of the River detector, imported at the first update (River takes a second to import)."""
    river_args: ClassVar[tuple[str, ...]]
    threshold_arg: ClassVar[str | None] = None

    series: str

    @property
    def stream(self) -> Stream:  # type: ignore[override]
        """Errors and residuals exist only on labeled events."""
        return "labeled" if self.series in LABELED_SERIES else "predictions"

    def _reset(self) -> None:
        self._detector: Any = None
        self._seen = 0

    def _river_type(self) -> type:
        module, name = self.river_class.split(":")
        return getattr(import_leaf(module), name)  # not river.drift's __init__: it imports scikit-learn

    def _make(self) -> Any:
        return self._river_type()(**{a: getattr(self, a) for a in self.river_args})

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or not batch.has(self.series):
            return []
        if self._detector is None:
            self._detector = self._make()
        values = np.asarray(batch.series(self.series), dtype=np.float64)
        detector, update = self._detector, self._detector.update
        out: list[Signal] = []
        for i, v in enumerate(values.tolist()):
            if v != v:  # NaN: missing value
                continue
            update(v)
            if detector.drift_detected:
                out.append(self._signal(batch, i))
        self._seen += int(np.count_nonzero(~np.isnan(values)))
        return out

    def _signal(self, batch: Batch, i: int) -> Signal:
        value = getattr(self._detector, "estimation", None)
        threshold = getattr(self, self.threshold_arg) if self.threshold_arg else None
        return Signal(
            kind=self.kind,
            at=int(batch.index[i]),
            ts=float(batch.ts[i]),
            drift=True,
            value=None if value is None or math.isnan(value) else float(value),
            threshold=threshold,
            details={"series": self.series, "seen": self._seen + i + 1},
        )

    def snapshot(self) -> dict[str, Any]:
        # River detectors hold nested buckets; pickled bytes inside JSON keep them exact.
        if self._detector is None:
            return {"river": None, "seen": self._seen}
        return {"river": base64.b64encode(pickle.dumps(self._detector)).decode(), "seen": self._seen}

    def restore(self, state: Mapping[str, Any]) -> None:
        if state["river"] is None:
            self._detector = None
        else:
            self._river_type()  # imported as a leaf first, so unpickling does not import river.drift
            self._detector = pickle.loads(base64.b64decode(state["river"]))
        self._seen = int(state["seen"])


class Adwin(RiverDetector):
    """ADWIN (adaptive windowing): the recommended default — no false alarms on stationary data at
    the default ``delta`` and a delay of about 50 events for a 1-sd mean shift. Memory: O(log n) buckets.

    >>> from driftwarden.detectors.base import Batch
    >>> m = Adwin(series="error")
    >>> m.update(Batch.of(index=[0, 1], prediction=[1, 0], label=[1, 1]))
    []
    >>> m.stream
    'labeled'
    """

    kind = "adwin"
    river_class = "river.drift.adwin:ADWIN"
    river_args = ("delta", "clock", "grace_period")
    threshold_arg = "delta"

    def __init__(self, series: str, delta: float = 0.002, clock: int = 32, grace_period: int = 10) -> None:
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.series, self.delta, self.clock, self.grace_period = series, delta, clock, grace_period
        super().__init__()


class PageHinkley(RiverDetector):
    """Page-Hinkley test for a change of the mean. Memory: O(1).

    >>> PageHinkley(series="score").threshold
    50.0
    """

    kind = "page_hinkley"
    river_class = "river.drift.page_hinkley:PageHinkley"
    river_args = ("min_instances", "delta", "threshold", "alpha", "mode")
    threshold_arg = "threshold"

    def __init__(
        self,
        series: str,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 0.9999,
        mode: str = "both",
    ) -> None:
        if mode not in ("up", "down", "both"):
            raise ValueError(f"mode must be one of 'up', 'down', 'both', got {mode!r}")
        self.series, self.min_instances, self.delta = series, min_instances, delta
        self.threshold, self.alpha, self.mode = threshold, alpha, mode
        super().__init__()


class Kswin(RiverDetector):
    """KSWIN: a Kolmogorov-Smirnov test over a sliding window. Slow per update (a scipy call each);
    memory: ``window_size`` values.

    >>> Kswin(series="x", seed=1).window_size
    100
    """

    kind = "kswin"
    river_class = "river.drift.kswin:KSWIN"
    river_args = ("alpha", "window_size", "stat_size", "seed")
    threshold_arg = "alpha"

    def __init__(
        self, series: str, alpha: float = 0.005, window_size: int = 100, stat_size: int = 30, seed: int = 42
    ) -> None:
        if window_size <= stat_size:
            raise ValueError(f"window_size must be > stat_size ({stat_size}), got {window_size}")
        self.series, self.alpha, self.window_size, self.stat_size, self.seed = (
            series,
            alpha,
            window_size,
            stat_size,
            seed,
        )
        super().__init__()


class Ddm(RiverDetector):
    """DDM: drift detection on a 0/1 error stream. Memory: O(1).

    >>> Ddm().series
    'error'
    """

    kind = "ddm"
    river_class = "river.drift.binary.ddm:DDM"
    river_args = ("warm_start", "warning_threshold", "drift_threshold")
    threshold_arg = "drift_threshold"

    def __init__(
        self, series: str = "error", warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0
    ) -> None:
        self.series, self.warm_start = series, warm_start
        self.warning_threshold, self.drift_threshold = warning_threshold, drift_threshold
        super().__init__()


class Eddm(RiverDetector):
    """EDDM: early drift detection from the distance between errors. Memory: O(1).

    >>> Eddm().alpha
    0.95
    """

    kind = "eddm"
    river_class = "river.drift.binary.eddm:EDDM"
    river_args = ("warm_start", "alpha", "beta")
    threshold_arg = "beta"

    def __init__(self, series: str = "error", warm_start: int = 30, alpha: float = 0.95, beta: float = 0.9) -> None:
        self.series, self.warm_start, self.alpha, self.beta = series, warm_start, alpha, beta
        super().__init__()


class HddmA(RiverDetector):
    """HDDM_A: Hoeffding-bound drift detection on moving averages. Memory: O(1).

    >>> HddmA().drift_confidence
    0.001
    """

    kind = "hddm_a"
    river_class = "river.drift.binary.hddm_a:HDDMA"
    river_args = ("drift_confidence", "warning_confidence", "two_sided_test")
    threshold_arg = "drift_confidence"

    def __init__(
        self,
        series: str = "error",
        drift_confidence: float = 0.001,
        warning_confidence: float = 0.005,
        two_sided_test: bool = False,
    ) -> None:
        self.series, self.drift_confidence = series, drift_confidence
        self.warning_confidence, self.two_sided_test = warning_confidence, two_sided_test
        super().__init__()


class HddmW(RiverDetector):
    """HDDM_W: Hoeffding-bound drift detection on weighted (EWMA) averages. Memory: O(1).

    >>> HddmW().lambda_val
    0.05
    """

    kind = "hddm_w"
    river_class = "river.drift.binary.hddm_w:HDDMW"
    river_args = ("drift_confidence", "warning_confidence", "lambda_val", "two_sided_test")
    threshold_arg = "drift_confidence"

    def __init__(
        self,
        series: str = "error",
        drift_confidence: float = 0.001,
        warning_confidence: float = 0.005,
        lambda_val: float = 0.05,
        two_sided_test: bool = False,
    ) -> None:
        self.series, self.drift_confidence, self.warning_confidence = series, drift_confidence, warning_confidence
        self.lambda_val, self.two_sided_test = lambda_val, two_sided_test
        super().__init__()
