"""EDDM's idea, the distance between errors shrinks when the error rate rises, as a calibrated test.

River's EDDM (``method: river``, detectors/streaming.py's RiverEddm, River's alarms exactly)
compares ``mean + 2 sd`` of the distances between errors with its running maximum. Both are
cumulative from its start, the maximum of a stationary stream's geometric distances keeps growing,
and no setting was both quiet and quick (docs/monitors.md: a doubled 5 % error rate found within
1,000 values in none of 20 streams at any setting that is quiet).

``method: cusum`` (the default) tests the same evidence, the distances, by their log-likelihood
ratio: under a stationary rate ``p0`` a distance ``d`` (values from one error to the next, the
error included) is geometric, ``P(d) = p0 (1 - p0)^(d - 1)``; against the rate ``p1 = min(2 p0,
(1 + p0) / 2)`` (the error rate doubles, or the rate of correct values halves) a distance carries
``ln(p1 / p0) + (d - 1) ln((1 - p1) / (1 - p0))`` nats. Page's CUSUM of those per distance, ``S =
max(0, S + llr(d))``, alarms above ``ln(arl * KL)`` nats (``KL`` the evidence per value against
``p0`` when it holds): Wald's approximation puts the mean run to a false alarm at about ``arl``
values (CUSUM_ARL, as the ``cusum`` kind's Bernoulli chart; that chart takes each value, this one
each distance, and clamps at zero only at errors). ``p0`` is the rate over the values that held the
first ``warm_start`` errors. A fall is tested the same way on ``1 - x`` (distances between correct
values), so both directions are seen and reported. After an alarm its test starts over with a new
warm-up, and after a rise the fall test too (its reference rate is gone); after a fall the rise test
goes on (restarting it there too cost power: the fall side's chance alarms restarted the rise
side's warm-up of ~6,000 values at 5 %, and 177 of 200 doubled 5 % rates were found, against 194).
This is not River's EDDM: it is the sequential test of EDDM's statistic.

>>> import numpy as np
>>> from driftwarden.detectors.base import Batch
>>> rng = np.random.default_rng(3)
>>> e = (rng.random(14000) < np.r_[np.full(10000, 0.05), np.full(4000, 0.10)]).astype(float)
>>> b = Batch.of(index=range(14000), prediction=np.zeros(14000), label=e)
>>> [(s.at, s.details["direction"]) for s in Eddm().update(b)]
[(10445, 'up')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Signal
from driftwarden.detectors.streaming import (
    EDDM_ALPHA,
    EDDM_BETA,
    EDDM_WARM_START,
    RiverEddm,
    Streaming,
    check_eddm_thresholds,
)

METHODS = ("cusum", "river")

CUSUM_ARL = 200_000
"""Mean run to a false alarm, in values, the threshold is set for (as the ``cusum`` kind's Bernoulli chart)."""

RATE_FLOOR = 0.01
"""Lowest reference rate: a warm-up says too little about a rarer rate. A side whose warm-up rate is
above ``1 - RATE_FLOOR`` stays idle until it is restarted: its rate cannot rise (on a model without
errors, the fall side's rate of correct values is 1; held at 0.99, every ~1,200 values were a
"rise" to 1)."""

STATE = ("values", "ones", "rate", "sum", "gap")
"""One side's state: values and ones (errors; correct values on the fall side) of the warm-up, the
reference rate (0 while warming up, -1 when idle), the CUSUM in nats, values since the last one."""


def distance_chart(p0: float, arl: float) -> tuple[float, float, float]:
    """(nats per one, nats per value between ones, threshold) of the distance CUSUM at rate ``p0``.

    >>> [round(v, 4) for v in distance_chart(0.05, 200_000)]
    [0.6931, -0.0541, 8.1141]
    """
    p1 = min(2 * p0, (1 + p0) / 2)
    kl = p0 * math.log(p0 / p1) + (1 - p0) * math.log((1 - p0) / (1 - p1))
    return math.log(p1 / p0), math.log((1 - p1) / (1 - p0)), math.log(arl * kl)


def distance_cusum_run(state: list[float], values: list[float], warm_start: int, arl: float) -> list[tuple[int, float]]:
    """Feed ``values`` (0/1) to one side's test of a rise of the rate of ones; ``state`` (STATE) is updated in
    place. Returns (position, nats) of each alarm; after one the side starts over with a new warm-up.

    >>> values = [float(i % 20 == 0) for i in range(6000)] + [1.0, 0.0] * 20  # 5 %, then 50 %
    >>> [at for at, _ in distance_cusum_run([0.0] * 5, values, 300, 1e5)]
    [6024]
    """
    n, ones, p0, s, gap = state
    a = b = h = 0.0
    if p0 > 0:
        a, b, h = distance_chart(p0, arl)
    out: list[tuple[int, float]] = []
    for i, v in enumerate(values):
        if p0 <= 0:
            if p0 == 0:
                n += 1.0
                ones += v
                if ones >= warm_start:
                    p0 = max(ones / n, RATE_FLOOR) if ones / n <= 1.0 - RATE_FLOOR else -1.0
                    if p0 > 0:
                        a, b, h = distance_chart(p0, arl)
                    s = gap = 0.0
            continue
        gap += 1.0
        if v:
            s = max(0.0, s + a + (gap - 1.0) * b)
            gap = 0.0
            if s > h:
                out.append((i, s))
                n = ones = p0 = s = gap = 0.0  # the rate has changed: a new warm-up
    state[:] = [n, ones, p0, s, gap]
    return out


class Eddm(Streaming):
    """EDDM: drift of a 0/1 error rate from the distances between errors. ``method: cusum`` (default):
    the likelihood-ratio CUSUM of the distances (the module's docstring), calibrated; ``method: river``:
    River's EDDM exactly, with ``alpha`` and ``beta`` (unused by the CUSUM). ``warm_start``: errors
    before a test may alarm (the CUSUM's reference rate is estimated over them). Memory: O(1).

    >>> Eddm().method, Eddm().warm_start, Eddm(method="river").beta
    ('cusum', 300, 0.65)
    """

    kind = "eddm"
    error_rate = True

    def __init__(
        self,
        series: str = "error",
        warm_start: int = EDDM_WARM_START,
        alpha: float = EDDM_ALPHA,
        beta: float = EDDM_BETA,
        direction: str | None = None,
        method: str = "cusum",
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method: {method!r} is not allowed; allowed: {list(METHODS)}")
        check_eddm_thresholds(alpha, beta)
        if not (isinstance(warm_start, int) and warm_start >= 1):
            raise ValueError(f"warm_start: {warm_start!r} is not allowed; it must be an integer >= 1")
        self.series, self.warm_start, self.alpha, self.beta = series, warm_start, alpha, beta
        self.direction, self.method = direction, method
        self._check_series()
        self._river = (
            RiverEddm(series, warm_start=warm_start, alpha=alpha, beta=beta, direction=direction)
            if method == "river"
            else None
        )
        super().__init__()

    def _reset(self) -> None:
        self._sides = [[0.0] * len(STATE), [0.0] * len(STATE)]
        self._seen = 0
        if self._river is not None:
            self._river = self._river.clone()  # type: ignore[assignment]

    def preload(self) -> None:
        if self._river is not None:
            self._river.preload()

    def update(self, batch: Batch) -> list[Signal]:
        if self._river is not None:
            return self._river.update(batch)
        if len(batch) == 0 or not batch.has(self.series):
            return []
        values = np.asarray(batch.series(self.series), dtype=np.float64)
        rows = np.flatnonzero(~np.isnan(values))
        kept = (values[rows] != 0).astype(np.float64)  # 0/1: anything not 0 is an error
        up = distance_cusum_run(self._sides[0], kept.tolist(), self.warm_start, CUSUM_ARL)
        down: list[tuple[int, float]] = []
        start = 0
        for stop in [j + 1 for j, _ in up] + [len(kept)]:  # after a rise the fall side starts over too
            part = (1.0 - kept[start:stop]).tolist()
            down += [
                (start + j, nats) for j, nats in distance_cusum_run(self._sides[1], part, self.warm_start, CUSUM_ARL)
            ]
            if stop < len(kept) or (up and stop == up[-1][0] + 1):
                self._sides[1] = [0.0] * len(STATE)
            start = stop
        fired = {j: ("down", nats) for j, nats in down}
        fired.update((j, ("up", nats)) for j, nats in up)
        out = [
            self._signal(batch, int(rows[j]), self._seen + j + 1, d, nats, None)
            for j, (d, nats) in sorted(fired.items())
        ]
        self._seen += len(kept)
        return out

    def snapshot(self) -> dict[str, Any]:
        if self._river is not None:
            return {"river": self._river.snapshot()}
        return {"sides": [list(side) for side in self._sides], "seen": self._seen}

    def restore(self, state: Mapping[str, Any]) -> None:
        if self._river is not None:
            if not isinstance(state.get("river"), Mapping):
                raise ValueError("the saved state of eddm is not River's EDDM's; it starts afresh")
            self._river.restore(state["river"])
            return
        sides = state.get("sides")
        if not (isinstance(sides, list) and len(sides) == 2 and all(len(side) == len(STATE) for side in sides)):
            raise ValueError("the saved state of eddm is not the distance CUSUM's; it starts afresh")
        self._sides = [[float(v) for v in side] for side in sides]
        self._seen = int(state["seen"])
