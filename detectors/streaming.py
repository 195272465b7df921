"""Streaming change detectors on one series: ADWIN, Page-Hinkley, KSWIN, DDM, River's EDDM (HDDM_A and
HDDM_W: detectors/hddm.py; the ``eddm`` kind: detectors/eddm.py).

Each detector watches the series named by ``series``: a feature, ``prediction``, ``score``,
``error`` (0/1 mistakes of labeled predictions) or ``residual``. A signal is emitted on the
update where the detector sees a change (an *edge*); missing values are skipped.

``direction`` says which changes are drift: ``up`` (the series rises), ``down`` or ``both``.
Left out, it is ``up`` on ``error`` and loss-like series (a name ending in ``loss`` or
``_error``) and for the error-rate detectors (DDM, EDDM, HDDM), else ``both``. A change the
other way is still reported, as a signal with ``drift: false``; every signal's ``direction``
says which way the series moved (one exception: ADWIN at ``direction: both`` is River's
two-sided ADWIN, signals included, and does not say).

ADWIN, DDM and EDDM are River's detectors (alarm lists identical to River's at the same
parameters; ADWIN's delta on 0/1 series, DDM's warm start and EDDM's levels default to calibrated
values, not River's, and DDM is re-based every 4,000 values: see their constants); Page-Hinkley
is River's recursion on the series standardised by its warm-up sd (``standardize: false`` is
River's exactly); KSWIN is our vectorised Kolmogorov-Smirnov window test (River's tests one random
subsample per update in a scipy call).

>>> import numpy as np
>>> from driftwarden.detectors.base import Batch
>>> rng = np.random.default_rng(7)
>>> x = np.concatenate([rng.normal(0, 1, 1000), rng.normal(1, 1, 1000)])
>>> signals = Adwin(series="x").update(Batch.of(index=range(2000), features={"x": x}))
>>> [s.at for s in signals]
[1055]
>>> e = (rng.random(4000) < np.r_[np.full(2000, 0.3), np.full(2000, 0.1)]).astype(float)
>>> [(s.at, s.drift, s.details["direction"]) for s in Adwin(series="e", direction="up").update(
...     Batch.of(index=range(4000), features={"e": e}))]
[(2239, False, 'down')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from driftwarden.detectors.base import Batch, Monitor, Signal, Stream
from driftwarden.detectors.lazy import import_leaf
from driftwarden.detectors.river_state import plain_to_river, river_to_plain
from driftwarden.detectors.warmup import Warmup

LABELED_SERIES = frozenset({"error", "residual", "label"})
BINARY_SERIES = frozenset({"error", "label"})
"""Series that are 0/1 by construction (``label`` of a binary model)."""
DIRECTIONS = ("up", "down", "both")
Change = tuple[int, str | None, float | None]
"""A change a detector saw: (position in the batch's series, direction or None, the detector's ``estimation``)."""


def loss_like(series: str) -> bool:
    """``error`` and series named like a loss: a rise is a degradation.

    >>> loss_like("error"), loss_like("log_loss"), loss_like("abs_error"), loss_like("score")
    (True, True, True, False)
    """
    return series == "error" or series.endswith(("loss", "_error"))


def resolve_direction(direction: str | None, series: str, error_rate: bool = False) -> str:
    """The direction a detector watches: the given one, else ``up`` on loss-like series and
    error-rate detectors, else ``both``; ValueError names a bad value."""
    if direction is None:
        return "up" if error_rate or loss_like(series) else "both"
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: {direction!r} is not allowed; allowed: {list(DIRECTIONS)}")
    return direction


class Streaming(Monitor):
    """Shared by the streaming kinds: ``series``, ``direction``, edge signals that carry it."""

    edge = True
    error_rate: ClassVar[bool] = False
    """True for detectors of a 0/1 error rate (DDM, EDDM, HDDM): their default direction is up."""

    series: str
    direction: str | None

    @property
    def stream(self) -> Stream:  # type: ignore[override]
        """Errors and residuals exist only on labeled events."""
        return "labeled" if self.series in LABELED_SERIES else "predictions"

    @property
    def watching(self) -> str:
        """The resolved direction: ``up``, ``down`` or ``both``."""
        return resolve_direction(self.direction, self.series, self.error_rate)

    def _check_series(self) -> None:
        if not isinstance(self.series, str) or not self.series:
            raise ValueError(
                f"series: {self.series!r} is not allowed; "
                "give a feature name, 'prediction', 'score', 'error' or 'residual'"
            )
        resolve_direction(self.direction, self.series, self.error_rate)

    def _signal(
        self,
        batch: Batch,
        i: int,
        seen: int,
        direction: str | None,
        value: float | None,
        threshold: float | None,
        **extra: Any,
    ) -> Signal:
        watching = self.watching
        details: dict[str, Any] = {"series": self.series, "seen": seen}
        if direction is not None:
            details["direction"] = direction
        details.update(extra)
        return Signal(
            kind=self.kind,
            at=int(batch.index[i]),
            ts=float(batch.ts[i]),
            drift=direction is None or watching in ("both", direction),
            value=None if value is None or math.isnan(value) else float(value),
            threshold=threshold,
            details=details,
        )


class RiverDetector(Streaming):
    """River detectors behind the monitor interface. Subclasses name the River class, its
    arguments and :meth:`_feed` (one value in, the direction of a change or None out), or
    :meth:`_changes` (a batch's values in one loop)."""

    river_class: ClassVar[str]
    """``module:Class`` of the River detector, imported at the first update (River takes a second to import)."""
    river_args: ClassVar[tuple[str, ...]]
    threshold_arg: ClassVar[str | None] = None

    def _reset(self) -> None:
        self._detectors: list[Any] | None = None
        self._seen = 0

    def _river_type(self) -> type:
        module, name = self.river_class.split(":")
        return getattr(import_leaf(module), name)  # not river.drift's __init__: it imports scikit-learn

    def _make(self) -> list[Any]:
        return [self._river_type()(**{a: getattr(self, a) for a in self.river_args})]

    def _feed(self, v: float) -> tuple[str | None, bool]:
        """Update with one value: (direction of the change, whether there was one)."""
        raise NotImplementedError

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or not batch.has(self.series):
            return []
        if self._detectors is None:
            self._detectors = self._make()
        values = np.asarray(batch.series(self.series), dtype=np.float64)
        threshold = getattr(self, self.threshold_arg) if self.threshold_arg else None
        out = [
            self._signal(batch, i, self._seen + i + 1, direction, value, threshold)
            for i, direction, value in self._changes(values.tolist())
        ]
        self._seen += int(np.count_nonzero(~np.isnan(values)))
        return out

    def _changes(self, values: list[float]) -> list[Change]:
        """Feed the values (NaN: missing, skipped) one by one: the changes as (position, direction, the
        detector's ``estimation`` after the value)."""
        assert self._detectors is not None
        feed = self._feed
        out: list[Change] = []
        for i, v in enumerate(values):
            if v != v:  # NaN: missing value
                continue
            direction, changed = feed(v)
            if changed:
                out.append((i, direction, getattr(self._detectors[0], "estimation", None)))
        return out

    def snapshot(self) -> dict[str, Any]:
        # River's objects as plain data from an allow-list (detectors/river_state.py), never pickled.
        if self._detectors is None:
            return {"river": None, "seen": self._seen}
        return {"river": [river_to_plain(d) for d in self._detectors], "seen": self._seen}

    def restore(self, state: Mapping[str, Any]) -> None:
        saved = state["river"]
        if saved is None:
            self._detectors = None
        else:
            self._river_type()  # imported as a leaf first, so unpickling does not import river.drift
            items = [saved] if isinstance(saved, str) else list(saved)  # one detector: a pre-direction state
            if any(isinstance(s, str) for s in items):
                raise ValueError(
                    f"the saved state of {self.kind} is a pickled object of an older driftwarden; it is not "
                    "loaded (a pickle can run code)"
                )
            self._detectors = [plain_to_river(s) for s in items]
            missing = len(self._make()) - len(self._detectors)
            self._detectors += self._make()[len(self._detectors) :] if missing > 0 else []
        self._seen = int(state["seen"])


ADWIN_DELTA = 0.002
"""ADWIN's confidence (River's default): no false alarm in 600,000 N(0,1) events, a 1-sd shift found
after a median 47."""

ADWIN_DELTA_BINARY = 0.05
"""ADWIN's confidence on a 0/1 series (``error``, ``label``). At River's 0.002 a doubled 5 % error
rate was found within 1,000 values in 18 of bench/calibration.py's 20 streams (median 591); at 0.05
in all 20 (median 335; 197 of 200 on more seeds), with 0.25 / 0.48 false alarms per 100k at 5 / 30 %
errors (20 twins x 10^5 values). ADWIN's cut test is a union bound over every split of its
window, so its real false-alarm rate is far below ``delta``."""


class Adwin(RiverDetector):
    """ADWIN (adaptive windowing): no false alarms on stationary data at the default ``delta``
    and a delay of about 50 events for a 1-sd mean shift. Two-sided by nature: the direction of
    a change is the sign of the jump of the window's mean when ADWIN drops its older part.
    ``delta`` defaults to River's 0.002, and to 0.05 on a 0/1 series (``error``, ``label``),
    where a small rise of a low rate needs the laxer test (ADWIN_DELTA_BINARY). Memory: O(log n)
    buckets.

    >>> from driftwarden.detectors.base import Batch
    >>> m = Adwin(series="error")
    >>> m.update(Batch.of(index=[0, 1], prediction=[1, 0], label=[1, 1]))
    []
    >>> m.stream, m.watching
    ('labeled', 'up')
    """

    kind = "adwin"
    river_class = "river.drift.adwin:ADWIN"
    river_args = ("delta", "clock", "grace_period")
    threshold_arg = "delta"

    def __init__(
        self,
        series: str,
        delta: float | None = None,
        clock: int = 32,
        grace_period: int = 10,
        direction: str | None = None,
    ) -> None:
        if delta is None:
            delta = ADWIN_DELTA_BINARY if series in BINARY_SERIES else ADWIN_DELTA
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.series, self.delta, self.clock, self.grace_period = series, delta, clock, grace_period
        self.direction = direction
        self._check_series()
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._both = self.watching == "both"

    def _changes(self, values: list[float]) -> list[Change]:
        """River's ``ADWIN.update`` per value, as one loop over its compiled window (``_helper``, River's
        private name: tests/detectors/test_references.py compares signals and state with River's ADWIN).
        River's Python layer (``update``, ``drift_detected``, ``estimation`` -> ``width`` -> ``total``) cost
        1.5 µs a value, this loop 0.37. As River does, the value after a drift starts a fresh window
        (``_reset``), and the detector's ``drift_detected`` is the last value's. The direction of a change
        is the sign of the jump of the window's mean (River's ``estimation``) over the value that cut it."""
        assert self._detectors is not None
        d = self._detectors[0]
        both = self._both
        drifted = d.drift_detected
        helper = d._helper
        update, total, width = helper.update, helper.get_total, helper.get_width
        out: list[Change] = []
        before = 0.0
        for i, v in enumerate(values):
            if v != v:  # NaN: missing value
                continue
            if drifted:
                d._reset()
                helper = d._helper
                update, total, width = helper.update, helper.get_total, helper.get_width
            if not both:
                n = width()
                before = total() / n if n else 0.0
            drifted = update(v)
            if drifted:
                n = width()
                after = total() / n if n else 0.0
                # at ``both`` River's two-sided ADWIN as it was (the golden replay pins it)
                out.append((i, None if both else "up" if after > before else "down", after))
        d._drift_detected = drifted
        return out


class _ErrorRate(RiverDetector):
    """River's one-sided error-rate detectors, watching a rise of a 0/1 series. A fall is a rise
    of ``1 - x``: a second detector watches that, so both directions are seen and reported.

    With ``memory: N`` (DDM) the detectors are re-based: a second pair starts when the pair in
    charge has seen N/2 values and takes over when that one reaches N, so the pair in charge has
    always seen between N/2 and N values; after a change both pairs start over. Without it
    (``memory: null``) they are River's detectors exactly."""

    error_rate = True
    memory: int | None = None

    def _reset(self) -> None:
        super()._reset()
        self._age = 0  # values seen by the pair in charge
        self._restart = False  # a change was reported: the next value starts fresh pairs

    def _make(self) -> list[Any]:
        make = super()._make
        return make() + make()

    def _feed(self, v: float) -> tuple[str | None, bool]:
        assert self._detectors is not None
        ds = self._detectors
        memory = self.memory
        if memory and self._restart:
            ds[:] = self._make()
            self._age, self._restart = 0, False
        for j in range(0, len(ds), 2):
            ds[j].update(v)
            ds[j + 1].update(1.0 - v)
        up, down = ds[0], ds[1]
        found = ("up", True) if up.drift_detected else ("down", True) if down.drift_detected else (None, False)
        if memory:
            self._age += 1
            if found[1]:
                self._restart = True
            elif self._age >= memory and len(ds) > 2:
                del ds[:2]  # the younger pair takes over
                self._age -= memory - memory // 2
            if not self._restart and self._age == memory // 2 and len(ds) == 2:
                ds += self._make()
        return found

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "age": self._age, "restart": self._restart}

    def restore(self, state: Mapping[str, Any]) -> None:
        super().restore(state)
        self._age, self._restart = int(state.get("age", 0)), bool(state.get("restart", False))


DDM_WARM_START = 2000
"""Values before DDM may alarm (River: 30). DDM compares the error rate since its start with the
lowest seen, and over the first few hundred values that minimum is itself noise: River's 30 gave
7 false alarms per 100k at 5 % errors, 2,000 gives 0.3 (at 30 %: 1.3 -> 0.7; bench/calibration.py)."""

DDM_MEMORY = 4000
"""Values DDM's rate is computed over at most (River: unbounded), by re-basing (``_ErrorRate``): the
DDM in charge has seen 2,000-4,000 values. DDM's rate is cumulative, so after 10,000 stationary
values a doubled 5 % rate moved it too slowly: found within 1,000 values in 14 of
bench/calibration.py's 20 streams (median 799). Re-based: in 20 of 20 (median ~424; 192 of 200 on
more seeds), 0.40 / 0.10 false alarms per 100k at 5 / 30 % errors (20 twins x 10^5 values)."""

EDDM_WARM_START = 300
"""Errors (not values) before EDDM may alarm (River: 30): its early estimates of the distance
between errors are the noisiest (at 100, 7 false alarms in 600k events at 5 %; at 300, 0.3 per 100k)."""

EDDM_ALPHA = 0.75
"""EDDM's warning level (River: 0.95), which must not be below ``beta``."""

EDDM_BETA = 0.65
"""EDDM's drift level (River: 0.9): the ratio of the distance between errors (mean + 2 sd) to its
maximum. The distances of a stationary 0/1 stream are geometric, so their running maximum keeps
drifting away from the mean: River's 0.9 gave 55 false alarms per 100k at 5 % and 200 at 30 %;
0.65 gives under 1, and no setting we tried is both quiet and quick (bench/calibration.py)."""


class Ddm(_ErrorRate):
    """DDM: drift detection on a 0/1 error stream, re-based every ``memory`` values (DDM_MEMORY;
    ``memory: null`` is River's DDM, whose rate is cumulative since its start). Memory: O(1).

    >>> Ddm().series, Ddm().watching
    ('error', 'up')
    """

    kind = "ddm"
    river_class = "river.drift.binary.ddm:DDM"
    river_args = ("warm_start", "warning_threshold", "drift_threshold")
    threshold_arg = "drift_threshold"

    def __init__(
        self,
        series: str = "error",
        warm_start: int = DDM_WARM_START,
        warning_threshold: float = 2.0,
        drift_threshold: float = 3.0,
        direction: str | None = None,
        memory: int | None = DDM_MEMORY,
    ) -> None:
        if memory is not None and not (isinstance(memory, int) and memory >= 2):
            raise ValueError(f"memory: {memory!r} is not allowed; give an integer >= 2, or null for River's DDM")
        self.series, self.warm_start = series, warm_start
        self.warning_threshold, self.drift_threshold = warning_threshold, drift_threshold
        self.direction, self.memory = direction, memory
        self._check_series()
        super().__init__()


def check_eddm_thresholds(alpha: float, beta: float) -> None:
    """EDDM's warning (``alpha``) and drift (``beta``) ratios: ValueError unless 0 < beta <= alpha < 1.

    >>> check_eddm_thresholds(0.75, 0.9)
    Traceback (most recent call last):
    ValueError: beta: 0.9 is not allowed; it must satisfy 0 < beta <= alpha (0.75) < 1
    """
    if not 0 < beta <= alpha < 1:
        raise ValueError(f"beta: {beta!r} is not allowed; it must satisfy 0 < beta <= alpha ({alpha}) < 1")


class RiverEddm(_ErrorRate):
    """River's EDDM (early drift detection from the distance between errors): the ``eddm`` kind at
    ``method: river`` (detectors/eddm.py). Memory: O(1).

    >>> RiverEddm().alpha, RiverEddm().beta
    (0.75, 0.65)
    """

    kind = "eddm"
    river_class = "river.drift.binary.eddm:EDDM"
    river_args = ("warm_start", "alpha", "beta")
    threshold_arg = "beta"

    def __init__(
        self,
        series: str = "error",
        warm_start: int = EDDM_WARM_START,
        alpha: float = EDDM_ALPHA,
        beta: float = EDDM_BETA,
        direction: str | None = None,
    ) -> None:
        check_eddm_thresholds(alpha, beta)
        self.series, self.warm_start, self.alpha, self.beta = series, warm_start, alpha, beta
        self.direction = direction
        self._check_series()
        super().__init__()


# ----------------------------------------------------------------------------- Page-Hinkley

PH_THRESHOLD = 100.0
"""Decision threshold in warm-up sds. With PH_DELTA and no forgetting: 0.25 false alarms per
100k N(0,1) events and none on 0/1 errors at 5 % and 30 % (4 seeds x 10^5 events each); a 1-sd
shift found after a median 95 events, a doubled 5 % error rate after ~500 (bench/detection.py)."""

PH_DELTA = 0.05
"""Allowed drift of the mean per update, in warm-up sds: the walk's downward pull that keeps
chance excursions (probability ~exp(-2 delta h)) rare. River's 0.005 let the statistic wander."""

PH_ALPHA = 1.0
"""No forgetting. River's 0.9999 holds the sums near -delta / (1 - alpha) with a spread of ~70
sds, so chance alone crossed any threshold below ~100 (River's defaults: ~60 false alarms per 100k)."""

PH_WARMUP = 1000
"""Values that estimate the sd the series is divided by (their error, ~2 %, barely moves the threshold)."""


class PageHinkley(Streaming):
    """Page-Hinkley test for a change of the mean (River's recursion, both sums always kept).

    With ``standardize`` (the default) the series is divided by the sd of its first ``warmup``
    values (Bernoulli with a floor on 0/1 series), so ``delta`` and ``threshold`` are in sds and
    one default fits every scale; the test starts after the warm-up. ``standardize: false`` is
    River's PageHinkley exactly (at ``direction: both``). Memory: O(1).

    >>> from driftwarden.detectors.base import Batch
    >>> m = PageHinkley(series="x", standardize=False, threshold=3.0, min_instances=2, direction="up")
    >>> [(s.at, s.drift, s.details["direction"]) for s in m.update(Batch.of(index=range(8),
    ...     features={"x": [0, 0, 0, 0, -9, -9, 5, 5]}))]
    [(4, False, 'down'), (6, True, 'up')]
    """

    kind = "page_hinkley"

    def __init__(
        self,
        series: str,
        min_instances: int = 30,
        delta: float = PH_DELTA,
        threshold: float = PH_THRESHOLD,
        alpha: float = PH_ALPHA,
        direction: str | None = None,
        standardize: bool = True,
        warmup: int = PH_WARMUP,
    ) -> None:
        self.series, self.min_instances, self.delta = series, min_instances, delta
        self.threshold, self.alpha, self.direction = threshold, alpha, direction
        self.standardize, self.warmup = standardize, warmup
        self._check_series()
        if not (isinstance(threshold, int | float) and threshold > 0):
            raise ValueError(f"threshold: {threshold!r} is not allowed; it must be > 0")
        if not (isinstance(warmup, int) and warmup >= 2):
            raise ValueError(f"warmup: {warmup!r} is not allowed; it must be an integer >= 2")
        super().__init__()

    def _reset(self) -> None:
        self._warm = Warmup()
        self._scale = 1.0 if not self.standardize else None
        self._seen = 0
        self._start()

    def _start(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._inc = 0.0
        self._dec = 0.0
        self._min_inc = math.inf
        self._max_dec = -1.0  # River's starting value

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or not batch.has(self.series):
            return []
        values = np.asarray(batch.series(self.series), dtype=np.float64)
        alpha, delta, h, floor = self.alpha, self.delta, float(self.threshold), self.min_instances
        out: list[Signal] = []
        for i, v in enumerate(values.tolist()):
            if v != v:
                continue
            self._seen += 1
            if self._scale is None:
                self._warm.add(v)
                if self._warm.n >= self.warmup:
                    self._scale = self._warm.sd()
                continue
            z = v / self._scale
            self._n += 1
            self._mean += (1.0 / self._n) * (z - self._mean)  # as River's stats.Mean
            dev = z - self._mean
            self._inc = alpha * self._inc + dev - delta
            self._dec = alpha * self._dec + dev + delta
            self._min_inc = min(self._min_inc, self._inc)
            self._max_dec = max(self._max_dec, self._dec)
            if self._n < floor:
                continue
            up, down = self._inc - self._min_inc, self._max_dec - self._dec
            if up > h or down > h:
                direction = "up" if up > h and (down <= h or up >= down) else "down"
                out.append(self._signal(batch, i, self._seen, direction, max(up, down), h, scale=self._scale))
                self._start()
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "warm": self._warm.state(),
            "scale": self._scale,
            "seen": self._seen,
            "ph": [
                self._n,
                self._mean,
                self._inc,
                self._dec,
                self._min_inc if math.isfinite(self._min_inc) else None,
                self._max_dec,
            ],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._warm = Warmup.from_state(state["warm"])
        self._scale = state["scale"]
        self._seen = int(state["seen"])
        n, mean, inc, dec, min_inc, max_dec = state["ph"]
        self._n, self._mean, self._inc, self._dec = int(n), float(mean), float(inc), float(dec)
        self._min_inc = math.inf if min_inc is None else float(min_inc)
        self._max_dec = float(max_dec)


# ----------------------------------------------------------------------------- KSWIN

KSWIN_ALPHA = 1e-5
"""Significance of each window's test: the tests overlap (one per update), so it must be small."""

KSWIN_WINDOW = 300
"""Values in the sliding window: the older ``window_size - stat_size`` are the reference."""

KSWIN_STAT = 100
"""The most recent values, tested against the rest of the window."""

KSWIN_MIN_STAT = 0.1
"""River's floor on the KS statistic: tiny differences never alarm, however long the window."""

_ROWS = 2048
"""Windows tested at once (memory: rows x window_size floats)."""


def ks_signed(windows: np.ndarray, old: int) -> np.ndarray:
    """Signed two-sample KS statistic of each row: its first ``old`` values against the rest;
    positive when the recent values are larger. Ties are handled as scipy does.

    >>> ks_signed(np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]), 2)
    array([ 1., -1.,  0.])
    """
    rows, width = windows.shape
    new = width - old
    order = np.argsort(windows, axis=1, kind="stable")
    ordered = np.take_along_axis(windows, order, axis=1)
    step = np.where(order < old, 1.0 / old, -1.0 / new)
    cdf = np.cumsum(step, axis=1)
    last_of_ties = np.ones_like(ordered, dtype=bool)
    last_of_ties[:, :-1] = ordered[:, 1:] != ordered[:, :-1]
    cdf = np.where(last_of_ties, cdf, 0.0)
    at = np.argmax(np.abs(cdf), axis=1)
    return np.round(cdf[np.arange(rows), at], 12)


class Kswin(Streaming):
    """KSWIN: a two-sample Kolmogorov-Smirnov test, at every update, of the last ``stat_size``
    values against the ``window_size - stat_size`` before them; a change when the asymptotic
    p-value (scipy's ``kstwo``, as ``ks_2samp(method="asymp")``) is at most ``alpha`` and the
    statistic above 0.1. After a change the window restarts from the recent values. Vectorised
    over a batch (one sort per window, no per-update scipy call) and rank-based, so it needs no
    standardising. Refused on 0/1 series: ties leave the KS test nearly blind there (it missed an
    error-rate jump from 5 % to 40 %). Memory: ``window_size`` values.

    >>> import numpy as np
    >>> from driftwarden.detectors.base import Batch
    >>> rng = np.random.default_rng(3)
    >>> x = np.r_[rng.normal(0, 1, 2000), rng.normal(1, 1, 500)]
    >>> batch = Batch.of(index=range(2500), features={"x": x})
    >>> [(s.at, s.details["direction"]) for s in Kswin(series="x").update(batch)]
    [(2042, 'up')]
    """

    kind = "kswin"

    def __init__(
        self,
        series: str,
        alpha: float = KSWIN_ALPHA,
        window_size: int = KSWIN_WINDOW,
        stat_size: int = KSWIN_STAT,
        direction: str | None = None,
    ) -> None:
        self.series, self.alpha, self.window_size, self.stat_size = series, alpha, window_size, stat_size
        self.direction = direction
        self._check_series()
        if series in BINARY_SERIES:
            raise ValueError(
                f"series: {series!r} is not allowed for kswin: it is a 0/1 series, where ties leave the KS test "
                "nearly blind; use adwin, hddm_a or concept_drift"
            )
        if not 0 < alpha < 1:
            raise ValueError(f"alpha: {alpha!r} is not allowed; it must be in (0, 1)")
        if not (isinstance(stat_size, int) and stat_size >= 5):
            raise ValueError(f"stat_size: {stat_size!r} is not allowed; it must be an integer >= 5")
        if not (isinstance(window_size, int) and window_size >= 2 * stat_size):
            raise ValueError(
                f"window_size: {window_size!r} is not allowed; it must be an integer >= 2 * stat_size ({2 * stat_size})"
            )
        super().__init__()

    def _reset(self) -> None:
        self._window = np.empty(0)
        self._seen = 0
        self._critical: float | None = None

    def _limit(self) -> float:
        if self._critical is None:
            from scipy.stats import kstwo

            old, new = self.window_size - self.stat_size, self.stat_size
            self._critical = max(float(kstwo.isf(self.alpha, round(old * new / (old + new)))), KSWIN_MIN_STAT)
        return self._critical

    def preload(self) -> None:
        self._limit()

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or not batch.has(self.series):
            return []
        values = np.asarray(batch.series(self.series), dtype=np.float64)
        rows = np.flatnonzero(~np.isnan(values))
        new = values[rows]
        width, old = self.window_size, self.window_size - self.stat_size
        limit = self._limit()
        out: list[Signal] = []
        data = np.concatenate([self._window, new])
        base = len(self._window)  # data[base + j] is new[j]
        pos = max(base, width - 1)  # first index of data that completes a window
        while pos < len(data):
            stop = min(len(data), pos + _ROWS)
            windows = np.lib.stride_tricks.sliding_window_view(data[pos - width + 1 : stop], width)
            d = ks_signed(windows, old)
            hit = np.flatnonzero(np.abs(d) > limit)
            if len(hit) == 0:
                pos = stop
                continue
            t = pos + int(hit[0])
            j = t - base
            direction = "up" if d[hit[0]] > 0 else "down"
            seen = self._seen + j + 1
            out.append(self._signal(batch, int(rows[j]), seen, direction, abs(float(d[hit[0]])), limit))
            data = data[t - self.stat_size + 1 :]  # the window restarts from the recent values
            base -= t - self.stat_size + 1
            pos = width - 1  # the next window is full again after window_size - stat_size values
        self._window = data[-(width - 1) :]
        self._seen += len(new)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"window": self._window.tolist(), "seen": self._seen}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._window = np.asarray(state["window"], dtype=np.float64)
        self._seen = int(state["seen"])
