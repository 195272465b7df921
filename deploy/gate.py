"""The evaluation gate: score candidate and champion on the same held-out data, then decide.

- :func:`holdout_split` holds out the most recent rows (by ``__index``); they never reach the
  trainer.
- :func:`score` computes metrics with ``sklearn.metrics``.
- :func:`evaluate` scores both models and asks ``promote_if(candidate, champion)``. With no
  champion (the first model of a name) ``promote_if`` is called with ``champion=None`` and
  decides alone: a predicate that compares with the champion must say what to do then —
  :func:`improves` promotes a first model.

>>> import numpy as np
>>> from sklearn.dummy import DummyClassifier
>>> from sklearn.tree import DecisionTreeClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 2)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
>>> champion = DummyClassifier(strategy="most_frequent").fit(X[:100], y[:100])
>>> candidate = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X[:100], y[:100])
>>> result = evaluate(candidate, champion, X[100:], y[100:], improves("f1", by=0.05))
>>> result.promoted, result.reason
(True, 'candidate f1 0.8627 >= champion f1 0.0000 + 0.05')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from deploy.training import INDEX

Task = Literal["classification", "regression"]
Metrics = dict[str, float]
PromoteIf = Callable[[Metrics, Metrics | None], bool]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")
#: Metrics where smaller is better (for :func:`improves`).
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
#: Metrics that need ``predict_proba``; skipped for models without it.
PROBA_METRICS = frozenset({"roc_auc", "log_loss"})
#: A float label with at most this many distinct integral values is read as classes.
MAX_CLASSES_FOR_FLOAT_LABELS = 20


def infer_task(y: Any) -> Task:
    """``"classification"`` for bool, string, categorical or integer labels, and for float
    labels holding few (≤ :data:`MAX_CLASSES_FOR_FLOAT_LABELS`) integral values; otherwise
    ``"regression"``.

    >>> infer_task([0, 1, 1]), infer_task([0.5, 1.25, 3.0]), infer_task(["a", "b"])
    ('classification', 'regression', 'classification')
    """
    values = pd.Series(np.asarray(y) if not isinstance(y, pd.Series) else y)
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    if pd.api.types.is_integer_dtype(values):
        return "classification"
    finite = values.dropna().to_numpy(dtype=float)
    integral = bool(np.all(np.mod(finite, 1) == 0))
    few = len(np.unique(finite)) <= MAX_CLASSES_FOR_FLOAT_LABELS
    return "classification" if integral and few else "regression"


def score(
    model: Any,
    X: Any,
    y: Any,
    metrics: Iterable[str] | None = None,
    *,
    task: Task | None = None,
) -> Metrics:
    """Score ``model`` on ``(X, y)``; ``metrics=None`` means all metrics of the task.

    Classification: accuracy, precision, recall, f1 — binary (positive class = the larger of
    the two labels, i.e. ``classes_[1]``) when there are two classes, else macro-averaged —
    and roc_auc, log_loss when the model has ``predict_proba``. Regression: mae, rmse, r2.
    A metric that is undefined on this data (e.g. roc_auc with one class present, or a
    probability metric without ``predict_proba``) is left out rather than reported as NaN.

    >>> from sklearn.linear_model import LinearRegression
    >>> m = LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])
    >>> {name: round(value, 6) for name, value in score(m, [[3.0]], [3.5]).items()}
    {'mae': 0.5, 'rmse': 0.5}
    """
    from sklearn import metrics as skm

    task = task or infer_task(y)
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    wanted = tuple(allowed if metrics is None else metrics)
    unknown = [m for m in wanted if m not in allowed]
    if unknown:
        raise ValueError(f"metrics {unknown} are not {task} metrics; allowed: {list(allowed)}")
    y_true = np.asarray(y)
    if len(y_true) == 0:
        raise ValueError("cannot score on empty held-out data")
    y_pred = np.asarray(model.predict(X))
    out: Metrics = {}

    if task == "regression":
        for name in wanted:
            if name == "mae":
                out[name] = skm.mean_absolute_error(y_true, y_pred)
            elif name == "rmse":
                out[name] = math.sqrt(skm.mean_squared_error(y_true, y_pred))
            elif name == "r2" and len(y_true) >= 2:
                out[name] = skm.r2_score(y_true, y_pred)
        return _finite(out)

    classes = getattr(model, "classes_", None)
    if classes is None:
        classes = np.unique(np.concatenate([y_true, y_pred]))
    classes = np.asarray(classes)
    binary = len(classes) == 2
    avg: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[1]}
        if binary
        else {"average": "macro", "labels": classes}
    )
    proba = None
    if PROBA_METRICS.intersection(wanted) and callable(getattr(model, "predict_proba", None)):
        proba = np.asarray(model.predict_proba(X))
    for name in wanted:
        try:
            if name == "accuracy":
                out[name] = skm.accuracy_score(y_true, y_pred)
            elif name == "precision":
                out[name] = skm.precision_score(y_true, y_pred, zero_division=0, **avg)
            elif name == "recall":
                out[name] = skm.recall_score(y_true, y_pred, zero_division=0, **avg)
            elif name == "f1":
                out[name] = skm.f1_score(y_true, y_pred, zero_division=0, **avg)
            elif proba is None:
                continue
            elif name == "roc_auc":
                if len(np.unique(y_true)) < 2:
                    continue
                if binary:
                    out[name] = skm.roc_auc_score(y_true == classes[1], proba[:, 1])
                else:
                    out[name] = skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
            elif name == "log_loss":
                out[name] = skm.log_loss(y_true, proba, labels=classes)
        except ValueError:
            continue  # undefined on this data (e.g. a class missing for one-vs-rest AUC)
    return _finite(out)


def _finite(values: dict[str, Any]) -> Metrics:
    return {k: float(v) for k, v in values.items() if math.isfinite(float(v))}


@dataclass(frozen=True)
class GateResult:
    """The gate's decision, with both models' metrics on the same held-out data."""

    promoted: bool
    candidate: Metrics
    champion: Metrics | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "candidate": self.candidate,
            "champion": self.champion,
            "reason": self.reason,
        }


def evaluate(
    candidate: Any,
    champion: Any | None,
    X: Any,
    y: Any,
    promote_if: PromoteIf,
    metrics: Iterable[str] | None = None,
    *,
    task: Task | None = None,
) -> GateResult:
    """Score both models on ``(X, y)`` and apply ``promote_if(candidate, champion)``.

    ``champion=None`` → ``promote_if`` gets ``None`` for the champion's metrics. Errors
    (a champion that cannot predict on the new features, a predicate that raises) propagate:
    the caller records them as a failed run, never as a promotion.
    ``promote_if`` may carry a ``describe(candidate, champion) -> str`` attribute for the reason.
    """
    metrics = None if metrics is None else tuple(metrics)
    task = task or infer_task(y)
    cand = score(candidate, X, y, metrics, task=task)
    champ = None if champion is None else score(champion, X, y, metrics, task=task)
    promoted = bool(promote_if(cand, champ))
    describe = getattr(promote_if, "describe", None)
    if callable(describe):
        reason = str(describe(cand, champ))
    else:
        verdict = "passed" if promoted else "failed"
        reason = f"promote_if {verdict}" + (" (no champion)" if champ is None else "")
    return GateResult(promoted=promoted, candidate=cand, champion=champ, reason=reason)


def improves(metric: str, by: float = 0.0) -> PromoteIf:
    """A ``promote_if``: the candidate beats the champion on ``metric`` by at least ``by``
    (direction from :data:`LOWER_IS_BETTER`); with no champion the candidate is promoted.

    >>> rule = improves("f1", by=0.01)
    >>> rule({"f1": 0.80}, {"f1": 0.78}), rule({"f1": 0.80}, {"f1": 0.795}), rule({"f1": 0.1}, None)
    (True, False, True)
    >>> improves("rmse")({"rmse": 1.0}, {"rmse": 1.5})
    True
    """
    lower = metric in LOWER_IS_BETTER

    def promote_if(candidate: Metrics, champion: Metrics | None) -> bool:
        if champion is None:
            return True
        if metric not in candidate or metric not in champion:
            raise KeyError(
                f"metric {metric!r} missing (candidate {sorted(candidate)}, "
                f"champion {sorted(champion)})"
            )
        if lower:
            return candidate[metric] <= champion[metric] - by
        return candidate[metric] >= champion[metric] + by

    def describe(candidate: Metrics, champion: Metrics | None) -> str:
        if champion is None:
            return "no champion: first model is promoted"
        c, h = candidate.get(metric, float("nan")), champion.get(metric, float("nan"))
        ok = promote_if(candidate, champion)
        op = ("<=" if ok else ">") if lower else (">=" if ok else "<")
        sign = "-" if lower else "+"
        return f"candidate {metric} {c:.4f} {op} champion {metric} {h:.4f} {sign} {by:g}"

    promote_if.describe = describe  # type: ignore[attr-defined]
    return promote_if


def holdout_split(df: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off the most recent ``fraction`` of rows by ``__index`` as held-out data.

    Both parts come back sorted by ``__index``. At least one row is held out when
    ``fraction > 0``, and at least one row is left for training.

    >>> df = pd.DataFrame({"x": range(10), "__index": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]})
    >>> train, held = holdout_split(df, 0.2)
    >>> list(train["__index"]), list(held["__index"])
    ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction!r}")
    if INDEX not in df.columns:
        raise ValueError(f"data has no {INDEX!r} column to order the hold-out by")
    ordered = df.sort_values(INDEX, kind="stable").reset_index(drop=True)
    n = len(ordered)
    k = 0 if fraction == 0 else max(1, math.ceil(n * fraction - 1e-9))
    if k >= n:
        raise ValueError(f"holdout {fraction:g} of {n} rows leaves nothing to train on")
    return ordered.iloc[: n - k].copy(), ordered.iloc[n - k :].copy()
