"""CUSUM and EWMA control charts on one series, against a fixed reference.

River has no control charts. Both charts standardise the series by a reference mean and
standard deviation, given explicitly (``mean``, ``sd``) or estimated from the first ``warmup``
values (Welford's running moments, so memory stays O(1)). Their thresholds are therefore in
units of the reference sd and, unlike Page-Hinkley's, do not depend on the scale of the series.
A signal is an *edge* (``drift`` true for that update); after it the chart restarts from zero
against the same reference, so a shift that persists raises a signal again after about one
detection delay. Missing values (NaN) are skipped.

>>> import numpy as np
>>> from driftwarden.detectors.base import Batch
>>> rng = np.random.default_rng(7)
>>> x = np.concatenate([rng.normal(0, 1, 2000), rng.normal(1, 1, 100)])
>>> [s.at for s in Cusum(series="x").update(Batch.of(index=range(2100), features={"x": x}))]
[2024, 2051, 2077, 2091]
>>> [s.at for s in Ewma(series="x").update(Batch.of(index=range(2100), features={"x": x}))]
[2024, 2051, 2082]
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Monitor, Signal, Stream
from driftwarden.detectors.streaming import LABELED_SERIES

DEFAULT_WARMUP = 1000
"""Values that estimate the reference mean and sd: their errors (about 0.03 sd) then move the
false-alarm rate little."""

CUSUM_K = 0.5
"""Allowance in reference sds: the chart is tuned to detect a 1-sd shift fastest."""

CUSUM_H = 14.0
"""Decision threshold in reference sds. Measured (20 seeds x 10^5 N(0,1) events, reference from
the warmup): h=12 gave 1 false alarm in 2*10^6 events, h=14 none; a 1-sd shift is then found
after a median 24 events (bench/detection.py has the table)."""

EWMA_LAMBDA = 0.1
"""Weight of the newest value: the usual choice for shifts of 0.5-1.5 sd."""

EWMA_L = 5.0
"""Control-limit width in EWMA sds. Measured as CUSUM_H: L=4.5 gave 12 false alarms in 2*10^6
events, L=5 gave 2 (0.1 per 100k), with a median delay of 34 events for a 1-sd shift."""

MODES = ("both", "up", "down")


def _check(field: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{field}: {value!r} is not allowed; {allowed}")


class _Chart(Monitor):
    """Shared machinery: reference estimation, the per-value loop, edge signals, state."""

    edge = True
    series: str
    warmup: int
    mean: float | None
    sd: float | None
    mode: str

    def _check_common(self) -> None:
        _check(
            "series",
            self.series,
            isinstance(self.series, str) and bool(self.series),
            "give the name of a feature, 'prediction', 'score', 'error' or 'residual'",
        )
        _check(
            "warmup",
            self.warmup,
            isinstance(self.warmup, int) and self.warmup >= 2,
            "it must be an integer >= 2",
        )
        _check(
            "mean",
            self.mean,
            self.mean is None or math.isfinite(self.mean),
            "give a finite number or leave it out to estimate it",
        )
        _check(
            "sd",
            self.sd,
            self.sd is None or (math.isfinite(self.sd) and self.sd > 0),
            "give a number > 0 or leave it out to estimate it",
        )
        _check("mode", self.mode, self.mode in MODES, f"allowed: {list(MODES)}")

    @property
    def stream(self) -> Stream:  # type: ignore[override]
        return "labeled" if self.series in LABELED_SERIES else "predictions"

    def _reset(self) -> None:
        self._n = 0  # warmup values seen (Welford)
        self._m = 0.0
        self._m2 = 0.0
        self._mu = self.mean
        self._sigma = self.sd
        self._seen = 0
        self._since = 0  # values since the chart (re)started
        self._start_chart()

    def _ready(self) -> bool:
        return self._n >= self.warmup or (self.mean is not None and self.sd is not None)

    def _learn(self, v: float) -> None:
        self._n += 1
        d = v - self._m
        self._m += d / self._n
        self._m2 += d * (v - self._m)
        if self._n == self.warmup:
            if self.mean is None:
                self._mu = self._m
            if self.sd is None:
                sd = math.sqrt(self._m2 / (self._n - 1))
                self._sigma = sd if sd > 0 else 1e-12

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or not batch.has(self.series):
            return []
        values = np.asarray(batch.series(self.series), dtype=np.float64)
        out: list[Signal] = []
        for i, v in enumerate(values.tolist()):
            if v != v:
                continue
            self._seen += 1
            if not self._ready():
                self._learn(v)
                continue
            assert self._mu is not None and self._sigma is not None
            self._since += 1
            stat, limit, direction = self._step((v - self._mu) / self._sigma)
            if direction:
                out.append(
                    Signal(
                        kind=self.kind,
                        at=int(batch.index[i]),
                        ts=float(batch.ts[i]),
                        drift=True,
                        value=stat,
                        threshold=limit,
                        details={
                            "series": self.series,
                            "seen": self._seen,
                            "direction": direction,
                            "mean": self._mu,
                            "sd": self._sigma,
                        },
                    )
                )
                self._start_chart()
        return out

    @abstractmethod
    def _start_chart(self) -> None:
        """(Re)start the chart's statistic."""

    @abstractmethod
    def _step(self, z: float) -> tuple[float, float, str | None]:
        """Advance the chart by one standardised value: (statistic, limit, direction or None)."""

    @abstractmethod
    def _chart_state(self) -> dict[str, Any]:
        """The chart's own state, for :meth:`snapshot`."""

    @abstractmethod
    def _set_chart_state(self, state: Mapping[str, Any]) -> None:
        """Resume the chart from :meth:`_chart_state` output."""

    def snapshot(self) -> dict[str, Any]:
        return {
            "n": self._n,
            "m": self._m,
            "m2": self._m2,
            "mu": self._mu,
            "sigma": self._sigma,
            "seen": self._seen,
            "since": self._since,
            "chart": self._chart_state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._n, self._m, self._m2 = int(state["n"]), float(state["m"]), float(state["m2"])
        self._mu, self._sigma = state["mu"], state["sigma"]
        self._seen, self._since = int(state["seen"]), int(state["since"])
        self._set_chart_state(state["chart"])


class Cusum(_Chart):
    """Tabular CUSUM (Page 1954) on standardised values ``z``: ``S+ = max(0, S+ + z - k)``,
    ``S- = max(0, S- - z - k)``; a signal when either exceeds ``h``.

    ``k`` and ``h`` are in reference sds. The defaults (k=0.5, h=14) gave no false alarm in
    2*10^6 stationary events and find a 1-sd shift after about 25 events (bench/detection.py).
    ``mode`` ``"up"``/``"down"`` watches one side only (e.g. ``"up"`` on ``error``).
    Memory: O(1) — running moments during warmup, two sums after.

    >>> m = Cusum(series="x", mean=0.0, sd=1.0, h=4.0)
    >>> from driftwarden.detectors.base import Batch
    >>> b = Batch.of(index=range(6), features={"x": [0, 3, 3, 0, -4, -4]})
    >>> [(s.at, s.details["direction"]) for s in m.update(b)]
    [(2, 'up'), (5, 'down')]
    """

    kind = "cusum"

    def __init__(
        self,
        series: str,
        warmup: int = DEFAULT_WARMUP,
        mean: float | None = None,
        sd: float | None = None,
        k: float = CUSUM_K,
        h: float = CUSUM_H,
        mode: str = "both",
    ) -> None:
        self.series, self.warmup, self.mean, self.sd = series, warmup, mean, sd
        self.k, self.h, self.mode = k, h, mode
        self._check_common()
        _check("k", k, isinstance(k, int | float) and math.isfinite(k) and k >= 0, "it must be >= 0")
        _check("h", h, isinstance(h, int | float) and math.isfinite(h) and h > 0, "it must be > 0")
        super().__init__()

    def _start_chart(self) -> None:
        self._up = 0.0
        self._down = 0.0

    def _step(self, z: float) -> tuple[float, float, str | None]:
        if self.mode != "down":
            self._up = max(0.0, self._up + z - self.k)
        if self.mode != "up":
            self._down = max(0.0, self._down - z - self.k)
        h = float(self.h)
        if self._up > h:
            return self._up, h, "up"
        if self._down > h:
            return self._down, h, "down"
        return max(self._up, self._down), h, None

    def _chart_state(self) -> dict[str, Any]:
        return {"up": self._up, "down": self._down}

    def _set_chart_state(self, state: Mapping[str, Any]) -> None:
        self._up, self._down = float(state["up"]), float(state["down"])


class Ewma(_Chart):
    """EWMA chart (Roberts 1959) on standardised values: ``e = (1 - lam) * e + lam * z``; a
    signal when ``|e|`` exceeds ``L * sqrt(lam / (2 - lam) * (1 - (1 - lam)^(2t)))`` (the exact
    standard deviation of ``e`` after ``t`` values, so early values are not over-trusted).

    The defaults (lam=0.1, L=5) gave 0.1 false alarms per 100k stationary events and find a
    1-sd shift after about 35 events (bench/detection.py). Memory: O(1).

    >>> m = Ewma(series="x", mean=0.0, sd=1.0, lam=0.5, L=2.0)
    >>> from driftwarden.detectors.base import Batch
    >>> b = Batch.of(index=range(4), features={"x": [0, 0, 3, 0]})
    >>> [(s.at, round(s.value, 3)) for s in m.update(b)]
    [(2, 1.5)]
    """

    kind = "ewma"

    def __init__(
        self,
        series: str,
        warmup: int = DEFAULT_WARMUP,
        mean: float | None = None,
        sd: float | None = None,
        lam: float = EWMA_LAMBDA,
        L: float = EWMA_L,  # noqa: N803
        mode: str = "both",
    ) -> None:
        self.series, self.warmup, self.mean, self.sd = series, warmup, mean, sd
        self.lam, self.L, self.mode = lam, L, mode
        self._check_common()
        _check("lam", lam, isinstance(lam, int | float) and 0 < lam <= 1, "it must be in (0, 1]")
        _check("L", L, isinstance(L, int | float) and math.isfinite(L) and L > 0, "it must be > 0")
        super().__init__()

    def _start_chart(self) -> None:
        self._e = 0.0
        self._decay = 1.0  # (1 - lam)^(2t)

    def _step(self, z: float) -> tuple[float, float, str | None]:
        lam = self.lam
        self._e = (1.0 - lam) * self._e + lam * z
        self._decay *= (1.0 - lam) ** 2
        limit = self.L * math.sqrt(lam / (2.0 - lam) * (1.0 - self._decay))
        e = self._e
        if e > limit and self.mode != "down":
            return e, limit, "up"
        if e < -limit and self.mode != "up":
            return e, limit, "down"
        return e, limit, None

    def _chart_state(self) -> dict[str, Any]:
        return {"e": self._e, "decay": self._decay}

    def _set_chart_state(self, state: Mapping[str, Any]) -> None:
        self._e, self._decay = float(state["e"]), float(state["decay"])
