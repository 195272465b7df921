"""Fairness across groups over windows, with confidence intervals so that small groups do not raise
false alarms.

Each window splits its rows into groups by ``attribute`` (a name found in the batch's attributes
or features; a list of names makes intersectional groups such as ``"female|young"``), computes a
rate per group, and reports the gap between groups — Fairlearn's ``between_groups`` definitions,
which the tests check to 1e-9:

=====================  ===========================================  ======================
kind                   per-group rate                               value (``difference``)
=====================  ===========================================  ======================
demographic_parity     selection rate P(prediction = positive)      max - min
equal_opportunity      true-positive rate (recall)                  max - min
equalized_odds         true- and false-positive rates               larger of the two gaps
predictive_parity      precision                                    max - min
group_performance      any of :data:`GROUP_METRICS`                 max - min (worst gap)
=====================  ===========================================  ======================

``measure: ratio`` reports ``min / max`` instead (disparate impact; for equalized odds the smaller
of the two ratios); ``four_fifths: true`` on demographic parity is the EEOC rule: drift when the
ratio falls below 0.8. ``bias_drift: true`` reports the change of the metric against a reference
(the first window with a defined value, or ``reference``) in the harmful direction.

Intervals (see :mod:`driftwarden.detectors.intervals`): ``interval: wilson`` — Wilson per group, Newcombe's
hybrid score interval for the gap (Bonferroni over pairs beyond two groups), simultaneous Wilson
bounds for the ratio; ``interval: bootstrap`` — a seeded parametric bootstrap of the window;
``auto`` (default) is Wilson wherever the rate is a proportion and bootstrap otherwise (F1, MAE,
RMSE). ``require_interval: true`` makes ``drift`` hold only when the whole interval is beyond the
threshold. Groups with fewer than ``min_group_size`` rows in a rate's denominator are reported with
``eligible: false`` but left out of the value. Memory: one window of the watched columns.

>>> from driftwarden.detectors.base import Batch
>>> m = DemographicParity(attribute="sex", window_events=8, min_group_size=1, threshold=0.2)
>>> b = Batch.of(index=range(8), attributes={"sex": ["f", "m"] * 4},
...               prediction=[0, 1, 1, 1, 0, 1, 0, 1])
>>> [s] = m.update(b)
>>> s.value, s.details["ratio"], s.drift, {g: v["rate"] for g, v in s.details["groups"].items()}
(0.75, 0.25, True, {'f': 0.25, 'm': 1.0})
>>> round(s.details["ci_low"], 3), round(s.details["ci_high"], 3)   # four rows per group: wide
(0.085, 0.954)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from driftwarden.detectors import intervals
from driftwarden.detectors.base import Batch, Monitor, Signal
from driftwarden.detectors.windows import Window, Windower

DEFAULT_WINDOW_EVENTS = 5000
"""Rows per window: a 30%-sized group then has ~1500 rows, a Wilson half-width of about 0.025."""

DEFAULT_MIN_GROUP_SIZE = 30
"""Rows in a rate's denominator below which a group is reported, not judged: its rate is noise."""

DEFAULT_CONFIDENCE = 0.95
DEFAULT_THRESHOLD = 0.1
"""A 10-point gap in rates: the usual tolerance for parity differences (e.g. Fairlearn's guides)."""

FOUR_FIFTHS = 0.8
"""The EEOC four-fifths rule: a selection-rate ratio below 0.8 is evidence of adverse impact."""

DEFAULT_DRIFT_THRESHOLD = 0.05
"""Bias drift: a 5-point worsening against the reference is worth a look."""

DEFAULT_RESAMPLES = 200
"""Bootstrap replicates per window: percentile bounds to about ±0.01 of a rate, in milliseconds."""

MAX_TRACKED_GROUPS = 10_000
"""Group names remembered to flag new groups: bounded memory for a high-cardinality attribute."""

MISSING = "missing"
"""The group of rows whose attribute value is missing."""

MEASURES = ("difference", "ratio")
INTERVALS = ("auto", "wilson", "bootstrap")

# A proportion metric: (numerator, denominator) masks from the masks
# (predicted positive, actually positive, correct).
Masks = tuple[np.ndarray, np.ndarray, np.ndarray]
PROPORTIONS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "selection_rate": lambda p, y, c: (p, np.ones_like(p)),
    "tpr": lambda p, y, c: (p & y, y),
    "fpr": lambda p, y, c: (p & ~y, ~y),
    "tnr": lambda p, y, c: (~p & ~y, ~y),
    "fnr": lambda p, y, c: (~p & y, y),
    "precision": lambda p, y, c: (p & y, p),
    "accuracy": lambda p, y, c: (c, np.ones_like(c)),
    "error_rate": lambda p, y, c: (~c, np.ones_like(c)),
}
PROPORTIONS["recall"] = PROPORTIONS["tpr"]
OTHER_METRICS = ("f1", "mae", "rmse")
GROUP_METRICS = tuple(PROPORTIONS) + OTHER_METRICS
LOWER_IS_BETTER = frozenset({"fpr", "fnr", "error_rate", "mae", "rmse"})


class _GroupFairness(Monitor):
    """The machinery the fairness kinds share: a rate or metric per group, its gap, its interval.

    >>> _GroupFairness.__subclasses__()[0].kind
    'demographic_parity'
    """

    kind: ClassVar[str] = "_group_fairness"
    components: ClassVar[tuple[str, ...]] = ()
    """The per-group metrics whose gaps make the value (two for equalized odds)."""

    def __init__(
        self,
        attribute: str | Sequence[str],
        window_events: int | None = DEFAULT_WINDOW_EVENTS,
        window_seconds: float | None = None,
        threshold: float | None = None,
        measure: str = "difference",
        confidence: float = DEFAULT_CONFIDENCE,
        require_interval: bool = False,
        min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
        positive: Any = 1,
        bias_drift: bool = False,
        reference: float | None = None,
        interval: str = "auto",
        resamples: int = DEFAULT_RESAMPLES,
        seed: int = 0,
    ) -> None:
        if isinstance(attribute, str):
            if not attribute:
                raise ValueError("attribute must be a non-empty name or a list of names, got ''")
        elif not attribute or not all(isinstance(a, str) and a for a in attribute):
            raise ValueError(f"attribute must be a name or a non-empty list of names, got {attribute!r}")
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {list(MEASURES)}, got {measure!r}")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if not (isinstance(min_group_size, int) and min_group_size >= 1):
            raise ValueError(f"min_group_size must be an integer >= 1, got {min_group_size!r}")
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {list(INTERVALS)}, got {interval!r}")
        if not (isinstance(resamples, int) and resamples >= 10):
            raise ValueError(f"resamples must be an integer >= 10, got {resamples!r}")
        if reference is not None and not bias_drift:
            raise ValueError(f"reference={reference!r} is the metric's reference for bias drift: set bias_drift: true")
        self.attribute = attribute if isinstance(attribute, str) else list(attribute)
        self.window_events, self.window_seconds = window_events, window_seconds
        self.threshold, self.measure, self.confidence = threshold, measure, confidence
        self.require_interval, self.min_group_size, self.positive = (
            require_interval,
            min_group_size,
            positive,
        )
        self.bias_drift, self.reference = bias_drift, reference
        self.interval, self.resamples, self.seed = interval, resamples, seed
        super().__init__()

    # -- configuration ----------------------------------------------------------------------------

    @property
    def attributes(self) -> list[str]:
        return [self.attribute] if isinstance(self.attribute, str) else list(self.attribute)

    @property
    def effective_measure(self) -> str:
        return self.measure

    @property
    def effective_threshold(self) -> float:
        if self.threshold is not None:
            return float(self.threshold)
        if self.bias_drift:
            return DEFAULT_DRIFT_THRESHOLD
        return FOUR_FIFTHS if self.effective_measure == "ratio" else DEFAULT_THRESHOLD

    @property
    def higher_is_worse(self) -> bool:
        """Differences and bias drift alarm above the threshold; ratios alarm below it."""
        return self.bias_drift or self.effective_measure == "difference"

    def _method(self) -> str:
        if self.interval != "auto":
            return self.interval
        return "wilson" if all(c in PROPORTIONS for c in self.components) else "bootstrap"

    # -- runtime -----------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._windows = Windower(
            events=self.window_events if self.window_seconds is None else None,
            seconds=self.window_seconds,
        )
        self._reference: float | None = self.reference
        self._seen: set[str] = set()

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or batch.prediction is None or (self.stream == "labeled" and batch.label is None):
            return []
        return [self._signal(w) for w in self._windows.add(batch, self._select)]

    def _select(self, batch: Batch) -> dict[str, np.ndarray]:
        cols = {f"attr:{a}": batch.series(a) for a in self.attributes}
        cols["prediction"] = batch.prediction  # type: ignore[assignment]
        if self.stream == "labeled":
            cols["label"] = batch.label  # type: ignore[assignment]
        return cols

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": self._windows.snapshot(),
            "reference": self._reference,
            "seen": sorted(self._seen),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows.restore(state["windows"])
        self._reference = state["reference"]
        self._seen = set(state["seen"])

    # -- one window --------------------------------------------------------------------------------

    def _signal(self, w: Window) -> Signal:
        codes, names = group_codes([w.columns[f"attr:{a}"] for a in self.attributes])
        k = len(names)
        counts = np.bincount(codes, minlength=k)
        new = [n for n in names if n not in self._seen]
        if len(self._seen) < MAX_TRACKED_GROUPS:
            self._seen.update(new[: MAX_TRACKED_GROUPS - len(self._seen)])
        pred = w.columns["prediction"]
        label = w.columns.get("label")
        rng = np.random.default_rng([self.seed, w.start])
        parts = [self._component(c, codes, k, pred, label, rng) for c in self.components]
        groups: dict[str, dict[str, Any]] = {}
        for g, name in enumerate(names):
            entry: dict[str, Any] = {"count": int(counts[g])}
            for part in parts:
                entry.update(part.group_details(g, first=part is parts[0]))
            entry["eligible"] = all(bool(part.eligible[g]) for part in parts)
            groups[name] = entry
        diff, ratio, (d_lo, d_hi), (r_lo, r_hi), ends = self._combine(parts, names)
        metric = diff if self.effective_measure == "difference" else ratio
        lo, hi = (d_lo, d_hi) if self.effective_measure == "difference" else (r_lo, r_hi)
        details: dict[str, Any] = {
            "measure": self.effective_measure,
            "difference": diff,
            "ratio": ratio,
            "difference_ci_low": d_lo,
            "difference_ci_high": d_hi,
            "ratio_ci_low": r_lo,
            "ratio_ci_high": r_hi,
            "confidence": self.confidence,
            "interval": self._method(),
            "count": len(w),
            "groups": groups,
            "excluded": [n for n in names if not groups[n]["eligible"]],
            "new_groups": new,
            "max_group": ends[1],
            "min_group": ends[0],
        }
        if len(parts) > 1:
            for part in parts:
                details[f"{part.name}_difference"] = part.difference
        value: float | None = metric
        if self.bias_drift:
            details.update({"metric": metric, "metric_ci_low": lo, "metric_ci_high": hi})
            if self._reference is None and metric is not None:
                self._reference = metric
            details["reference"] = self._reference
            if metric is None or self._reference is None:
                value, lo, hi = None, -1.0, 1.0
            elif self.effective_measure == "difference":
                value, lo, hi = metric - self._reference, lo - self._reference, hi - self._reference
            else:
                value, lo, hi = self._reference - metric, self._reference - hi, self._reference - lo
        threshold = self.effective_threshold
        if value is None:
            drift = False
        elif self.higher_is_worse:
            drift = (lo if self.require_interval else value) > threshold
        else:
            drift = (hi if self.require_interval else value) < threshold
        details["ci_low"], details["ci_high"] = lo, hi
        return Signal(
            kind=self.kind,
            at=w.at,
            ts=w.ts,
            drift=bool(drift),
            value=value,
            threshold=threshold,
            window_start=w.start,
            window_end=w.end,
            details=details,
        )

    def _component(
        self,
        name: str,
        codes: np.ndarray,
        k: int,
        pred: np.ndarray,
        label: np.ndarray | None,
        rng: np.random.Generator,
    ) -> _Part:
        p = is_value(pred, self.positive)
        y = is_value(label, self.positive) if label is not None else np.zeros_like(p)
        correct = equal(label, pred) if label is not None else np.zeros_like(p)
        method = "wilson" if self.interval == "auto" and name in PROPORTIONS else self.interval
        if method == "auto":
            method = "bootstrap"
        if name in PROPORTIONS:
            num, den = PROPORTIONS[name](p, y, correct)
            x = np.bincount(codes, weights=num, minlength=k)
            n = np.bincount(codes, weights=den, minlength=k)
            eligible = n >= self.min_group_size
            rates = np.divide(x, n, out=np.full(k, np.nan), where=n > 0)
            lo, hi = intervals.wilson(x, n, self.confidence)
            reps = None
            if method == "bootstrap":
                safe = np.where(n > 0, n, 1).astype(np.int64)
                reps = rng.binomial(safe, np.nan_to_num(rates), size=(self.resamples, k)) / safe
                lo, hi = _group_percentiles(reps, self.confidence)
            return _Part(name, rates, n, eligible, lo, hi, x=x, replicates=reps)
        counts = np.bincount(codes, minlength=k)
        eligible = counts >= self.min_group_size
        if name == "f1":
            cells = np.stack(
                [np.bincount(codes, weights=m, minlength=k) for m in (p & y, p & ~y, ~p & y, ~p & ~y)],
                axis=1,
            )
            values = _f1(cells[:, 0], cells[:, 1], cells[:, 2])
            reps = np.empty((self.resamples, k))
            for g in range(k):
                if counts[g]:
                    draw = rng.multinomial(counts[g], cells[g] / counts[g], size=self.resamples)
                    reps[:, g] = _f1(draw[:, 0], draw[:, 1], draw[:, 2])
                else:
                    reps[:, g] = np.nan
        else:
            err = np.asarray(label, float) - np.asarray(pred, float)  # type: ignore[arg-type]
            e = np.abs(err) if name == "mae" else err * err
            values = np.divide(
                np.bincount(codes, weights=e, minlength=k),
                counts,
                out=np.full(k, np.nan),
                where=counts > 0,
            )
            reps = np.full((self.resamples, k), np.nan)
            for g in range(k):
                rows = e[codes == g]
                if len(rows):
                    weights = rng.multinomial(len(rows), np.full(len(rows), 1 / len(rows)), size=self.resamples)
                    reps[:, g] = weights @ rows / len(rows)
            if name == "rmse":
                values, reps = np.sqrt(values), np.sqrt(reps)
        lo, hi = _group_percentiles(reps, self.confidence)
        return _Part(name, values, counts.astype(float), eligible, lo, hi, replicates=reps)

    def _combine(
        self, parts: list[_Part], names: list[str]
    ) -> tuple[
        float | None,
        float | None,
        tuple[float, float],
        tuple[float, float],
        tuple[str | None, str | None],
    ]:
        """The gap and the ratio over eligible groups, with intervals, across the components."""
        if any(int(part.eligible.sum()) < 2 for part in parts):
            return None, None, (0.0, 1.0), (0.0, 1.0), (None, None)
        level = 1 - (1 - self.confidence) / len(parts)  # Bonferroni across components
        diffs, ratios, d_ints, r_ints = [], [], [], []
        for part in parts:
            r = part.values[part.eligible]
            part.difference = float(np.max(r) - np.min(r))
            diffs.append(part.difference)
            ratios.append(intervals.ratio(r))
            if part.replicates is None:
                x, n = part.x[part.eligible], part.n[part.eligible]  # type: ignore[index]
                d_ints.append(intervals.range_interval(x, n, level))
                r_ints.append(intervals.ratio_interval(x, n, level))
        if parts[0].replicates is not None:
            reps = [part.replicates[:, part.eligible] for part in parts]  # type: ignore[index]
            d_rep = np.max([np.nanmax(r, axis=1) - np.nanmin(r, axis=1) for r in reps], axis=0)
            r_rep = np.min([_ratio_rows(r) for r in reps], axis=0)
            d_ints = [intervals.percentile(d_rep, self.confidence)]
            r_ints = [intervals.percentile(r_rep, self.confidence)]
        d_int = (max(i[0] for i in d_ints), max(i[1] for i in d_ints))
        r_int = (min(i[0] for i in r_ints), min(i[1] for i in r_ints))
        first = parts[0]
        idx = np.flatnonzero(first.eligible)
        ends = (names[idx[np.argmin(first.values[idx])]], names[idx[np.argmax(first.values[idx])]])
        return max(diffs), min(ratios), d_int, r_int, ends


class _Part:
    """One component's per-group values, denominators, eligibility and intervals in a window."""

    def __init__(
        self,
        name: str,
        values: np.ndarray,
        n: np.ndarray,
        eligible: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        x: np.ndarray | None = None,
        replicates: np.ndarray | None = None,
    ) -> None:
        self.name, self.values, self.n, self.eligible, self.lo, self.hi = (
            name,
            values,
            n,
            eligible,
            lo,
            hi,
        )
        self.x, self.replicates = x, replicates
        self.difference: float | None = None

    def group_details(self, g: int, first: bool) -> dict[str, Any]:
        v = self.values[g]
        value = None if np.isnan(v) else float(v)
        out: dict[str, Any] = {
            self.name: value,
            f"{self.name}_ci_low": float(self.lo[g]),
            f"{self.name}_ci_high": float(self.hi[g]),
            f"{self.name}_support": int(self.n[g]),
        }
        if first:
            out.update(
                {
                    "rate": value,
                    "ci_low": float(self.lo[g]),
                    "ci_high": float(self.hi[g]),
                    "support": int(self.n[g]),
                }
            )
        return out


def _group_percentiles(reps: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1 - confidence
    with np.errstate(all="ignore"):
        lo = np.nanquantile(reps, alpha / 2, axis=0) if reps.size else np.zeros(reps.shape[1])
        hi = np.nanquantile(reps, 1 - alpha / 2, axis=0) if reps.size else np.ones(reps.shape[1])
    return np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=1.0)


def _ratio_rows(reps: np.ndarray) -> np.ndarray:
    top, bottom = np.nanmax(reps, axis=1), np.nanmin(reps, axis=1)
    return np.divide(bottom, top, out=np.ones_like(top), where=top > 0)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(np.shape(tp)), where=denom > 0)


# -- columns → groups and binary masks (vectorized: no per-row Python) -----------------------------


def group_codes(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Group index of every row and the sorted group names; several columns make intersections.

    >>> sex = np.array(["f", "m", None, "f"], dtype=object)
    >>> codes, names = group_codes([sex, np.array([1.0, 0.0, 1.0, 1.0])])
    >>> codes.tolist(), names
    ([0, 2, 1, 0], ['f|1', 'missing|1', 'm|0'])
    """
    combined = np.zeros(len(columns[0]), dtype=np.int64)
    labels: list[list[str]] = []
    for col in columns:
        import pandas as pd

        codes, uniques = pd.factorize(col, use_na_sentinel=True)
        names = [_name(v) for v in uniques] + [MISSING]
        codes = np.where(codes < 0, len(names) - 1, codes)
        combined = combined * len(names) + codes
        labels.append(names)
    present, inverse = np.unique(combined, return_inverse=True)
    names_of = []
    for c in present.tolist():
        parts = []
        for names in reversed(labels):
            c, r = divmod(c, len(names))
            parts.append(names[r])
        names_of.append("|".join(reversed(parts)))
    order = np.argsort(names_of, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], [names_of[i] for i in order]


def _name(v: Any) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def is_value(a: np.ndarray, value: Any) -> np.ndarray:
    """``a == value`` elementwise as a bool array (False where types differ)."""
    out = np.asarray(a == value) if a.dtype == object or _comparable(a, value) else np.zeros(len(a), bool)
    return out.astype(bool) if out.shape == a.shape else np.zeros(len(a), bool)


def equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a == b`` elementwise as a bool array, numeric or not."""
    if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
        return np.asarray(a == b)
    return np.asarray(a.astype(object) == b.astype(object)).astype(bool)


def _comparable(a: np.ndarray, value: Any) -> bool:
    return (
        a.dtype.kind in "fiub"
        and isinstance(value, int | float | np.number)
        and not isinstance(value, bool)
        or a.dtype.kind == "b"
        and isinstance(value, bool)
    )


# -- the kinds -------------------------------------------------------------------------------------


class DemographicParity(_GroupFairness):
    """Gap between groups' selection rates P(prediction = ``positive``); no labels needed.

    ``measure: ratio`` gives the disparate-impact ratio; ``four_fifths: true`` sets it with the
    0.8 threshold: drift when the ratio (with ``require_interval``: its upper bound) is below 0.8.

    >>> import numpy as np
    >>> from driftwarden.detectors.base import Batch
    >>> rng = np.random.default_rng(0)
    >>> sex = rng.choice(["f", "m"], 4000)
    >>> pred = (rng.random(4000) < np.where(sex == "f", 0.30, 0.50)).astype(float)
    >>> m = DemographicParity(attribute="sex", window_events=2000, four_fifths=True,
    ...                       require_interval=True)
    >>> out = m.update(Batch.of(index=range(4000), attributes={"sex": sex}, prediction=pred))
    >>> [(round(s.value, 2), round(s.details["ci_high"], 2), s.drift) for s in out]
    [(0.56, 0.66, True), (0.6, 0.72, True)]
    """

    kind = "demographic_parity"
    components = ("selection_rate",)

    def __init__(
        self,
        attribute: str | Sequence[str],
        window_events: int | None = DEFAULT_WINDOW_EVENTS,
        window_seconds: float | None = None,
        threshold: float | None = None,
        measure: str | None = None,
        four_fifths: bool = False,
        confidence: float = DEFAULT_CONFIDENCE,
        require_interval: bool = False,
        min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
        positive: Any = 1,
        bias_drift: bool = False,
        reference: float | None = None,
        interval: str = "auto",
        resamples: int = DEFAULT_RESAMPLES,
        seed: int = 0,
    ) -> None:
        if four_fifths:
            if measure not in (None, "ratio"):
                raise ValueError(
                    f"four_fifths: true judges the ratio; measure must be 'ratio' or unset, got {measure!r}"
                )
            if threshold not in (None, FOUR_FIFTHS) and not bias_drift:
                raise ValueError(f"four_fifths: true fixes the threshold at {FOUR_FIFTHS}; got threshold={threshold!r}")
        self.four_fifths = four_fifths
        super().__init__(
            attribute,
            window_events,
            window_seconds,
            threshold,
            measure or ("ratio" if four_fifths else "difference"),
            confidence,
            require_interval,
            min_group_size,
            positive,
            bias_drift,
            reference,
            interval,
            resamples,
            seed,
        )
        self.measure = measure  # type: ignore[assignment]  # as given, so clone() and repr() round-trip

    @property
    def effective_measure(self) -> str:
        return self.measure or ("ratio" if self.four_fifths else "difference")


class EqualOpportunity(_GroupFairness):
    """Gap between groups' true-positive rates (recall) on labeled predictions.

    >>> import numpy as np
    >>> from driftwarden.detectors.base import Batch
    >>> y = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0.])
    >>> p = np.array([1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0.])
    >>> m = EqualOpportunity(attribute="g", window_events=12, min_group_size=1)
    >>> g = ["a"] * 6 + ["b"] * 6
    >>> [s] = m.update(Batch.of(index=range(12), attributes={"g": g}, prediction=p, label=y))
    >>> s.value, s.details["groups"]["a"]["tpr"], s.details["groups"]["b"]["tpr"]
    (0.5, 0.75, 0.25)
    """

    kind = "equal_opportunity"
    stream = "labeled"
    components = ("tpr",)


class EqualizedOdds(_GroupFairness):
    """The larger of the gaps in true- and false-positive rates (Fairlearn's ``worst_case``).

    Each component's interval is taken at ``1 - (1 - confidence) / 2`` so that both hold together.

    >>> import numpy as np
    >>> from driftwarden.detectors.base import Batch
    >>> y = np.array([1, 1, 0, 0, 1, 1, 0, 0.])
    >>> p = np.array([1, 1, 0, 0, 1, 1, 1, 1.])
    >>> m = EqualizedOdds(attribute="g", window_events=8, min_group_size=1)
    >>> g = ["a"] * 4 + ["b"] * 4
    >>> [s] = m.update(Batch.of(index=range(8), attributes={"g": g}, prediction=p, label=y))
    >>> s.value, s.details["tpr_difference"], s.details["fpr_difference"]
    (1.0, 0.0, 1.0)
    """

    kind = "equalized_odds"
    stream = "labeled"
    components = ("tpr", "fpr")


class PredictiveParity(_GroupFairness):
    """Gap between groups' precision P(label = positive | prediction = positive).

    >>> import numpy as np
    >>> from driftwarden.detectors.base import Batch
    >>> m = PredictiveParity(attribute="g", window_events=8, min_group_size=1)
    >>> [s] = m.update(Batch.of(index=range(8), attributes={"g": ["a"] * 4 + ["b"] * 4},
    ...                         prediction=[1, 1, 0, 0, 1, 1, 1, 1],
    ...                         label=[1, 1, 0, 0, 1, 0, 0, 0]))
    >>> s.value, s.details["max_group"], s.details["min_group"]
    (0.75, 'a', 'b')
    """

    kind = "predictive_parity"
    stream = "labeled"
    components = ("precision",)


class GroupPerformance(_GroupFairness):
    """A performance ``metric`` per group and the worst-group gap ``max - min`` (Fairlearn's
    ``MetricFrame.difference()``); ``worst_group`` names the group doing worst.

    Proportion metrics (accuracy, precision, recall/tpr, selection_rate, fpr, ...) get Wilson and
    Newcombe intervals; ``f1``, ``mae`` and ``rmse`` a seeded bootstrap.

    >>> import numpy as np
    >>> from driftwarden.detectors.base import Batch
    >>> m = GroupPerformance(attribute="g", metric="mae", window_events=6, min_group_size=1,
    ...                      threshold=1.0)
    >>> [s] = m.update(Batch.of(index=range(6), attributes={"g": ["a", "a", "a", "b", "b", "b"]},
    ...                         prediction=[1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
    ...                         label=[1.0, 2.0, 4.0, 3.0, 4.0, 5.0]))
    >>> round(s.value, 4), s.details["worst_group"], s.drift, s.details["interval"]
    (1.6667, 'b', True, 'bootstrap')
    """

    kind = "group_performance"
    stream = "labeled"

    def __init__(
        self,
        attribute: str | Sequence[str],
        metric: str = "accuracy",
        window_events: int | None = DEFAULT_WINDOW_EVENTS,
        window_seconds: float | None = None,
        threshold: float | None = None,
        measure: str = "difference",
        confidence: float = DEFAULT_CONFIDENCE,
        require_interval: bool = False,
        min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
        positive: Any = 1,
        bias_drift: bool = False,
        reference: float | None = None,
        interval: str = "auto",
        resamples: int = DEFAULT_RESAMPLES,
        seed: int = 0,
    ) -> None:
        if metric not in GROUP_METRICS:
            raise ValueError(f"metric must be one of {list(GROUP_METRICS)}, got {metric!r}")
        if interval == "wilson" and metric not in PROPORTIONS:
            raise ValueError(
                f"interval 'wilson' needs a proportion metric; {metric!r} is not one: use 'bootstrap' or 'auto'"
            )
        self.metric = metric
        super().__init__(
            attribute,
            window_events,
            window_seconds,
            threshold,
            measure,
            confidence,
            require_interval,
            min_group_size,
            positive,
            bias_drift,
            reference,
            interval,
            resamples,
            seed,
        )

    @property
    def components(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.metric,)

    def _signal(self, w: Window) -> Signal:
        s = super()._signal(w)
        groups = s.details["groups"]
        judged = {n: g["rate"] for n, g in groups.items() if g["eligible"] and g["rate"] is not None}
        worst = None
        if judged:
            pick = max if self.metric in LOWER_IS_BETTER else min
            worst = pick(sorted(judged), key=lambda n: judged[n])
        return Signal(
            **{
                **{f: getattr(s, f) for f in s.__slots__},  # type: ignore[attr-defined]
                "details": {**s.details, "metric_name": self.metric, "worst_group": worst},
            }
        )
