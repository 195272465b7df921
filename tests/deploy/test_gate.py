"""The evaluation gate: metrics, the promotion decision, the hold-out split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from driftwarden.deploy.gate import (
    CLASSIFICATION_METRICS,
    GateResult,
    evaluate,
    holdout_split,
    improves,
    infer_task,
    score,
)
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from tests.deploy.trainers import FEATURES, make_data


@pytest.fixture
def split() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    train, held = holdout_split(make_data(400), 0.25)
    cols = list(FEATURES)
    return train[cols], train["__label"], held[cols], held["__label"]


def test_binary_scores_with_string_labels(split) -> None:
    X, y, Xh, yh = split
    names = np.array(["no", "yes"])
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, names[y])
    result = score(tree, Xh, names[yh])
    assert set(result) == set(CLASSIFICATION_METRICS)
    assert 0.8 < result["accuracy"] <= 1 and 0.8 < result["f1"] <= 1 and result["log_loss"] > 0
    # "yes" (classes_[1]) is the positive class: f1 equals sklearn's for pos_label="yes".
    from sklearn.metrics import f1_score

    assert result["f1"] == pytest.approx(f1_score(names[yh], tree.predict(Xh), pos_label="yes"))


def test_multiclass_is_macro_averaged(split) -> None:
    X, _, Xh, _ = split
    y3, yh3 = np.digitize(X["x0"], [-0.5, 0.5]), np.digitize(Xh["x0"], [-0.5, 0.5])
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y3)
    result = score(tree, Xh, yh3, ("f1", "roc_auc", "log_loss"))
    assert set(result) == {"f1", "roc_auc", "log_loss"} and result["f1"] > 0.8


def test_probability_metrics_are_skipped_without_predict_proba(split) -> None:
    X, y, Xh, yh = split
    assert "predict_proba" not in dir(LinearSVC())
    result = score(LinearSVC().fit(X, y), Xh, yh)
    assert set(result) == {"accuracy", "precision", "recall", "f1"}


def test_regression_metrics() -> None:
    X = np.arange(20, dtype=float).reshape(-1, 1)
    y = 2 * X[:, 0] + 1
    model = LinearRegression().fit(X, y)
    expected = {"mae": 0.5, "rmse": 0.5, "r2": 1 - 0.25 / np.var(y)}
    assert score(model, X, y + 0.5) == pytest.approx(expected)  # inferred: not integral
    # Integral floats with few values read as classes unless the task is given.
    assert "accuracy" in score(model, X, y + 1.0)
    assert score(model, X, y + 1.0, task="regression")["mae"] == pytest.approx(1.0)


def test_task_inference_and_metric_errors() -> None:
    assert infer_task(pd.Series([0, 1, 0])) == "classification"
    assert infer_task(pd.Series([0.0, 1.0])) == "classification"
    assert infer_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert infer_task(pd.Series([True, False])) == "classification"
    model = DummyClassifier().fit([[0], [1]], [0, 1])
    with pytest.raises(ValueError, match=r"\['mae'\] are not classification metrics"):
        score(model, [[0]], [0], ("f1", "mae"))
    with pytest.raises(ValueError, match="empty"):
        score(model, np.empty((0, 1)), [])


def test_evaluate_scores_both_on_the_same_rows(split) -> None:
    X, y, Xh, yh = split
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    dummy = DummyClassifier(strategy="most_frequent").fit(X, y)
    seen: list[tuple[dict, dict | None]] = []

    def promote_if(candidate: dict, champion: dict | None) -> bool:
        seen.append((candidate, champion))
        return champion is None or candidate["accuracy"] > champion["accuracy"]

    better = evaluate(tree, dummy, Xh, yh, promote_if, ("accuracy", "f1"))
    worse = evaluate(dummy, tree, Xh, yh, promote_if, ("accuracy", "f1"))
    assert isinstance(better, GateResult) and better.promoted and not worse.promoted
    assert better.candidate == worse.champion and better.champion == worse.candidate
    assert better.reason == "promote_if passed" and worse.reason == "promote_if failed"
    first = evaluate(dummy, None, Xh, yh, promote_if)
    assert first.promoted and first.champion is None and seen[-1][1] is None


def test_improves_reason_and_direction(split) -> None:
    X, y, Xh, yh = split
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    result = evaluate(tree, tree, Xh, yh, improves("log_loss", by=0.01))
    assert not result.promoted and result.reason.startswith("candidate log_loss")
    assert "> champion log_loss" in result.reason
    assert evaluate(tree, None, Xh, yh, improves("f1")).reason == ("no champion: first model is promoted")
    with pytest.raises(KeyError, match="roc_auc"):
        evaluate(tree, tree, Xh, yh, improves("roc_auc"), ("f1",))


def test_holdout_is_the_most_recent_slice() -> None:
    df = make_data(101)
    train, held = holdout_split(df, 0.2)
    assert len(held) == 21 and len(train) == 80
    assert train["__index"].max() < held["__index"].min()
    assert sorted(pd.concat([train, held])["__index"]) == list(range(101))
    assert list(held["__index"]) == sorted(held["__index"])
    assert len(holdout_split(df, 0.0)[1]) == 0
    assert len(holdout_split(df.head(3), 0.01)[1]) == 1  # at least one row held out


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_holdout_rejects_bad_fractions(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        holdout_split(make_data(10), fraction)


def test_holdout_needs_rows_and_index() -> None:
    with pytest.raises(ValueError, match="nothing to train"):
        holdout_split(make_data(1), 0.5)
    with pytest.raises(ValueError, match="__index"):
        holdout_split(make_data(10).drop(columns="__index"), 0.5)
