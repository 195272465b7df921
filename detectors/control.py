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
from driftwarden.detectors.streaming import BINARY_SERIES, LABELED_SERIES, resolve_direction
from driftwarden.detectors.warmup import RATE_FLOOR, Warmup

DEFAULT_WARMUP = 1000
"""Values that estimate the reference mean and sd: their errors (about 0.03 sd) then move the
false-alarm rate little."""

BINARY_WARMUP = 5000
"""Warm-up on ``error`` and ``label``: a rate needs more values than a mean (at 5 %, 5,000 values
pin it to +-0.6 points)."""

RATE_MARGIN = 2.0
"""On a 0/1 series the EWMA chart allows for the warm-up rate's own error: 2 standard errors
(``2 / sqrt(warmup)`` sds) are added to its limit."""

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

CUSUM_ARL_BINARY = 200_000
"""Mean run between false alarms, in values, that a chart on a 0/1 series is set for: twice the
10^5 of the bound (issue 18: at most 1 false alarm per 100,000 events). Measured (20 twins x
10^5 events, 200 changed streams): 0.50 / 0.23 / 0.38 false alarms per 100k at 5 / 30 / 10 %
errors, a doubled 5 % rate found within 1,000 values in 197 of 200 (median 290), a doubled 30 %
rate after a median 45 (bench/calibration.py). With a threshold fixed in sds (40, before) the
false alarms went from 0 at 30 % to 5.7 per 100k at 1 %."""


def bernoulli_chart(mu: float, p: float, sd: float, arl: float) -> tuple[float, float, float, float]:
    """The Bernoulli CUSUM (Reynolds and Stoumbos 1999) in the chart's units, sds of
    ``(v - mu) / sd``: ``(k_up, h_up, k_down, h_down)``. Each value moves a sum by its
    log-likelihood ratio of rate ``p`` against ``up(p) = min(2p, (1 + p) / 2)`` (the error rate
    doubles, or the rate of correct values halves, whichever is the smaller change), or against
    ``1 - up(1 - p)`` on the down side; the threshold is ``ln(arl * KL)`` nats, ``KL`` the
    evidence a value carries against ``p`` when ``p`` holds (Wald: the mean run to a false alarm
    is then about ``arl`` values, at every rate).

    >>> [round(v, 3) for v in bernoulli_chart(0.05, 0.05, 0.05 ** 0.5 * 0.95 ** 0.5, 200_000)]
    [0.103, 49.825, 0.064, 48.485]
    """
    out = []
    for p1 in (min(2 * p, (1 + p) / 2), max(2 * p - 1, p / 2)):
        a = math.log(p1 * (1 - p) / (p * (1 - p1)))  # per unit of v
        b = math.log((1 - p1) / (1 - p))
        kl = p * math.log(p / p1) + (1 - p) * math.log((1 - p) / (1 - p1))  # nats per value before a change
        nats = math.log(arl * kl)  # Wald: the mean run to a false alarm is about e^h / kl
        out += (
            [-(a * mu + b) / (a * sd), nats / abs(a * sd)] if a > 0 else [(a * mu + b) / (a * sd), nats / abs(a * sd)]
        )
    return out[0], out[1], out[2], out[3]


EWMA_L_BINARY = 3.5
"""Limit width on a 0/1 series (was 4 with lam 0.002: a doubled 5 % rate found within 1,000 values
in 193 of 200 streams, 0.10 false alarms per 100k). With EWMA_LAMBDA_BINARY: 197 of 200 (median
325), and 0.55 / 0.12 / 0.38 false alarms per 100k at 5 / 30 / 10 % errors (20 twins x 10^5
values, bench/calibration.py's streams)."""

EWMA_LAMBDA_BINARY = 0.003
"""Weight of the newest value on a 0/1 series: averaging ~700 values makes the chart near
Gaussian and sensitive to a doubled rate (0.23 sd at 5 %)."""


def _check(field: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{field}: {value!r} is not allowed; {allowed}")


class _Chart(Monitor):
    """Shared machinery: reference estimation, the per-value loop, edge signals, state."""

    edge = True
    series: str
    warmup: int | None
    mean: float | None
    sd: float | None
    direction: str | None

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
            self.warmup is None or (isinstance(self.warmup, int) and self.warmup >= 2),
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
        resolve_direction(self.direction, self.series)

    @property
    def stream(self) -> Stream:  # type: ignore[override]
        return "labeled" if self.series in LABELED_SERIES else "predictions"

    @property
    def watching(self) -> str:
        """The resolved direction: ``up`` on ``error`` and loss-like series, else ``both``."""
        return resolve_direction(self.direction, self.series)

    @property
    def warmup_size(self) -> int:
        """``warmup``, or its default: 5,000 on ``error`` and ``label``, else 1,000."""
        if self.warmup is not None:
            return self.warmup
        return BINARY_WARMUP if self.series in BINARY_SERIES else DEFAULT_WARMUP

    def _margin(self) -> float:
        """The warm-up's error in sds, allowed for on 0/1 series."""
        return RATE_MARGIN / math.sqrt(self._warm.n) if self._binary and self._warm.n else 0.0

    def _reset(self) -> None:
        self._warm = Warmup()
        self._mu = self.mean
        self._sigma = self.sd
        self._binary = False  # a 0/1 series, known at the end of the warmup
        self._seen = 0
        self._since = 0  # values since the chart (re)started
        self._start_chart()

    def _ready(self) -> bool:
        return self._warm.n >= self.warmup_size or (self.mean is not None and self.sd is not None)

    def _learn(self, v: float) -> None:
        self._warm.add(v)
        if self._warm.n == self.warmup_size:
            self._binary = self._warm.binary
            if self.mean is None:
                self._mu = self._warm.mean
            if self.sd is None:
                self._sigma = self._warm.sd()
            self._start_chart()

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
                        drift=self.watching in ("both", direction),
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
            "warm": self._warm.state(),
            "binary": self._binary,
            "mu": self._mu,
            "sigma": self._sigma,
            "seen": self._seen,
            "since": self._since,
            "chart": self._chart_state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._warm = Warmup.from_state(state["warm"])
        self._binary = bool(state["binary"])
        self._mu, self._sigma = state["mu"], state["sigma"]
        self._seen, self._since = int(state["seen"]), int(state["since"])
        self._set_chart_state(state["chart"])


class Cusum(_Chart):
    """Tabular CUSUM (Page 1954) on standardised values ``z``: ``S+ = max(0, S+ + z - k)``,
    ``S- = max(0, S- - z - k)``; a change when either exceeds ``h``.

    ``k`` and ``h`` are in reference sds. The defaults (k=0.5, h=14) gave no false alarm in
    2*10^6 stationary events and find a 1-sd shift after about 25 events (bench/detection.py).
    On a 0/1 series (``error``) the sd is Bernoulli's from the warm-up rate ``p`` (with a floor),
    and the defaults of ``k`` and ``h`` become Bernoulli's log-likelihood-ratio CUSUM of ``p``
    against a doubled rate (:func:`bernoulli_chart`), set for a false alarm per 200,000 values
    at any rate. A warm-up rate below ``RATE_FLOOR`` (1 %) is held at the floor for the chart, so
    the fall side then stays idle (each 0 would be evidence of a fall from the floor); above
    ``1 - RATE_FLOOR`` the rise side does. Both sums are otherwise kept: a change against
    ``direction`` is a signal with ``drift: false``.
    Memory: O(1) — running moments during warmup, two sums after.

    >>> m = Cusum(series="x", mean=0.0, sd=1.0, h=4.0, direction="up")
    >>> from driftwarden.detectors.base import Batch
    >>> b = Batch.of(index=range(6), features={"x": [0, 3, 3, 0, -4, -4]})
    >>> [(s.at, s.drift, s.details["direction"]) for s in m.update(b)]
    [(2, True, 'up'), (5, False, 'down')]
    """

    kind = "cusum"

    def __init__(
        self,
        series: str,
        warmup: int | None = None,
        mean: float | None = None,
        sd: float | None = None,
        k: float | None = None,
        h: float | None = None,
        direction: str | None = None,
    ) -> None:
        self.series, self.warmup, self.mean, self.sd = series, warmup, mean, sd
        self.k, self.h, self.direction = k, h, direction
        self._check_common()
        _check("k", k, k is None or (isinstance(k, int | float) and math.isfinite(k) and k >= 0), "it must be >= 0")
        _check("h", h, h is None or (isinstance(h, int | float) and math.isfinite(h) and h > 0), "it must be > 0")
        super().__init__()

    def _start_chart(self) -> None:
        self._up = 0.0
        self._down = 0.0
        k = kd = CUSUM_K
        h = hd = CUSUM_H
        if getattr(self, "_binary", False) and self._mu is not None and self._sigma:
            rate = min(max(self._mu, RATE_FLOOR), 1 - RATE_FLOOR)
            k, h, kd, hd = bernoulli_chart(self._mu, rate, self._sigma, CUSUM_ARL_BINARY)
        self._k = float(self.k) if self.k is not None else k
        self._h = float(self.h) if self.h is not None else h
        self._kd = float(self.k) if self.k is not None else kd
        self._hd = float(self.h) if self.h is not None else hd
        self._set_idle()

    def _set_idle(self) -> None:
        """On a 0/1 series a side whose warm-up rate is past the floor (RATE_FLOOR) is idle: the
        reference held at the floor is not the rate, so that side would test a change that has
        already happened (below 1 %, the fall side saw each 0 as evidence of a fall)."""
        mu = self._mu if getattr(self, "_binary", False) and self._mu is not None else 0.5
        self._idle_down, self._idle_up = mu < RATE_FLOOR, mu > 1.0 - RATE_FLOOR

    def _step(self, z: float) -> tuple[float, float, str | None]:
        if not self._idle_up:
            self._up = max(0.0, self._up + z - self._k)
        if not self._idle_down:
            self._down = max(0.0, self._down - z - self._kd)
        if self._up > self._h:
            return self._up, self._h, "up"
        if self._down > self._hd:
            return self._down, self._hd, "down"
        return max(self._up, self._down), self._h, None

    def _chart_state(self) -> dict[str, Any]:
        return {"up": self._up, "down": self._down, "k": self._k, "h": self._h, "kd": self._kd, "hd": self._hd}

    def _set_chart_state(self, state: Mapping[str, Any]) -> None:
        self._up, self._down = float(state["up"]), float(state["down"])
        self._k, self._h = float(state["k"]), float(state["h"])
        self._kd, self._hd = float(state.get("kd", self._k)), float(state.get("hd", self._h))  # older states: one k, h
        self._set_idle()


class Ewma(_Chart):
    """EWMA chart (Roberts 1959) on standardised values: ``e = (1 - lam) * e + lam * z``; a
    change when ``|e|`` exceeds ``L * sqrt(lam / (2 - lam) * (1 - (1 - lam)^(2t)))`` (the exact
    standard deviation of ``e`` after ``t`` values, so early values are not over-trusted).

    The defaults (lam=0.1, L=5) gave 0.1 false alarms per 100k stationary events and find a
    1-sd shift after about 35 events (bench/detection.py). On a 0/1 series the sd is Bernoulli's
    from the warm-up rate (with a floor) and lam and L default to 0.003 and 3.5, which
    average enough values to see a doubled rate. A change against ``direction`` is a signal with
    ``drift: false``. Memory: O(1).

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
        warmup: int | None = None,
        mean: float | None = None,
        sd: float | None = None,
        lam: float | None = None,
        L: float | None = None,  # noqa: N803
        direction: str | None = None,
    ) -> None:
        self.series, self.warmup, self.mean, self.sd = series, warmup, mean, sd
        self.lam, self.L, self.direction = lam, L, direction
        self._check_common()
        _check("lam", lam, lam is None or (isinstance(lam, int | float) and 0 < lam <= 1), "it must be in (0, 1]")
        _check("L", L, L is None or (isinstance(L, int | float) and math.isfinite(L) and L > 0), "it must be > 0")
        super().__init__()

    def _start_chart(self) -> None:
        self._e = 0.0
        self._decay = 1.0  # (1 - lam)^(2t)
        binary = getattr(self, "_binary", False)
        self._lam = float(self.lam) if self.lam is not None else (EWMA_LAMBDA_BINARY if binary else EWMA_LAMBDA)
        self._L = float(self.L) if self.L is not None else (EWMA_L_BINARY if binary else EWMA_L)
        self._wide = self._margin() if hasattr(self, "_warm") else 0.0

    def _step(self, z: float) -> tuple[float, float, str | None]:
        lam = self._lam
        self._e = (1.0 - lam) * self._e + lam * z
        self._decay *= (1.0 - lam) ** 2
        limit = self._L * math.sqrt(lam / (2.0 - lam) * (1.0 - self._decay)) + self._wide
        e = self._e
        if e > limit:
            return e, limit, "up"
        if e < -limit:
            return e, limit, "down"
        return e, limit, None

    def _chart_state(self) -> dict[str, Any]:
        return {"e": self._e, "decay": self._decay, "lam": self._lam, "L": self._L, "wide": self._wide}

    def _set_chart_state(self, state: Mapping[str, Any]) -> None:
        self._e, self._decay, self._lam = float(state["e"]), float(state["decay"]), float(state["lam"])
        self._L, self._wide = float(state["L"]), float(state["wide"])
