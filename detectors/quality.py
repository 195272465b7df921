"""Data quality per window against a reference: missing values, out-of-range values, unseen
categories, type violations and volume.

The reference is ``reference`` (feature → values) or the first window. For each later window
and feature:

- ``missing``: share of missing values (NaN, None) minus the reference's share (a rise);
- ``out_of_range``: share of numeric values below the reference minimum or above its maximum;
- ``unseen``: share of categorical values the reference never had;
- ``type_violations``: share of values of the wrong type: text in a numeric column, or numbers
  where the reference held text (the daemon coerces values to the column's type, so most type
  errors arrive as missing values and are counted there);

and for the window as a whole ``volume_ratio``: events per second of event time against the
reference window's rate (for time windows: events per window). A window has ``drift`` when any
share exceeds its tolerance or the volume ratio leaves ``[1 / volume_factor, volume_factor]``.
The signal's ``value`` is the largest excess over a tolerance (0 when all is well), and
``details["issues"]`` lists what went wrong as ``"check:feature"``.

>>> from driftwarden.detectors.base import Batch
>>> m = DataQuality(window_events=4)
>>> ok = m.update(Batch.of(index=range(4), features={"x": [1.0, 2.0, 3.0, 4.0], "c": list("abab")}))
>>> new = {"x": [1.0, None, 9.0, 2.0], "c": list("azab")}
>>> bad = m.update(Batch.of(index=range(4, 8), features=new))
>>> bad[0].drift, bad[0].details["issues"]
(True, ['missing:x', 'out_of_range:x', 'unseen:c'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Monitor, Signal, column
from driftwarden.detectors.windows import Windower

DEFAULT_WINDOW_EVENTS = 1000
"""Events per window: a 2-point rise of a missing rate is then about 4 standard errors."""

MISSING_TOLERANCE = 0.05
"""A window is flagged when a feature's missing share rises 5 points over the reference's."""

RANGE_TOLERANCE = 0.02
"""With a reference of n draws of a continuous variable a new value falls outside the reference
range with probability 2/(n+1) (0.4 % for n=500): 2 % leaves room for that and flags real breaks."""

UNSEEN_TOLERANCE = 0.01
"""Share of values of categories the reference never had (rare categories may be unseen)."""

TYPE_TOLERANCE = 0.0
"""Any value of the wrong type is an issue: it is never the model's fault."""

VOLUME_FACTOR = 3.0
"""Volume is flagged when the event rate falls below a third or rises above three times the
reference rate (traffic varies over a day; a factor of 3 is a break, not a daily swing)."""

CHECKS = ("missing", "out_of_range", "unseen", "type_violations")

_TS = "\x00ts"  # the event times ride along in the window under a name no feature has


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.fromiter(
            (v is None or (isinstance(v, float) and v != v) for v in values.tolist()),
            bool,
            len(values),
        )
    return np.isnan(values.astype(np.float64, copy=False))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


class DataQuality(Monitor):
    """Missing and out-of-range values, unseen categories, type violations and volume per window.

    ``features`` is a list of names or ``"all"`` (the features of the reference or of the first
    batch). Tolerances are shares in [0, 1]; ``volume_factor`` > 1. Memory: the reference's
    summary (per feature: missing share, min/max or the set of categories) plus one window.
    """

    kind = "data_quality"

    def __init__(
        self,
        features: Sequence[str] | str = "all",
        window_events: int | None = DEFAULT_WINDOW_EVENTS,
        window_seconds: float | None = None,
        missing_tolerance: float = MISSING_TOLERANCE,
        range_tolerance: float = RANGE_TOLERANCE,
        unseen_tolerance: float = UNSEEN_TOLERANCE,
        type_tolerance: float = TYPE_TOLERANCE,
        volume_factor: float = VOLUME_FACTOR,
        reference: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        if isinstance(features, str) and features != "all":
            raise ValueError(f"features: {features!r} is not allowed; give a list of names or 'all'")
        for name, value in (
            ("missing_tolerance", missing_tolerance),
            ("range_tolerance", range_tolerance),
            ("unseen_tolerance", unseen_tolerance),
            ("type_tolerance", type_tolerance),
        ):
            if not (_is_number(value) and 0 <= value <= 1):
                raise ValueError(f"{name}: {value!r} is not allowed; it must be a share in [0, 1]")
        if not (_is_number(volume_factor) and volume_factor > 1):
            raise ValueError(f"volume_factor: {volume_factor!r} is not allowed; it must be > 1")
        self.features = features if isinstance(features, str) else list(features)
        self.window_events, self.window_seconds = window_events, window_seconds
        self.missing_tolerance, self.range_tolerance = missing_tolerance, range_tolerance
        self.unseen_tolerance, self.type_tolerance = unseen_tolerance, type_tolerance
        self.volume_factor, self.reference = volume_factor, reference
        super().__init__()

    def _reset(self) -> None:
        self._windows = Windower(
            events=self.window_events if self.window_seconds is None else None,
            seconds=self.window_seconds,
        )
        self._names: list[str] | None = None if self.features == "all" else list(self.features)
        self._profile: dict[str, dict[str, Any]] | None = None
        self._rate: float | None = None  # the reference's events per second (or per window)
        self._have_rate = False
        if self.reference is not None:
            cols = {k: column(v) for k, v in self.reference.items()}
            if self._names is None:
                self._names = sorted(cols)
            self._profile = {n: self._describe(cols[n]) for n in self._names if n in cols}

    @staticmethod
    def _describe(values: np.ndarray) -> dict[str, Any]:
        missing = _missing(values)
        present = values[~missing]
        share = float(missing.mean()) if len(values) else 0.0
        if values.dtype == object:
            cats = sorted({str(v) for v in present.tolist()})
            numeric = all(_is_number(v) for v in present.tolist()) and len(present) > 0
            if numeric:
                nums = np.asarray(present.tolist(), dtype=np.float64)
                return {
                    "type": "numeric",
                    "missing": share,
                    "min": float(nums.min()),
                    "max": float(nums.max()),
                }
            return {"type": "categorical", "missing": share, "categories": cats}
        if len(present) == 0:
            return {"type": "numeric", "missing": share, "min": None, "max": None}
        return {
            "type": "numeric",
            "missing": share,
            "min": float(present.min()),
            "max": float(present.max()),
        }

    def _select(self, batch: Batch) -> dict[str, np.ndarray]:
        if self._names is None:
            self._names = sorted(batch.features)
        n = len(batch)
        out = {_TS: batch.ts}
        for name in self._names:
            values = batch.features.get(name)
            out[name] = values if values is not None else np.full(n, np.nan)
        return out

    def update(self, batch: Batch) -> list[Signal]:
        out = []
        for window in self._windows.add(batch, self._select):
            columns = dict(window.columns)
            ts = columns.pop(_TS)
            rate = self._window_rate(ts)
            first = not self._have_rate
            if first:
                self._rate, self._have_rate = rate, True
            if self._profile is None:
                self._profile = {n: self._describe(v) for n, v in columns.items()}
                continue  # the first window is the reference
            out.append(self._check(window.at, window.ts, window.start, window.end, columns, rate))
        return out

    def _window_rate(self, ts: np.ndarray) -> float | None:
        """Events per window for time windows, else events per second over the window's span."""
        if self.window_seconds is not None:
            return float(len(ts))
        span = float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0
        return (len(ts) - 1) / span if span > 0 else None

    def _check(
        self,
        at: int,
        ts: float,
        start: int,
        end: int,
        columns: Mapping[str, np.ndarray],
        rate: float | None,
    ) -> Signal:
        assert self._profile is not None
        per: dict[str, dict[str, float]] = {}
        issues: list[str] = []
        excess = 0.0
        tol = {
            "missing": self.missing_tolerance,
            "out_of_range": self.range_tolerance,
            "unseen": self.unseen_tolerance,
            "type_violations": self.type_tolerance,
        }
        for name, values in columns.items():
            ref = self._profile.get(name)
            if ref is None:
                continue
            rates = self._rates(values, ref)
            per[name] = rates
            for check in CHECKS:
                over = rates[check] - tol[check]
                if over > 0:
                    issues.append(f"{check}:{name}")
                    excess = max(excess, over)
        volume_ratio = None
        if self._rate and rate is not None:
            volume_ratio = rate / self._rate
            if not 1 / self.volume_factor <= volume_ratio <= self.volume_factor:
                issues.append("volume")
                excess = max(excess, abs(math.log(volume_ratio)) - math.log(self.volume_factor))
        worst = {c: max((r[c] for r in per.values()), default=0.0) for c in CHECKS}
        return Signal(
            kind=self.kind,
            at=at,
            ts=ts,
            drift=bool(issues),
            value=excess,
            threshold=0.0,
            window_start=start,
            window_end=end,
            details={
                "issues": sorted(issues),
                "rows": len(next(iter(columns.values()), ())),
                "volume_ratio": volume_ratio,
                **{f"{c}_rate": worst[c] for c in CHECKS},
                "features": per,
            },
        )

    @staticmethod
    def _rates(values: np.ndarray, ref: Mapping[str, Any]) -> dict[str, float]:
        n = max(len(values), 1)
        missing = _missing(values)
        present = values[~missing]
        out = {
            "missing": max(0.0, float(missing.sum()) / n - ref["missing"]),
            "out_of_range": 0.0,
            "unseen": 0.0,
            "type_violations": 0.0,
        }
        if ref["type"] == "numeric":
            if present.dtype == object:
                ok = np.fromiter((_is_number(v) for v in present.tolist()), bool, len(present))
                out["type_violations"] = float((~ok).sum()) / n
                present = np.asarray(present[ok].tolist(), dtype=np.float64)
            if ref["min"] is not None and len(present):
                outside = (present < ref["min"]) | (present > ref["max"])
                out["out_of_range"] = float(outside.sum()) / n
        else:
            if present.dtype != object:
                out["type_violations"] = float(len(present)) / n
            else:
                known = set(ref["categories"])
                items = present.tolist()
                wrong = sum(1 for v in items if _is_number(v))
                unseen = sum(1 for v in items if not _is_number(v) and str(v) not in known)
                out["type_violations"] = wrong / n
                out["unseen"] = unseen / n
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": self._windows.snapshot(),
            "names": self._names,
            "profile": self._profile,
            "rate": self._rate,
            "have_rate": self._have_rate,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows.restore(state["windows"])
        self._names = state["names"]
        self._profile = state["profile"]
        self._rate = state["rate"]
        self._have_rate = bool(state["have_rate"])
