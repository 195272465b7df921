"""Reference values: River's detectors raw vs our wrappers, golden alarm indices, metrics vs
scikit-learn, CBPE against realized accuracy, and the argument errors of the new kinds."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from driftwarden.detectors.base import Batch, Monitor
from driftwarden.detectors.control import Cusum, Ewma
from driftwarden.detectors.drift import FeatureDrift, PredictionDrift
from driftwarden.detectors.estimated import EstimatedPerformance
from driftwarden.detectors.multivariate import AnomalyRate, DomainClassifier, mann_whitney_auc
from driftwarden.detectors.performance import METRICS, Performance
from driftwarden.detectors.quality import DataQuality
from driftwarden.detectors.registry import build
from river import drift
from river.drift import binary
from sklearn import metrics


def _streams() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2024)
    x = np.concatenate([rng.normal(0, 1, 2000), rng.normal(1, 1, 1000), rng.normal(-0.5, 1, 1000)])
    e = (rng.random(4000) < np.r_[np.full(2000, 0.1), np.full(2000, 0.3)]).astype(float)
    return x, e


X, E = _streams()


def alarms(kind: str, data: np.ndarray, chunk: int | None = None, **params: object) -> list[int]:
    m = build(kind, {"series": "x", **params})
    out = []
    step = chunk or len(data)
    for i in range(0, len(data), step):
        part = data[i : i + step]
        out += [s.at for s in m.update(Batch.of(index=range(i, i + len(part)), features={"x": part})) if s.drift]
    return out


def raw_alarms(detector: object, data: np.ndarray) -> list[int]:
    out = []
    for i, v in enumerate(data.tolist()):
        detector.update(v)  # type: ignore[attr-defined]
        if detector.drift_detected:  # type: ignore[attr-defined]
            out.append(i)
    return out


RIVER_PH = {"standardize": False, "threshold": 50.0, "delta": 0.005, "alpha": 0.9999, "direction": "both"}
"""River's PageHinkley defaults, pinned: our defaults are standardised and calibrated (issue 18)."""

RIVER_DEFAULTS: dict[str, dict[str, object]] = {
    "ddm": {"warm_start": 30, "memory": None},
    "eddm": {"warm_start": 30, "alpha": 0.95, "beta": 0.9, "method": "river"},
    "hddm_w": {"drift_confidence": 0.001, "lambda_val": 0.05, "bound": "hoeffding"},
    "hddm_a": {"bound": "hoeffding"},
}
"""River's defaults where ours are calibrated (issue 18; docs/monitors.md has before and after)."""

RIVER = [
    ("adwin", drift.ADWIN, X),
    ("ddm", binary.DDM, E),
    ("eddm", binary.EDDM, E),
    ("hddm_a", binary.HDDMA, E),
    ("hddm_w", binary.HDDMW, E),
]


@pytest.mark.parametrize(("kind", "cls", "data"), RIVER, ids=[r[0] for r in RIVER])
def test_wrappers_alarm_where_river_does(kind: str, cls: type, data: np.ndarray) -> None:
    expected = raw_alarms(cls(), data)
    assert expected
    pinned = RIVER_DEFAULTS.get(kind, {})
    assert alarms(kind, data, **pinned) == expected
    assert alarms(kind, data, chunk=333, **pinned) == expected


def _adwin_streams() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(17)
    shifts = np.r_[np.zeros(3000), np.full(1500, 2.0), np.full(1500, -1.0), np.full(2000, 0.5)]
    drifting = rng.normal(shifts, 1.0)
    drifting[rng.random(len(drifting)) < 0.02] = np.nan  # missing values are skipped
    rates = np.r_[np.full(3000, 0.05), np.full(2000, 0.3), np.full(2000, 0.1), np.full(1000, 0.6)]
    return {
        "stationary": rng.normal(0.0, 1.0, 6000),
        "drifting": drifting,
        "error_rate": (rng.random(len(rates)) < rates).astype(float),
        "steps": np.repeat(rng.integers(0, 3, 40), 150).astype(float),  # a change every few windows
    }


ADWIN_STREAMS = _adwin_streams()


@pytest.mark.parametrize("direction", ["up", "both"])
@pytest.mark.parametrize("stream", sorted(ADWIN_STREAMS))
def test_adwin_gives_rivers_signals_and_state_for_any_cut_of_the_stream(stream: str, direction: str) -> None:
    """The monitor's one loop over River's compiled window against River's ADWIN driven value by value
    through its public API: the same changes (where, which way the mean jumped, the estimation after), and
    the same River state (its plain snapshot) after every batch, for any batch size; a drift on a batch's
    last value resets the window on the next batch's first, as River's update does."""
    from driftwarden.detectors.river_state import river_to_plain
    from driftwarden.detectors.streaming import Adwin

    data = ADWIN_STREAMS[stream]
    delta = 0.05 if stream == "error_rate" else 0.002
    sizes = (1, 7, 333, len(data))
    ends = {min(start + size, len(data)) - 1 for size in sizes[1:] for start in range(0, len(data), size)}
    reference = drift.ADWIN(delta=delta)
    expected, states = [], {}
    for i, v in enumerate(data.tolist()):
        if v == v:
            before = reference.estimation
            reference.update(v)
            if reference.drift_detected:
                way = None if direction == "both" else "up" if reference.estimation > before else "down"
                expected.append((i, way, reference.estimation))
        if i in ends:
            states[i] = river_to_plain(reference)
    assert len(expected) >= (0 if stream == "stationary" else 3)
    for size in sizes:
        m = Adwin(series="x", delta=delta, direction=direction)
        got = []
        for start in range(0, len(data), size):
            part = data[start : start + size]
            signals = m.update(Batch.of(index=range(start, start + len(part)), features={"x": part}))
            got += [(s.at, s.details.get("direction"), s.value) for s in signals]
            if start + len(part) - 1 in states:
                assert m._detectors is not None
                assert river_to_plain(m._detectors[0]) == states[start + len(part) - 1], (size, start)
        assert got == expected, size
        assert m.snapshot()["seen"] == int(np.count_nonzero(~np.isnan(data)))


@pytest.mark.parametrize("kind", ["ddm", "eddm", "hddm_w"])
def test_calibrated_defaults_are_rivers_detector_at_other_parameters(kind: str) -> None:
    cls = {"ddm": binary.DDM, "eddm": binary.EDDM, "hddm_w": binary.HDDMW}[kind]
    previous = {"hddm_w": {"bound": "hoeffding"}, "eddm": {"method": "river"}}.get(kind, {})  # the previous version's
    ours = build(kind, previous)
    params = {k: getattr(ours, k) for k in RIVER_DEFAULTS[kind] if k not in ("memory", "bound", "method")}
    assert params != {k: v for k, v in RIVER_DEFAULTS[kind].items() if k not in ("bound", "method")}
    data = np.r_[E, E[::-1]]
    unbounded = (
        {"memory": None} if kind == "ddm" else previous
    )  # DDM's re-basing: test_ddm_memory_is_rivers_ddm_re_based
    assert alarms(kind, data, **unbounded) == raw_alarms(cls(**params), data)


class BernsteinHDDMA(binary.HDDMA):
    """River's HDDMA (its cut point) with Bernstein's test of the rise: the deviation of z - x, a weighted sum
    of values in [0, 1] with variance factor m = 1/n_x - 1/n and largest weight max(m, 1/n), at the variance
    p (1 - p) of the running rate p."""

    def _mean_incr(self, confidence: float) -> bool:
        n, nx = self._z.n, self._x_min.n
        if nx == n:
            return False
        m = (n - nx) / nx * (1.0 / n)
        p, log_term = self._z.get(), math.log(2.0 / confidence)
        eps = math.sqrt(2.0 * p * (1.0 - p) * m * log_term) + max(m, 1.0 / n) * log_term / 3.0
        return bool(self._z.get() - self._x_min.get() >= eps)


@pytest.mark.parametrize("chunk", [None, 333])
def test_hddm_a_at_its_defaults_is_rivers_cut_point_with_bernsteins_test(chunk: int | None) -> None:
    """HDDM_A (bound: bernstein) on rises and falls: River's HDDMA with the rise test replaced by Bernstein's,
    a rise on the series and one on 1 - x (a fall), as for every error-rate kind."""
    rng = np.random.default_rng(4)
    rates = np.r_[np.full(6000, 0.05), np.full(2000, 0.1), np.full(4000, 0.03), np.full(3000, 0.3)]
    data = (rng.random(len(rates)) < rates).astype(float)
    m = build("hddm_a", {"series": "x"})
    up = raw_alarms(BernsteinHDDMA(drift_confidence=m.drift_confidence), data)
    down = raw_alarms(BernsteinHDDMA(drift_confidence=m.drift_confidence), 1.0 - data)
    expected = sorted({**{i: "down" for i in down}, **{i: "up" for i in up}}.items())
    assert len(up) >= 2 and down
    got, step = [], chunk or len(data)
    for i in range(0, len(data), step):
        part = data[i : i + step]
        got += [
            (s.at, s.details["direction"])
            for s in m.update(Batch.of(index=range(i, i + len(part)), features={"x": part}))
        ]
    assert got == expected
    assert raw_alarms(binary.HDDMA(drift_confidence=m.drift_confidence), data) != up  # the bound matters here


class CutPoint(binary.HDDMA):
    """River's HDDMA as the cut point only (its rise test never fires)."""

    def _mean_incr(self, confidence: float) -> bool:
        return False


def bernstein_hddm_w_alarms(data: np.ndarray, confidence: float, lam: float) -> list[int]:
    """HDDM_W with Bernstein's bound, computed directly: River's HDDMA gives the cut point (n_x values, mean
    x); the EWMA of the k values after it, started at x, is x (1 - lam)^k + sum_j lam (1 - lam)^(k-1-j) v_j, its
    squared weights sum to V = sum_j (lam (1 - lam)^(k-1-j))^2 + (1 - (1 - lam)^k)^2 / n_x."""
    out: list[int] = []
    d, start = CutPoint(drift_confidence=confidence), 0
    log_term = math.log(2.0 / confidence)
    for i, v in enumerate(data.tolist()):
        d.update(v)
        n, nx, x, p = int(d._z.n), int(d._x_min.n), d._x_min.get(), d._z.get()
        k = n - nx
        if k == 0:
            continue
        after = data[start + nx : start + n]
        w = lam * (1 - lam) ** np.arange(k - 1, -1, -1)
        spent = 1 - (1 - lam) ** k
        ewma = x * (1 - spent) + float(w @ after)
        var_factor = float(w @ w) + spent**2 / nx
        limit = math.sqrt(2 * p * (1 - p) * var_factor * log_term) + max(lam, spent / nx) * log_term / 3
        if ewma - x >= limit:
            out.append(i)
            d, start = CutPoint(drift_confidence=confidence), i + 1
    return out


def test_hddm_w_at_its_defaults_is_an_ewma_after_hddm_a_s_cut_point_with_bernsteins_test() -> None:
    rng = np.random.default_rng(8)
    rates = np.r_[np.full(3000, 0.05), np.full(1500, 0.12), np.full(2000, 0.02), np.full(1500, 0.3)]
    data = (rng.random(len(rates)) < rates).astype(float)
    m = build("hddm_w", {"series": "x"})
    up = bernstein_hddm_w_alarms(data, m.drift_confidence, m.lambda_val)
    down = bernstein_hddm_w_alarms(1.0 - data, m.drift_confidence, m.lambda_val)
    expected = sorted({**{i: "down" for i in down}, **{i: "up" for i in up}}.items())
    assert len(up) >= 2 and down
    for chunk in (len(data), 333):
        got = []
        m = build("hddm_w", {"series": "x"})
        for i in range(0, len(data), chunk):
            part = data[i : i + chunk]
            batch = Batch.of(index=range(i, i + len(part)), features={"x": part})
            got += [(s.at, s.details["direction"]) for s in m.update(batch)]
        assert got == expected


def distance_cusum_alarms(data: np.ndarray, warm_start: int, arl: float, restarts: tuple[int, ...] = ()) -> list[int]:
    """EDDM's distance CUSUM from the error positions: the rate p0 over the values holding the first warm_start
    errors, then Page's CUSUM of each distance's log-likelihood ratio of p0 against min(2 p0, (1 + p0) / 2),
    threshold ln(arl * KL); after an alarm, or at a position in ``restarts`` (not reported), a new warm-up starts
    on the next value."""
    ones = np.flatnonzero(data == 1)
    out: list[int] = []
    start = 0
    while True:
        ones = ones[ones >= start]
        if len(ones) < warm_start:
            return out
        raw = warm_start / (ones[warm_start - 1] - start + 1)
        p0 = max(raw, 0.01)  # above 0.99 the side is idle (its rate cannot rise) until a restart
        p1 = min(2 * p0, (1 + p0) / 2)
        kl = p0 * math.log(p0 / p1) + (1 - p0) * math.log((1 - p0) / (1 - p1))
        s, alarm = 0.0, None
        for prev, at in zip(ones[warm_start - 1 : -1], ones[warm_start:], strict=True) if raw <= 0.99 else ():
            s = max(0.0, s + math.log(p1 / p0) + (at - prev - 1) * math.log((1 - p1) / (1 - p0)))
            if s > math.log(arl * kl):
                alarm = int(at)
                break
        forced = [r for r in restarts if r >= start and (alarm is None or r <= alarm)]
        if forced:
            start = forced[0] + 1
            continue
        if alarm is None:
            return out
        out.append(alarm)
        start = alarm + 1


@pytest.mark.parametrize("chunk", [None, 333])
def test_eddm_at_its_defaults_is_the_distance_cusum(chunk: int | None) -> None:
    """eddm (method: cusum) on rises and falls: the reference above on the series (a rise) and on 1 - x (a fall),
    the fall side restarted after each rise."""
    from driftwarden.detectors.eddm import CUSUM_ARL

    rng = np.random.default_rng(6)
    rates = np.r_[np.full(8000, 0.05), np.full(3000, 0.12), np.full(3000, 0.3), np.full(3000, 0.1)]
    data = (rng.random(len(rates)) < rates).astype(float)
    m = build("eddm", {"series": "x"})
    up = distance_cusum_alarms(data, m.warm_start, CUSUM_ARL)
    down = distance_cusum_alarms(1.0 - data, m.warm_start, CUSUM_ARL, restarts=tuple(up))  # a rise restarts it
    expected = sorted({**{i: "down" for i in down}, **{i: "up" for i in up}}.items())
    assert len(up) >= 2 and down
    got, step = [], chunk or len(data)
    for i in range(0, len(data), step):
        part = data[i : i + step]
        batch = Batch.of(index=range(i, i + len(part)), features={"x": part})
        got += [(s.at, s.details["direction"]) for s in m.update(batch)]
    assert got == expected


@pytest.mark.parametrize("method", ["river", "cusum"])
def test_eddm_resumes_from_a_json_snapshot_in_both_methods(method: str) -> None:
    """The conformance suite runs eddm at its default method; River's EDDM behind ``method: river`` resumes too."""
    rng = np.random.default_rng(9)
    data = (rng.random(6000) < np.r_[np.full(3000, 0.1), np.full(3000, 0.35)]).astype(float)
    params = {"series": "x", "warm_start": 30, "method": method}

    def run(m: Monitor, part: np.ndarray, start: int) -> list[tuple[int, str]]:
        batch = Batch.of(index=range(start, start + len(part)), features={"x": part})
        return [(s.at, s.details["direction"]) for s in m.update(batch)]

    whole = run(build("eddm", params), data, 0)
    first = build("eddm", params)
    head = run(first, data[:3500], 0)
    second = build("eddm", params)
    second.restore(orjson.loads(orjson.dumps(first.snapshot())))
    assert whole and head + run(second, data[3500:], 3500) == whole
    with pytest.raises(ValueError, match="starts afresh"):
        build("eddm", {**params, "method": "cusum" if method == "river" else "river"}).restore(first.snapshot())


def test_hddm_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match=r"bound: 'bernoulli' is not allowed; allowed: \['bernstein', 'hoeffding'\]"):
        build("hddm_a", {"bound": "bernoulli"})
    with pytest.raises(ValueError, match="drift_confidence: 0 is not allowed; it must be in"):
        build("hddm_w", {"drift_confidence": 0})
    with pytest.raises(ValueError, match="lambda_val: 1.5 is not allowed"):
        build("hddm_w", {"lambda_val": 1.5})
    with pytest.raises(ValueError, match=r"method: 'page' is not allowed; allowed: \['cusum', 'river'\]"):
        build("eddm", {"method": "page"})


def rebased_ddm_alarms(data: np.ndarray, memory: int, **params: object) -> list[tuple[int, str]]:
    """A reference of DDM's re-basing on River's DDM, value by value: pairs (rise, fall) of River's DDM; a second
    pair starts when the pair in charge has seen memory/2 values and takes over at memory; a change restarts all."""
    pairs = [(binary.DDM(**params), binary.DDM(**params))]
    age, out = 0, []
    for i, v in enumerate(data.tolist()):
        for up, down in pairs:
            up.update(v)
            down.update(1 - v)
        age += 1
        up, down = pairs[0]
        if up.drift_detected or down.drift_detected:
            out.append((i, "up" if up.drift_detected else "down"))
            pairs, age = [(binary.DDM(**params), binary.DDM(**params))], 0
            continue
        if age == memory:
            pairs, age = pairs[1:], memory - memory // 2
        if age == memory // 2 and len(pairs) == 1:
            pairs.append((binary.DDM(**params), binary.DDM(**params)))
    return out


@pytest.mark.parametrize("chunk", [1000, 333])
def test_ddm_memory_is_rivers_ddm_re_based(chunk: int) -> None:
    """DDM at its defaults (memory 4,000) is River's DDM re-based as the reference above, on a stream with rises,
    falls and stationary stretches longer than the memory."""
    rng = np.random.default_rng(11)
    rates = np.r_[np.full(9000, 0.05), np.full(3000, 0.12), np.full(6000, 0.04), np.full(4000, 0.3)]
    data = (rng.random(len(rates)) < rates).astype(float)
    m = build("ddm", {})
    got = []
    for i in range(0, len(data), chunk):
        idx = np.arange(i, min(i + chunk, len(data)))
        batch = Batch.of(index=idx, prediction=np.zeros(len(idx)), label=data[idx])
        got += [(s.at, s.details["direction"]) for s in m.update(batch)]
    expected = rebased_ddm_alarms(data, 4000, warm_start=m.warm_start)
    assert len(expected) >= 3 and {d for _, d in expected} == {"up", "down"}
    assert got == expected


def test_page_hinkley_unstandardised_is_rivers() -> None:
    expected = raw_alarms(drift.PageHinkley(), X)
    assert expected
    assert alarms("page_hinkley", X, **RIVER_PH) == expected
    assert alarms("page_hinkley", X, chunk=333, **RIVER_PH) == expected


def test_kswin_alarms_where_scipy_ks_2samp_rejects() -> None:
    """Our vectorised KS window test against scipy's ks_2samp(method="asymp"), window by window."""
    from scipy import stats

    data = X[1500:2600]
    window, recent, alpha = 120, 40, 1e-3
    expected, start = [], 0  # start: where the window restarts after a change
    for t in range(len(data)):
        if t - start + 1 < window:
            continue
        w = data[t - window + 1 : t + 1]
        res = stats.ks_2samp(w[: window - recent], w[window - recent :], method="asymp")
        if res.pvalue <= alpha and res.statistic > 0.1:
            expected.append(t)
            start = t - recent + 1
    assert expected
    got = alarms("kswin", data, window_size=window, stat_size=recent, alpha=alpha)
    assert got == expected
    assert alarms("kswin", data, chunk=97, window_size=window, stat_size=recent, alpha=alpha) == expected


def test_kswin_refuses_a_binary_series() -> None:
    with pytest.raises(ValueError, match="series: 'error' is not allowed for kswin: it is a 0/1 series"):
        build("kswin", {"series": "error"})


GOLDEN = {
    ("adwin", "x"): [2079, 3039],
    ("page_hinkley", "x"): [2117, 3061],  # River's defaults: [2060, 3012] (test_page_hinkley_unstandardised_is_rivers)
    ("ddm", "e"): [2115],  # River's defaults: [86, 2093] (warm start 30; issue 18)
    ("hddm_a", "e"): [2044],  # River's (bound: hoeffding): [2097]
    ("hddm_w", "e"): [2038],  # bound hoeffding (the previous default): [2213]; River's defaults: [2344]
    ("adwin", "e"): [2079],
    # eddm: method river (the previous default): [2454]; River's defaults: [281, 640, 946, 1336, 1584, 1852, 2038,
    # 2185, 2292, 2399]
    ("eddm", "e"): [2406],
    ("cusum", "x"): [
        2055,
        2073,
        2111,
        2138,
        2180,
        2214,
        2253,
        2279,
        2319,
        2350,
        2377,
        2413,
        2434,
        2454,
        2472,
        2488,
        2517,
        2547,
        2585,
        2615,
        2658,
        2697,
        2737,
        2756,
        2770,
        2788,
        2815,
        2846,
        2891,
        2920,
        2998,
        3643,
    ],
    ("ewma", "x"): [
        2059,
        2094,
        2123,
        2214,
        2375,
        2415,
        2437,
        2456,
        2472,
        2488,
        2517,
        2548,
        2610,
        2732,
        2749,
        2764,
        2782,
        2806,
        2920,
    ],
}


@pytest.mark.parametrize(("kind", "stream"), sorted(GOLDEN), ids=[f"{k}-{s}" for k, s in sorted(GOLDEN)])
def test_golden_alarm_indices(kind: str, stream: str) -> None:
    assert alarms(kind, X if stream == "x" else E) == GOLDEN[(kind, stream)]


# ----------------------------------------------------------------------------- control charts


def test_control_charts_with_a_given_reference_skip_warmup() -> None:
    m = Cusum(series="x", mean=10.0, sd=2.0, h=3.0, direction="up")
    b = Batch.of(index=range(6), features={"x": [10.0, 14.0, 14.0, 14.0, 2.0, 2.0]})
    assert [(s.at, s.drift, s.details["direction"]) for s in m.update(b)] == [
        (3, True, "up"),
        (4, False, "down"),
        (5, False, "down"),
    ]
    e = Ewma(series="x", mean=0.0, sd=1.0, lam=1.0, L=3.0, direction="down")
    signals = e.update(Batch.of(index=range(3), features={"x": [5.0, -5.0, float("nan")]}))
    assert [(s.at, s.drift) for s in signals] == [(0, False), (1, True)]


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (Cusum, {"h": 0}, "h"),
        (Cusum, {"k": -1}, "k"),
        (Cusum, {"warmup": 1}, "warmup"),
        (Cusum, {"sd": 0.0}, "sd"),
        (Cusum, {"direction": "sideways"}, "direction"),
        (Ewma, {"lam": 0}, "lam"),
        (Ewma, {"L": -2}, "L"),
    ],
)
def test_control_chart_errors_name_field_and_value(cls: type, kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError) as err:
        cls(series="x", **kwargs)
    text = str(err.value)
    assert text.startswith(f"{field}: {next(iter(kwargs.values()))!r} is not allowed")


# ------------------------------------------------------------------- performance vs sklearn


def _labeled(n: int = 1200, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(float)
    score = np.clip(np.where(y > 0, rng.beta(4, 2, n), rng.beta(2, 4, n)), 0.0, 1.0)
    score[:5] = [0.0, 1.0, 0.5, 0.5, 0.5]  # ties and the clipping edges
    return y, score, (score >= 0.5).astype(float)


SKLEARN = {
    "accuracy": lambda y, s, p: metrics.accuracy_score(y, p),
    "precision": lambda y, s, p: metrics.precision_score(y, p),
    "recall": lambda y, s, p: metrics.recall_score(y, p),
    "f1": lambda y, s, p: metrics.f1_score(y, p),
    "roc_auc": lambda y, s, p: metrics.roc_auc_score(y, s),
    "log_loss": lambda y, s, p: metrics.log_loss(y, s),
    "mae": lambda y, s, p: metrics.mean_absolute_error(y, s),
    "rmse": lambda y, s, p: math.sqrt(metrics.mean_squared_error(y, s)),
    "r2": lambda y, s, p: metrics.r2_score(y, s),
}


def test_every_metric_has_a_sklearn_reference() -> None:
    assert set(SKLEARN) == set(METRICS)


@pytest.mark.parametrize("metric", sorted(SKLEARN))
def test_performance_windows_match_sklearn(metric: str) -> None:
    y, score, pred = _labeled()
    regression = metric in ("mae", "rmse", "r2")
    m = Performance(metric=metric, window_events=400)
    batch = Batch.of(index=range(len(y)), prediction=score if regression else pred, score=score, label=y)
    signals = m.update(batch)
    assert [s.window_start for s in signals] == [0, 400, 800]
    for s in signals:
        sl = slice(s.window_start, s.window_end)
        expected = SKLEARN[metric](y[sl], score[sl], pred[sl])
        assert s.value == pytest.approx(expected, abs=1e-12), metric


def test_roc_auc_of_a_single_class_window_is_undefined() -> None:
    m = Performance(metric="roc_auc", window_events=3)
    [s] = m.update(Batch.of(index=range(3), score=[0.1, 0.2, 0.3], prediction=[0, 0, 0], label=[1, 1, 1]))
    assert s.value is None and s.drift is False


def test_mann_whitney_auc_matches_sklearn() -> None:
    _, score, pred = _labeled()
    y = pred > 0.5
    assert mann_whitney_auc(score[y], score[~y]) == pytest.approx(metrics.roc_auc_score(y, score))


# ----------------------------------------------------------------------------- CBPE


def test_estimated_accuracy_and_f1_track_realized_on_calibrated_scores() -> None:
    rng = np.random.default_rng(9)
    n = 8000
    score = np.concatenate([rng.beta(8, 2, n // 2), rng.beta(3, 3, n // 2)])  # confidence falls mid-way
    y = (rng.random(n) < score).astype(float)  # calibrated by construction
    pred = (score >= 0.5).astype(float)
    for metric in ("accuracy", "f1"):
        m = EstimatedPerformance(metric=metric, window_events=1000)
        signals = m.update(Batch.of(index=range(n), score=score, prediction=pred))
        for s in signals:
            sl = slice(s.window_start, s.window_end)
            realized = (
                metrics.accuracy_score(y[sl], pred[sl]) if metric == "accuracy" else metrics.f1_score(y[sl], pred[sl])
            )
            assert s.value == pytest.approx(realized, abs=0.04), (metric, s.window_start)
        if metric == "accuracy":
            assert [s.drift for s in signals] == [False] * 4 + [True] * 4


def test_estimated_performance_recalibrates_and_hands_over_to_labels() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    true_p = rng.beta(3, 3, n)
    y = (rng.random(n) < true_p).astype(float)
    over = true_p**0.3  # over-confident scores for the positive class
    ref = {"score": over[:2000].tolist(), "label": y[:2000].tolist()}
    pred = (over >= 0.5).astype(float)
    raw = EstimatedPerformance(window_events=2000).update(
        Batch.of(index=range(2000, n), score=over[2000:], prediction=pred[2000:])
    )
    fixed = EstimatedPerformance(window_events=2000, reference=ref).update(
        Batch.of(index=range(2000, n), score=over[2000:], prediction=pred[2000:])
    )
    realized = metrics.accuracy_score(y[2000:], pred[2000:])
    assert abs(fixed[0].value - realized) < 0.03 < abs(raw[0].value - realized)
    labeled = EstimatedPerformance(window_events=2000).update(
        Batch.of(index=range(2000, n), score=over[2000:], prediction=pred[2000:], label=y[2000:])
    )
    assert labeled[0].details["source"] == "realized"
    assert labeled[0].value == pytest.approx(realized)
    assert labeled[0].details["estimated"] == pytest.approx(raw[0].value)


# ----------------------------------------------------------------------------- data quality


def test_data_quality_volume_by_time_window() -> None:
    m = DataQuality(window_seconds=60.0)
    ts = np.concatenate([np.arange(0, 120, 1.0), np.arange(120, 180, 10.0), [180.0]])
    x = np.ones(len(ts))
    [first, second] = m.update(Batch.of(index=range(len(ts)), ts=ts, features={"x": x}))
    assert first.drift is False and first.details["volume_ratio"] == 1.0
    assert second.drift is True and second.details["issues"] == ["volume"]
    assert second.details["volume_ratio"] == pytest.approx(0.1)


def test_data_quality_type_violations_and_given_reference() -> None:
    m = DataQuality(window_events=4, reference={"x": [0.0, 1.0, 2.0], "c": ["a", "b", "a"]})
    x = np.array([1.0, "oops", 2.0, 1.5], dtype=object)
    c = np.array(["a", 3, "b", "a"], dtype=object)
    [s] = m.update(Batch(index=np.arange(4), ts=np.arange(4.0), features={"x": x, "c": c}))
    assert s.details["issues"] == ["type_violations:c", "type_violations:x"]
    assert s.details["features"]["x"]["type_violations"] == 0.25


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"missing_tolerance": 2}, "missing_tolerance"),
        ({"volume_factor": 0.5}, "volume_factor"),
        ({"features": "some"}, "features"),
    ],
)
def test_data_quality_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        DataQuality(**kwargs)


# ----------------------------------------------------------------------------- the rest


def test_prediction_drift_series_errors_and_reference() -> None:
    with pytest.raises(ValueError, match="^series: \\['label'\\] is not allowed"):
        PredictionDrift(series=["label"])
    rng = np.random.default_rng(0)
    m = PredictionDrift(series=["score"], window_events=300, reference={"score": rng.random(300).tolist()})
    [s] = m.update(Batch.of(index=range(300), score=rng.random(300) ** 3))
    assert s.drift and list(s.details["features"]) == ["score"]


def test_feature_drift_defaults_to_benjamini_hochberg() -> None:
    assert FeatureDrift().correction == "bh"


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (DomainClassifier, {"alpha": 1.5}, "alpha"),
        (DomainClassifier, {"calibration_rounds": 1}, "calibration_rounds"),
        (AnomalyRate, {"quantile": 1.0}, "quantile"),
        (AnomalyRate, {"height": 0}, "height"),
        (EstimatedPerformance, {"metric": "auc"}, "metric"),
        (EstimatedPerformance, {"handover": 0}, "handover"),
    ],
)
def test_new_kinds_name_the_bad_field(cls: type, kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        cls(**kwargs)


def test_domain_classifier_stays_quiet_on_reference_like_data() -> None:
    rng = np.random.default_rng(12)
    X = rng.normal(size=(2400, 5))
    m = DomainClassifier(window_events=400, calibration_rounds=4, seed=1)
    signals = m.update(Batch.of(index=range(2400), features={f"f{i}": X[:, i] for i in range(5)}))
    assert len(signals) == 5 and not any(s.drift for s in signals)
    assert all(0.4 < s.value < s.threshold for s in signals)
