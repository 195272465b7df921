"""HDDM_A and HDDM_W (Frías-Blanco et al. 2014): drift of a 0/1 error rate from bounds on its mean.

driftwarden's own implementation of both, on plain-data state. ``bound: hoeffding`` is River's
detector exactly (HDDMA; HDDMW with McDiarmid's bound, the weighted form of Hoeffding's; alarm
lists identical, tests/detectors/test_references.py), and with its other parameters left out it is
the previous version's kind (HDDM_A at River's 0.001, HDDM_W at 1e-5 and weight 0.005). Hoeffding's
bound holds for any series in [0, 1], so it assumes the worst variance, 1/4; a 5 % error rate has
variance 0.0475, and the test needs ~5 times more values than the variance calls for.

``bound: bernstein`` (the default) tests with Bernstein's inequality instead: a weighted sum
``sum a_i x_i`` of values in [0, 1] with variance ``p (1 - p)`` deviates by more than
``sqrt(2 p (1 - p) V L) + max |a_i| L / 3`` (``V = sum a_i^2``) with probability ``exp(-L)``; ``p``
is the error rate since the test's start. The range term keeps a short stretch (whose mean is
noise) from passing. Both keep HDDM_A's cut point, chosen with Hoeffding's bound as River does: the
prefix whose mean plus bound is the lowest, which moves to the latest value while the stream is
stationary and stays where a rise starts (with Bernstein's bound there too, the cut stayed at an
early, low prefix in some streams, and the change was diluted by every value after it).

- HDDM_A tests the running mean ``z`` against the cut's ``x``: ``a_i = 1/n - 1/n_x`` before the
  cut and ``1/n`` after, so ``V = 1/n_x - 1/n``.
- HDDM_W tests an EWMA (weight ``lambda_val``) of the values after the cut, started at the cut's
  mean ``x``, against ``x``: the start cancels, the values after the cut weigh ``lam (1 - lam)^k``
  and the prefix ``(1 - f) / n_x`` each (``f = (1 - lam)^m`` after m values). River's HDDM_W instead
  takes as its reference the lowest weighted mean of the whole stream plus a constant bound, a
  running minimum that goes on falling on a stationary stream (docs/monitors.md: with Bernstein's
  test there, no setting was both quiet at 30 % errors and quick at 5 %).

As in driftwarden's other error-rate detectors, a rise (``up``) is tested on the series and a fall
on ``1 - x`` by a second test, so both directions are seen and reported.

>>> import numpy as np
>>> from driftwarden.detectors.base import Batch
>>> rng = np.random.default_rng(3)
>>> e = (rng.random(14000) < np.r_[np.full(10000, 0.05), np.full(4000, 0.10)]).astype(float)
>>> b = Batch.of(index=range(14000), prediction=np.zeros(14000), label=e)
>>> [s.at for s in HddmA().update(b)], [s.at for s in HddmA(bound="hoeffding").update(b)]
([10445], [12307])
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Signal
from driftwarden.detectors.streaming import Streaming

BOUNDS = ("bernstein", "hoeffding")

HDDM_A_CONFIDENCE = 0.0003
"""HDDM_A's drift confidence with ``bound: bernstein`` (bench/calibration.py's streams, 12 twins x 10^5
values and 200 changed streams): 0.28 / 0.16 false alarms per 100k at 5 / 30 % errors, a doubled 5 %
rate found within 1,000 values in 195 of 200 streams (median 367; all 20 of the bench's seeds), a
doubled 30 % rate in 200 of 200 (median 100). At 0.0005: 0.59 / 0.25 and 196 of 200; at 0.0001:
0.06 / 0.06 and 192 of 200. The misses are streams whose first 1,000 changed values hold 7-8.5 %
errors, near what any test can tell from 5 % at this false-alarm rate."""

HDDM_A_CONFIDENCE_HOEFFDING = 0.001
"""HDDM_A's drift confidence with ``bound: hoeffding``: River's default, so that bound alone is
River's HDDMA (0.001 with Bernstein's bound: 0.91 false alarms per 100k at 5 %, found 98 of 100)."""

HDDM_W_CONFIDENCE = 0.001
"""HDDM_W's drift confidence with ``bound: bernstein``, with HDDM_W_LAMBDA (bench/calibration.py's streams,
12 twins x 10^5 values and 200 changed streams): 0.75 / 0.41 false alarms per 100k at 5 / 30 % errors, a
doubled 5 % rate found within 1,000 values in 193 of 200 streams (median 327; all 20 of the bench's seeds),
a doubled 30 % rate in 200 of 200 (median 68). At 0.002: 1.66 / 0.81 and 196 of 200; at 0.0003: quieter,
19 of the bench's 20."""

HDDM_W_LAMBDA = 0.003
"""HDDM_W's weight of the newest value with ``bound: bernstein`` (~670 values): at 0.005 (0.001) 19 of the
bench's 20 doubled 5 % rates were found, at 0.002 196 of 200 but 19 of the bench's 20."""

HDDM_W_CONFIDENCE_HOEFFDING = 1e-5
"""HDDM_W's drift confidence with ``bound: hoeffding`` (River: 0.001). With River's weight (0.05: the
last ~40 values) the weighted mean is noisy: 22 false alarms per 100k at 30 % errors (McDiarmid's
bound). With HDDM_W_LAMBDA_HOEFFDING and 1e-5: 0.3, and a doubled 30 % rate found after a median ~80."""

HDDM_W_LAMBDA_HOEFFDING = 0.005
"""HDDM_W's weight of the newest value with ``bound: hoeffding`` (River: 0.05): ~400 values, enough to see a rise of
a low rate (10 % -> 30 % found after 213 values, River's defaults 344)."""

WARNING_CONFIDENCE = 0.005
"""River's warning confidence, kept as a parameter for the same configuration as River's; driftwarden
reports drift signals only (a warning changes no state of the test)."""


def _check_bound(bound: str) -> None:
    if bound not in BOUNDS:
        raise ValueError(f"bound: {bound!r} is not allowed; allowed: {list(BOUNDS)}")


def _check_confidence(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0 < value < 1):
        raise ValueError(f"{name}: {value!r} is not allowed; it must be in (0, 1)")


# ----------------------------------------------------------------------------- HDDM_A

A_STATE = ("n", "mean", "cut_n", "cut_mean", "drifted")
"""One HDDM_A test's state: values since its start and their mean, the cut point (the prefix whose
mean plus bound is the lowest: the level before a rise), and whether the last value alarmed."""


def hddm_a_run(state: list[float], values: list[float], confidence: float, bound: str) -> list[int]:
    """Feed ``values`` to one HDDM_A test of a rise (River's HDDMA, one-sided); ``state`` (A_STATE) is
    updated in place. Returns the positions in ``values`` that alarmed; the test starts over on the
    value after an alarm, as River's does.

    >>> state = [0.0, 0.0, 0.0, 0.0, 0.0]
    >>> hddm_a_run(state, [0.0] * 200 + [1.0] * 20, 0.001, "hoeffding")
    [203]
    """
    n, z, nx, x, drifted = state
    l1, l2 = math.log(1.0 / confidence), math.log(2.0 / confidence)
    hoeffding = bound == "hoeffding"
    out: list[int] = []
    for i, v in enumerate(values):
        if drifted:
            n = z = nx = x = 0.0
            drifted = 0.0
        n += 1.0
        z += (1.0 / n) * (v - z)
        if nx == 0:
            nx, x = n, z
        eps_z = math.sqrt(1.0 / (2 * n) * l1)  # the cut point is River's (Hoeffding's) for both bounds
        eps_x = math.sqrt(1.0 / (2 * nx) * l1)
        if x + eps_x >= z + eps_z:
            nx, x = n, z
        if nx == n:
            continue
        m = (n - nx) / nx * (1.0 / n)  # the variance factor of z - x: 1/nx - 1/n
        if hoeffding:
            eps = math.sqrt(m / 2 * l2)
        else:
            eps = math.sqrt(2.0 * z * (1.0 - z) * m * l2) + max(m, 1.0 / n) * l2 / 3.0
        if z - x >= eps:
            drifted = 1.0
            out.append(i)
    state[:] = [n, z, nx, x, drifted]
    return out


# ----------------------------------------------------------------------------- HDDM_W

W_STATE = ("total", "cut", "recent", "cut_point", "drifted")
"""One HDDM_W test's state as River keeps it (``bound: hoeffding``): the weighted mean of every value
(``total``), its copy at the cut point (``cut``), the weighted mean of the values since (``recent``),
each ``[ewma, initialised, ibc]`` (ibc: River's sum of the squared weights); the lowest weighted mean
plus bound seen (``cut_point``); whether the last value alarmed."""

WB_STATE = ("n", "mean", "cut_n", "cut_mean", "recent", "ibc", "start_weight", "drifted")
"""One HDDM_W test's state with ``bound: bernstein``: values since its start and their mean, HDDM_A's
cut point, the EWMA of the values after the cut (started at the cut's mean), the sum of the squared
weights of those values, the weight left on the start ((1 - lam)^m), whether the last value alarmed."""


def _sample() -> list[float]:
    return [0.0, 0.0, 1.0]  # River's SampleInfo: ewma 0, not initialised, ibc 1


def _fresh_w(bound: str = "hoeffding") -> list[Any]:
    if bound == "bernstein":
        return [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return [_sample(), _sample(), _sample(), math.inf, 0.0]


def hddm_w_run(state: list[Any], values: list[float], confidence: float, lam: float) -> list[int]:
    """Feed ``values`` to one HDDM_W test of a rise, River's HDDMW (one-sided, McDiarmid's bound);
    ``state`` (W_STATE) is updated in place. Returns the positions that alarmed; the test starts over
    after an alarm.

    >>> hddm_w_run(_fresh_w(), [0.0] * 200 + [1.0] * 20, 0.001, 0.05)
    [213]
    """
    total, cut, recent, cut_point, drifted = state
    total, cut, recent = list(total), list(cut), list(recent)
    log_term = math.log(1 / confidence)
    lam_sq, c_lam_sq, keep = lam * lam, (1 - lam) ** 2, 1.0 - lam

    def step(s: list[float], v: float) -> None:
        """River's EWMean (the first value is the mean) and SampleInfo's ibc (from 1 before the first value)."""
        s[0] = lam * v + keep * s[0] if s[1] else v
        s[1] = 1.0
        s[2] = lam_sq + c_lam_sq * s[2]

    out: list[int] = []
    for i, v in enumerate(values):
        if drifted:
            total, cut, recent, cut_point, drifted = _sample(), _sample(), _sample(), math.inf, 0.0
        step(total, v)
        eps = math.sqrt(total[2] * log_term / 2)
        if total[0] + eps < cut_point:
            cut_point = total[0] + eps
            cut, recent = list(total), _sample()
        else:
            step(recent, v)
        if not (cut[1] and recent[1]):
            continue
        if recent[0] - cut[0] > math.sqrt((cut[2] + recent[2]) * log_term / 2):
            drifted = 1.0
            out.append(i)
    state[:] = [total, cut, recent, cut_point, drifted]
    return out


def hddm_w_bernstein_run(state: list[float], values: list[float], confidence: float, lam: float) -> list[int]:
    """Feed ``values`` to one HDDM_W test of a rise with Bernstein's bound (the module's docstring);
    ``state`` (WB_STATE) is updated in place. Returns the positions that alarmed.

    >>> hddm_w_bernstein_run(_fresh_w("bernstein"), [0.0] * 200 + [1.0] * 20, 0.001, 0.05)
    [203]
    """
    n, z, nx, x, r, ibc, f, drifted = state
    l1, l2 = math.log(1.0 / confidence), math.log(2.0 / confidence)
    lam_sq, keep = lam * lam, 1.0 - lam
    keep_sq = keep * keep
    out: list[int] = []
    for i, v in enumerate(values):
        if drifted:
            n = z = nx = x = r = ibc = drifted = 0.0
            f = 1.0
        n += 1.0
        z += (1.0 / n) * (v - z)
        if nx == 0 or x + math.sqrt(1.0 / (2 * nx) * l1) >= z + math.sqrt(1.0 / (2 * n) * l1):
            nx, x, r, ibc, f = n, z, z, 0.0, 1.0  # HDDM_A's cut point moves here; the EWMA starts at its mean
            continue
        r = lam * v + keep * r
        ibc = lam_sq + keep_sq * ibc
        f *= keep
        spent = 1.0 - f  # the weight the values after the cut carry, taken from the cut's mean
        var = z * (1.0 - z)
        limit = math.sqrt(2.0 * var * (ibc + spent * spent / nx) * l2) + max(lam, spent / nx) * l2 / 3.0
        if r - x >= limit:
            drifted = 1.0
            out.append(i)
    state[:] = [n, z, nx, x, r, ibc, f, drifted]
    return out


# ----------------------------------------------------------------------------- monitors


class _Hddm(Streaming):
    """Two one-sided tests: a rise of the series and a rise of ``1 - x`` (a fall)."""

    error_rate = True
    series: str
    drift_confidence: float
    bound: str

    @abstractmethod
    def _fresh(self) -> list[Any]:
        """A test's state before any value."""

    @abstractmethod
    def _run(self, state: list[Any], values: list[float]) -> list[int]:
        """Feed ``values`` to one test (its ``state`` updated in place): the positions that alarmed."""

    def _reset(self) -> None:
        self._tests = [self._fresh(), self._fresh()]
        self._seen = 0

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or not batch.has(self.series):
            return []
        values = np.asarray(batch.series(self.series), dtype=np.float64)
        rows = np.flatnonzero(~np.isnan(values))
        kept = values[rows]
        up = self._run(self._tests[0], kept.tolist())
        down = set(self._run(self._tests[1], (1.0 - kept).tolist()))
        fired = {j: "up" for j in up}
        fired.update((j, "down") for j in down if j not in fired)
        out = [
            self._signal(batch, int(rows[j]), self._seen + j + 1, d, None, self.drift_confidence)
            for j, d in sorted(fired.items())
        ]
        self._seen += len(kept)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"tests": [list(t) for t in self._tests], "seen": self._seen}

    def restore(self, state: Mapping[str, Any]) -> None:
        if "tests" not in state:
            raise ValueError(
                f"the saved state of {self.kind} is River's object (driftwarden before its own HDDM); it starts afresh"
            )
        tests = [list(t) for t in state["tests"]]
        if len(tests) != 2 or any(len(t) != len(self._fresh()) for t in tests):
            raise ValueError(f"the saved state of {self.kind} does not have its shape; it starts afresh")
        self._tests = tests
        self._seen = int(state["seen"])


class HddmA(_Hddm):
    """HDDM_A: a rise of the running error rate over the level at its cut point, by a bound on means.
    ``bound: bernstein`` (default) is variance-aware; ``bound: hoeffding`` is River's HDDMA exactly.
    ``drift_confidence`` left out: 0.0003 with Bernstein's bound (calibrated), River's 0.001 with
    Hoeffding's. Memory: O(1).

    >>> HddmA().drift_confidence, HddmA().bound, HddmA().watching, HddmA(bound="hoeffding").drift_confidence
    (0.0003, 'bernstein', 'up', 0.001)
    """

    kind = "hddm_a"

    def __init__(
        self,
        series: str = "error",
        drift_confidence: float | None = None,
        warning_confidence: float = WARNING_CONFIDENCE,
        direction: str | None = None,
        bound: str = "bernstein",
    ) -> None:
        _check_bound(bound)
        if drift_confidence is None:
            drift_confidence = HDDM_A_CONFIDENCE_HOEFFDING if bound == "hoeffding" else HDDM_A_CONFIDENCE
        self.series, self.drift_confidence = series, drift_confidence
        self.warning_confidence, self.direction, self.bound = warning_confidence, direction, bound
        self._check_series()
        _check_confidence("drift_confidence", drift_confidence)
        super().__init__()

    def _fresh(self) -> list[Any]:
        return [0.0] * len(A_STATE)

    def _run(self, state: list[Any], values: list[float]) -> list[int]:
        return hddm_a_run(state, values, self.drift_confidence, self.bound)


class HddmW(_Hddm):
    """HDDM_W: a rise of a weighted (EWMA, weight ``lambda_val``) error rate over the level at its cut
    point. ``bound: bernstein`` (default): HDDM_A's cut point and an EWMA of the values after it,
    variance-aware (the module's docstring); ``bound: hoeffding``: River's HDDMW exactly.
    ``drift_confidence`` and ``lambda_val`` left out: 0.001 and 0.003 with Bernstein's bound, 1e-5
    and 0.005 with Hoeffding's (the previous version's; River's are 0.001 and 0.05). Memory: O(1).

    >>> HddmW().drift_confidence, HddmW().lambda_val, HddmW(bound="hoeffding").lambda_val
    (0.001, 0.003, 0.005)
    """

    kind = "hddm_w"

    def __init__(
        self,
        series: str = "error",
        drift_confidence: float | None = None,
        warning_confidence: float = WARNING_CONFIDENCE,
        lambda_val: float | None = None,
        direction: str | None = None,
        bound: str = "bernstein",
    ) -> None:
        _check_bound(bound)
        hoeffding = bound == "hoeffding"
        if drift_confidence is None:
            drift_confidence = HDDM_W_CONFIDENCE_HOEFFDING if hoeffding else HDDM_W_CONFIDENCE
        if lambda_val is None:
            lambda_val = HDDM_W_LAMBDA_HOEFFDING if hoeffding else HDDM_W_LAMBDA
        self.series, self.drift_confidence, self.warning_confidence = series, drift_confidence, warning_confidence
        self.lambda_val, self.direction, self.bound = lambda_val, direction, bound
        self._check_series()
        _check_confidence("drift_confidence", drift_confidence)
        if not (isinstance(lambda_val, int | float) and 0 < lambda_val < 1):
            raise ValueError(f"lambda_val: {lambda_val!r} is not allowed; it must be in (0, 1)")
        super().__init__()

    def _fresh(self) -> list[Any]:
        return _fresh_w(self.bound)

    def _run(self, state: list[Any], values: list[float]) -> list[int]:
        if self.bound == "hoeffding":
            return hddm_w_run(state, values, self.drift_confidence, self.lambda_val)
        return hddm_w_bernstein_run(state, values, self.drift_confidence, self.lambda_val)
