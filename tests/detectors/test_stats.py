"""The numpy/scipy fast path (driftwarden.detectors.stats) against Evidently's own numbers.

Evidently is slow (~35 ms per column), so each scenario is one Evidently Report over many
columns, computed once per module and shared by the parametrized cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from driftwarden.detectors.evidently_adapter import ColumnDrift, evidently_column_drift, render_drift_report
from driftwarden.detectors.stats import (
    METHODS,
    Reference,
    TestResult,
    _sturges_edges,
    adjust,
    auto_method,
    bh_adjusted,
    default_threshold,
    js_distance,
    two_sample,
)
from scipy import stats as sps

TOLERANCE = 1e-6
NUMERIC_METHODS = ("ks", "psi", "wasserstein", "jensenshannon", "auto")
CATEGORICAL_METHODS = ("psi", "jensenshannon", "chisquare", "z", "auto")
# (name, reference rows, current rows): the auto rule switches above 1000 reference rows
SCENARIOS = (("small", 150, 120), ("medium", 1000, 700), ("large", 2500, 1000))

Pair = tuple[np.ndarray, np.ndarray]


def _objects(values: Sequence[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _with_missing(rng: np.random.Generator, x: np.ndarray, share: float) -> np.ndarray:
    x = x.copy()
    x[rng.random(x.size) < share] = np.nan
    x[rng.integers(0, x.size, 2)] = np.inf
    x[rng.integers(0, x.size, 1)] = -np.inf
    return x


def _numeric(rng: np.random.Generator, n: int, m: int) -> dict[str, Pair]:
    def ints(k: int, size: int, p: np.ndarray | None = None) -> np.ndarray:
        return rng.choice(k, size=size, p=p).astype(float)

    skew = np.linspace(1, 3, 12)
    return {
        "same": (rng.normal(size=n), rng.normal(size=m)),
        "shifted": (rng.normal(size=n), rng.normal(0.4, 1.3, size=m)),
        "missing": (
            _with_missing(rng, rng.normal(size=n), 0.1),
            _with_missing(rng, rng.normal(0.2, size=m), 0.2),
        ),
        "heavy": (rng.lognormal(size=n), rng.lognormal(0.1, size=m)),
        "rounded": (np.round(rng.normal(size=n), 1), np.round(rng.normal(0.1, size=m), 1)),
        "ints": (ints(41, n), ints(41, m) + 3),  # many values on the Sturges bin edges
        "low_card": (ints(12, n), ints(13, m, np.r_[skew, 2.0] / (skew.sum() + 2))),
        "few": (ints(3, n), ints(3, m, np.array([0.2, 0.3, 0.5]))),
        "binary": (ints(2, n), ints(2, m, np.array([0.4, 0.6]))),
        "constant": (np.full(n, 3.0), np.full(m, 3.0)),
        "const_ref": (np.full(n, 3.0), rng.normal(3.0, 0.05, size=m)),
    }


def _categorical(rng: np.random.Generator, n: int, m: int) -> dict[str, Pair]:
    letters = np.array(list("abcdefg"), dtype=object)

    def draw(k: int, size: int, p: list[float] | None = None) -> np.ndarray:
        return letters[rng.choice(k, size=size, p=p)]

    missing_ref, missing_cur = draw(4, n), draw(4, m, [0.1, 0.2, 0.3, 0.4])
    missing_ref[rng.random(n) < 0.1] = None
    missing_cur[rng.random(m) < 0.1] = None
    missing_cur[rng.integers(0, m, 3)] = np.nan  # the other spelling of missing
    return {
        "cat_same": (draw(5, n), draw(5, m)),
        "cat_shift": (draw(5, n), draw(5, m, [0.4, 0.3, 0.1, 0.1, 0.1])),
        "cat_unseen": (draw(4, n), draw(7, m)),
        "cat_lost": (draw(6, n), draw(3, m)),
        "cat_missing": (missing_ref, missing_cur),
        "cat_binary": (
            _objects(["yes" if v else "no" for v in rng.random(n) < 0.3]),
            _objects(["yes" if v else "no" for v in rng.random(m) < 0.4]),
        ),
        "cat_const": (_objects(["a"] * n), _objects(["a"] * m)),
    }


@cache
def _scenario(name: str) -> tuple[dict[str, Pair], dict[str, Pair]]:
    n, m = next((n, m) for s, n, m in SCENARIOS if s == name)
    rng = np.random.default_rng(sum(map(ord, name)))  # a fixed seed per scenario
    return _numeric(rng, n, m), _categorical(rng, n, m)


def _cases() -> list[tuple[str, str, str]]:
    out = []
    for scenario, _, _ in SCENARIOS:
        numeric, categorical = _scenario(scenario)
        out += [(scenario, col, m) for col in numeric for m in NUMERIC_METHODS]
        out += [(scenario, col, m) for col in categorical for m in CATEGORICAL_METHODS]
    return out


@cache
def _evidently(scenario: str) -> dict[str, ColumnDrift]:
    """One Evidently Report over every (column, method) of a scenario; columns are `col|method`."""
    numeric, categorical = _scenario(scenario)
    ref: dict[str, np.ndarray] = {}
    cur: dict[str, np.ndarray] = {}
    methods: dict[str, str] = {}
    cat_columns = []
    for pairs, method_names, is_cat in (
        (numeric, NUMERIC_METHODS, False),
        (categorical, CATEGORICAL_METHODS, True),
    ):
        for col, (r, c) in pairs.items():
            for method in method_names:
                key = f"{col}|{method}"
                ref[key], cur[key], methods[key] = r, c, method
                if is_cat:
                    cat_columns.append(key)
    return evidently_column_drift(pd.DataFrame(ref), pd.DataFrame(cur), methods, categorical=cat_columns)


def _distinct(values: np.ndarray) -> list[object]:
    return [v for v in values.tolist() if v is not None and v == v and v not in (np.inf, -np.inf)]


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return bool(np.isnan(a) and np.isnan(b)) or a == b
    return abs(a - b) <= TOLERANCE


@pytest.mark.parametrize(("scenario", "column", "method"), _cases())
def test_agrees_with_evidently(scenario: str, column: str, method: str) -> None:
    numeric, categorical = _scenario(scenario)
    is_cat = column in categorical
    ref, cur = (categorical if is_cat else numeric)[column]
    theirs = _evidently(scenario)[f"{column}|{method}"]

    ours = two_sample(method, Reference(ref, categorical=is_cat), cur)

    assert ours.method == theirs.method
    if method == "auto":
        assert auto_method(ref, cur, categorical=is_cat) == theirs.method
        if set(_distinct(cur)) <= set(_distinct(ref)):  # no new values: the reference decides
            assert auto_method(ref, categorical=is_cat) == theirs.method
    assert _close(ours.p_value, theirs.p_value), (ours, theirs)
    if theirs.statistic is not None:  # Evidently reports no statistic for p-value tests
        assert _close(ours.statistic, theirs.statistic), (ours, theirs)
    assert ours.threshold == theirs.threshold == default_threshold(ours.method)
    assert ours.drift == theirs.drift


def test_scenarios_cover_every_method_and_auto_choice() -> None:
    seen = {d.method for s, _, _ in SCENARIOS for d in _evidently(s).values()}
    assert seen == set(METHODS)
    auto = {
        (s, k.split("|")[0]): d.method for s, _, _ in SCENARIOS for k, d in _evidently(s).items() if k.endswith("|auto")
    }
    assert auto[("small", "same")] == "ks"
    assert auto[("medium", "few")] == "chisquare"
    assert auto[("medium", "binary")] == "z"
    assert auto[("large", "same")] == "wasserstein"
    assert auto[("large", "few")] == "jensenshannon"
    assert auto[("small", "cat_shift")] == "chisquare"
    assert auto[("small", "cat_binary")] == "z"
    assert auto[("large", "cat_binary")] == "jensenshannon"


def test_evidently_drops_missing_the_same_way() -> None:
    # the unseen current categories make Evidently's chi-square statistic inf, p-value 0
    ev = _evidently("small")
    assert ev["cat_unseen|chisquare"].p_value == 0.0
    assert ev["cat_missing|chisquare"].p_value is not None and ev["cat_missing|chisquare"].p_value > 0


def test_threshold_boundaries_match_evidently() -> None:
    """KS drifts when p <= threshold (the others' p-value tests need p < threshold)."""
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(size=300), rng.normal(0.1, size=300)
    p = two_sample("ks", ref, cur).p_value
    assert p is not None
    theirs = evidently_column_drift(
        pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), {"x": "ks"}, thresholds={"x": p}
    )["x"]
    ours = two_sample("ks", ref, cur, threshold=p)
    assert theirs.threshold == ours.threshold == p
    assert theirs.drift is ours.drift is True


@pytest.mark.parametrize("method", ["psi", "wasserstein", "jensenshannon", "chisquare", "z"])
def test_comparison_at_the_threshold(method: str) -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.integers(0, 4, 400).astype(float), rng.integers(0, 4, 300).astype(float)
    r = two_sample(method, ref, cur)
    at = two_sample(method, ref, cur, threshold=r.score)
    # distances drift at statistic >= threshold; chi-square and z need p < threshold
    assert at.drift is (method not in ("chisquare", "z"))


@pytest.mark.parametrize("n", [2, 3, 17, 100, 1001, 2500, 12345])
def test_sturges_edges_are_numpys(n: int) -> None:
    rng = np.random.default_rng(n)
    x = np.round(rng.normal(size=n) * 7, 2)
    ours = _sturges_edges(x.min(), x.max(), x.size)
    np.testing.assert_array_equal(ours, np.histogram_bin_edges(x, bins="sturges"))
    const = np.full(n, 1.5)
    np.testing.assert_array_equal(_sturges_edges(1.5, 1.5, n), np.histogram_bin_edges(const, bins="sturges"))


def test_statistics_are_scipys() -> None:
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=700), rng.normal(0.2, size=500)
    ks = two_sample("ks", ref, cur)
    expected = sps.ks_2samp(ref, cur)
    assert ks.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert ks.p_value == pytest.approx(expected.pvalue, abs=1e-12)
    ws = two_sample("wasserstein", ref, cur)
    assert ws.statistic == pytest.approx(sps.wasserstein_distance(ref, cur) / np.std(ref), abs=1e-12)

    cats = _objects(list("aabbbc") * 30)
    now = _objects(list("abbccd") * 20)
    chi = two_sample("chisquare", cats, now)
    f_exp = np.array([60, 90, 30, 0]) * (now.size / cats.size)
    with np.errstate(divide="ignore"):
        expected_chi = sps.chisquare([20, 40, 40, 20], f_exp)
    assert chi.statistic == expected_chi.statistic == np.inf and chi.p_value == 0.0
    seen = two_sample("chisquare", cats, _objects(list("abbccc") * 20))
    expected_chi = sps.chisquare([20, 40, 60], np.array([60, 90, 30]) * (120 / 180))
    assert seen.statistic == pytest.approx(expected_chi.statistic, abs=1e-12)
    assert seen.p_value == pytest.approx(expected_chi.pvalue, abs=1e-12)


def test_single_category_in_both_samples() -> None:
    # Evidently: z-test p-value 1, chi-square with 0 degrees of freedom NaN (never drift)
    a = _objects(["x"] * 50)
    assert two_sample("z", a, a) == TestResult("z", 0.0, 1.0, 0.05, False)
    chi = two_sample("chisquare", a, a)
    assert chi.p_value is not None and np.isnan(chi.p_value) and chi.drift is False


def test_reference_is_prepared_once_and_inputs_are_not_mutated() -> None:
    rng = np.random.default_rng(8)
    ref_values = _with_missing(rng, rng.normal(size=500), 0.1)
    cur = _with_missing(rng, rng.normal(size=400), 0.1)
    ref_copy, cur_copy = ref_values.copy(), cur.copy()
    ref = Reference(ref_values, categorical=False)
    for method in ("ks", "psi", "wasserstein", "jensenshannon", "auto"):
        assert two_sample(method, ref, cur) == two_sample(method, ref_values, cur)
    np.testing.assert_array_equal(ref_values, ref_copy)
    np.testing.assert_array_equal(cur, cur_copy)
    assert ref.size == int(np.isfinite(ref_values).sum())


BAD_CALLS: list[tuple[Callable[[], object], str]] = [
    (lambda: two_sample("kl", np.ones(3), np.ones(3)), "method: 'kl'"),
    (lambda: two_sample("ks", _objects(["a"]), _objects(["a"])), "method: 'ks' needs numeric"),
    (lambda: two_sample("wasserstein", _objects(["a"]), _objects(["b"])), "method: 'wasserstein'"),
    (lambda: two_sample("ks", np.ones(3), np.ones(3), threshold=-1), "threshold: -1"),
    (lambda: two_sample("ks", np.ones(3), np.ones(3), threshold="x"), "threshold: 'x'"),  # type: ignore[arg-type]
    (lambda: two_sample("ks", np.ones(3), np.array([np.nan, np.inf])), "current: no finite value"),
    (lambda: two_sample("psi", _objects([None]), _objects(["a"])), "values: no value left"),
    (
        lambda: two_sample("ks", Reference(np.ones(3)), np.ones(3), categorical=True),
        "categorical: True",
    ),
    (
        lambda: Reference(_objects(["a", "b"]), categorical=False),
        "values: dtype object is not numeric",
    ),
    (lambda: Reference(np.ones((2, 2))), "values: shape (2, 2)"),
    (lambda: default_threshold("auto"), "method: 'auto'"),
    (lambda: auto_method(np.ones(3), np.ones(3), categorical="yes"), "categorical: 'yes'"),  # type: ignore[arg-type]
    (lambda: adjust(np.array([0.1]), 0.05, "holm"), "correction: 'holm'"),
    (lambda: adjust(np.array([0.1]), 1.5, "bh"), "alpha: 1.5"),
    (lambda: adjust(np.array([1.1]), 0.05, "bh"), "p_values: 1.1"),
    (lambda: adjust(np.ones((2, 2)), 0.05, "bh"), "p_values: shape (2, 2)"),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS, ids=[m for _, m in BAD_CALLS])
def test_bad_arguments_name_the_argument(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_adjust_hand_checked() -> None:
    # m = 6, alpha = 0.05: BH critical values k * alpha / m = .0083 .0167 .025 .0333 .0417 .05
    p = np.array([0.030, 0.001, 0.040, 0.012, 0.300, 0.0333])
    # sorted: .001 .012 .030 .0333 .040 .300 -> largest k with p_(k) <= k*alpha/m is k = 5
    assert adjust(p, 0.05, "bh").tolist() == [True, True, True, True, False, True]
    # Bonferroni: p <= alpha / 6 = .00833 -> only .001
    assert adjust(p, 0.05, "bonferroni").tolist() == [False, True, False, False, False, False]
    assert adjust(p, 0.05, "none").tolist() == [True, True, True, True, False, True]
    # a NaN is never rejected but still counts in m
    with_nan = np.r_[p, np.nan]
    assert adjust(with_nan, 0.05, "bh").tolist() == [False, True, False, True, False, False, False]
    assert adjust(np.array([]), 0.05, "bh").tolist() == []


@pytest.mark.parametrize("seed", range(6))
def test_bh_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 60))
    p = np.concatenate([rng.uniform(size=m), rng.uniform(0, 0.01, size=m // 3)])
    p[rng.integers(0, p.size, 2)] = p[0]  # ties
    for alpha in (0.01, 0.05, 0.2):
        expected = sps.false_discovery_control(p, method="bh") <= alpha
        np.testing.assert_array_equal(adjust(p, alpha, "bh"), expected)
        np.testing.assert_array_equal(adjust(p, alpha, "bonferroni"), p <= alpha / p.size)


def test_numpy_versions_give_scipys_floats_bit_for_bit() -> None:
    """Benjamini-Hochberg and Jensen-Shannon are computed without importing scipy.stats and
    scipy.spatial (memory); they must give the very same floats, or replay output would change."""
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(7)
    for _ in range(3000):
        m = int(rng.integers(1, 40))
        p = rng.uniform(size=m) ** rng.uniform(0.3, 5)
        p[rng.integers(0, m, 2)] = p[0]  # ties
        assert np.array_equal(bh_adjusted(p), sps.false_discovery_control(p, method="bh"))
        k = int(rng.integers(2, 30))
        r, c = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k) * rng.uniform(0.1, 3))
        r[rng.integers(0, k)] = 0.0  # an empty bin on one side
        assert js_distance(r, c) == float(jensenshannon(r, c))


def test_render_drift_report_writes_html(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"tenure_months": rng.normal(size=200), "plan_tier": _objects(list("ab") * 100)})
    cur = pd.DataFrame({"tenure_months": rng.normal(1.0, size=150), "plan_tier": _objects(list("abc") * 50)})
    out = render_drift_report(
        ref,
        cur,
        tmp_path / "reports" / "drift.html",
        methods={"tenure_months": "psi"},
        categorical=["plan_tier"],
        title="churn drift",
    )
    html = out.read_text(encoding="utf-8")
    assert out == tmp_path / "reports" / "drift.html"
    assert "<html" in html.lower()
    assert "tenure_months" in html and "plan_tier" in html
    assert "<title>churn drift</title>" in html
