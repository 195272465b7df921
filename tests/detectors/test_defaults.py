"""The calibrated defaults (issue 18), on small seeded streams: quiet on stationary input, and a
1-sd shift or a doubled error rate found within 1,000 events. bench/calibration.py measures the
rates on 10^5-event twins; here one seeded stream per case keeps the property from regressing.
River-backed kinds are checked against River's detector run raw at the same parameters."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from driftwarden.detectors.base import Batch
from driftwarden.detectors.registry import build
from river import drift

N = 10_000
CHANGE = 6_000
"""Past every warm-up (5,000 on 0/1 series for cusum/ewma)."""
HORIZON = 1_000

FEATURE_KINDS = ("adwin", "page_hinkley", "kswin", "cusum", "ewma")
ERROR_KINDS = ("adwin", "page_hinkley", "cusum", "ewma", "ddm", "eddm", "hddm_a", "hddm_w", "concept_drift")
FINDS_A_DOUBLED_RATE = {
    0.05: ERROR_KINDS,
    0.30: ERROR_KINDS,
}
"""Kinds that find the doubling within 1,000 events in every one of bench/calibration.py's 20 seeds
(every kind since session 6: docs/monitors.md)."""

RIVER = {"adwin": drift.ADWIN}
"""River's detector run raw at our parameters. Not HDDM_A and HDDM_W: their default bound is Bernstein's
(test_references.test_hddm_a_at_its_defaults_is_rivers_cut_point_with_bernsteins_test and the HDDM_W one); not
EDDM: its default is the distance CUSUM (test_references.test_eddm_at_its_defaults_is_the_distance_cusum).
Not DDM: at its defaults it is River's DDM re-based every 4,000 values, checked against a reference of that on
River's DDM (test_references.test_ddm_memory_is_rivers_ddm_re_based)."""
RIVER_ARGS = {
    "adwin": ("delta", "clock", "grace_period"),
}


def feature(seed: int, shift: float) -> np.ndarray:
    rng = np.random.default_rng([seed, 1])
    return rng.normal(0, 1, N) + shift * (np.arange(N) >= CHANGE)


def errors(seed: int, rate: float, factor: float) -> np.ndarray:
    rng = np.random.default_rng([seed, int(rate * 100)])
    return (rng.random(N) < np.where(np.arange(N) >= CHANGE, rate * factor, rate)).astype(float)


def drift_alarms(kind: str, x: np.ndarray, binary_series: bool) -> list[int]:
    m = build(kind, {"series": "error" if binary_series else "x"})
    out = []
    for i in range(0, N, 1000):
        idx = np.arange(i, i + 1000)
        if binary_series:
            b = Batch.of(index=idx, prediction=np.zeros(1000), label=x[idx])
        else:
            b = Batch.of(index=idx, features={"x": x[idx]})
        out += [s.at for s in m.update(b) if s.drift]
    return out


def river_alarms(kind: str, x: np.ndarray) -> list[int]:
    ours = build(kind, {"series": "error"})
    d = RIVER[kind](**{a: getattr(ours, a) for a in RIVER_ARGS[kind]})
    out = []
    for i, v in enumerate(x.tolist()):
        d.update(v)
        if d.drift_detected:
            out.append(i)
    return out


@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_quiet_on_a_stationary_feature_and_finds_a_1sd_shift(kind: str) -> None:
    assert drift_alarms(kind, feature(0, 0.0), False) == []
    found = drift_alarms(kind, feature(0, 1.0), False)
    assert found and CHANGE <= found[0] < CHANGE + HORIZON, found[:3]


@pytest.mark.parametrize("rate", [0.05, 0.30])
@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_quiet_on_stationary_errors(kind: str, rate: float) -> None:
    x = errors(0, rate, 1.0)
    assert drift_alarms(kind, x, True) == []
    if kind in RIVER:  # River's detector at our parameters is quiet there too (its rises are our drift)
        assert river_alarms(kind, x) == []


SEEDS_AT_5 = (0, 1, 2)
"""A doubled 5 % rate is near the information limit (docs/monitors.md): a few seeds, not one."""


@pytest.mark.parametrize(
    ("kind", "rate", "seed"),
    [(k, r, s) for r, ks in FINDS_A_DOUBLED_RATE.items() for k in ks for s in (SEEDS_AT_5 if r == 0.05 else (0,))],
)
def test_finds_a_doubled_error_rate_within_1000_events(kind: str, rate: float, seed: int) -> None:
    x = errors(seed, rate, 2.0)
    found = drift_alarms(kind, x, True)
    assert found and CHANGE <= found[0] < CHANGE + HORIZON, found[:3]
    if kind in RIVER:
        assert found == river_alarms(kind, x)


def test_adwin_and_the_charts_take_their_0_1_defaults_on_error_only() -> None:
    """ADWIN's delta and the charts' Bernoulli tuning apply to 0/1 series; features keep River's / Gaussian ones."""
    assert build("adwin", {"series": "error"}).delta == 0.05
    assert build("adwin", {"series": "x"}).delta == 0.002
    assert build("adwin", {"series": "error", "delta": 0.002}).delta == 0.002


@pytest.mark.parametrize("rate", [0.02, 0.05, 0.10, 0.30])
def test_cusum_on_errors_is_bernoullis_likelihood_ratio_chart(rate: float) -> None:
    """Its sums move by each value's log-likelihood ratio of the warm-up rate against the doubled rate: an error
    adds ln(2p / p) + ln((1 - p) / (1 - 2p)) nats, a correct value takes ln((1 - p) / (1 - 2p)); the threshold is
    the same evidence, ln(200,000 x KL) nats, at every rate."""
    m = build("cusum", {"series": "error"})
    x = (np.arange(5000) < round(rate * 5000)).astype(float)  # a warm-up at exactly that rate
    m.update(Batch.of(index=np.arange(5000), prediction=np.zeros(5000), label=x))
    state = m.snapshot()["chart"]
    p, q, sd = rate, 2 * rate, (rate * (1 - rate)) ** 0.5
    up = np.log(q * (1 - p) / (p * (1 - q)))
    per_error = up * sd * ((1 - p) / sd - state["k"])  # the chart's step for v = 1, in nats
    per_correct = up * sd * (-p / sd - state["k"])
    assert per_error == pytest.approx(np.log(q / p))
    assert per_correct == pytest.approx(np.log((1 - q) / (1 - p)))
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    assert up * sd * state["h"] == pytest.approx(np.log(200_000 * kl))


def signals(kind: str, x: np.ndarray, resume_at: int | None = None) -> list[tuple[int, str]]:
    """Every signal (drift or not) of ``kind`` at its defaults on the 0/1 feature ``x`` (direction both), in
    batches of 1,000; with ``resume_at``, the monitor is snapshot there through JSON and a new one resumes."""
    m, out = build(kind, {"series": "x"}), []
    for i in range(0, len(x), 1000):
        if resume_at is not None and i == resume_at:
            state = orjson.loads(orjson.dumps(m.snapshot()))
            m = build(kind, {"series": "x"})
            m.restore(state)
        idx = np.arange(i, i + 1000)
        out += [(s.at, s.details["direction"]) for s in m.update(Batch.of(index=idx, features={"x": x[idx]}))]
    return out


@pytest.mark.parametrize("rate", [0.0, 0.002, 0.005, 0.995, 1.0])
@pytest.mark.parametrize("kind", ["cusum", "ewma"])
def test_a_0_1_feature_whose_rate_is_past_the_floor_raises_no_signal(kind: str, rate: float) -> None:
    """Below RATE_FLOOR (1 %) the reference rate is held at the floor; the side testing a change further past
    it stays idle (cusum raised a 'down' signal every ~1,200 values there: 58 per 100,000 at 0.2 %)."""
    x = (np.random.default_rng([3, int(rate * 1000)]).random(2 * N) < rate).astype(float)
    assert signals(kind, x) == []
    assert signals(kind, x, resume_at=5000) == []


@pytest.mark.parametrize("flip", [False, True])
def test_cusum_on_a_rare_0_1_feature_still_finds_a_rise(flip: bool) -> None:
    """The other side stays live: a 0.2 % rate that becomes 3 % (or, flipped, a 99.8 % rate that becomes 97 %)."""
    rng = np.random.default_rng(5)
    x = (rng.random(N) < np.where(np.arange(N) >= CHANGE, 0.03, 0.002)).astype(float)
    found = signals("cusum", 1.0 - x if flip else x)
    assert found and CHANGE <= found[0][0] < CHANGE + HORIZON, found[:3]
    assert found[0][1] == ("down" if flip else "up")
