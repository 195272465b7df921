"""The evaluation gate: score candidate and champion on the same held-out data, then decide.

- :func:`holdout_split` holds out the most recent rows (by ``__index``); they never reach the
  trainer.
- :func:`score` computes metrics with ``sklearn.metrics``.
- :func:`evaluate` scores both models and asks ``promote_if(candidate, champion)``. With no
  champion (the first model of a name) ``promote_if`` is called with ``champion=None`` and
  decides alone: a predicate that compares with the champion must say what to do then —
  :func:`improves` promotes a first model.
- Optional checks against a champion: :class:`Significance` (McNemar's exact test or a seeded
  paired bootstrap, so that noise does not promote) and :class:`Fairness` (the candidate must
  not widen a demographic-parity gap beyond a bound).

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from driftwarden.deploy.training import INDEX

if TYPE_CHECKING:  # pandas (40 MB) loads with the first retrain, not with the daemon
    import pandas as pd

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
    import pandas as pd

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
        {"average": "binary", "pos_label": classes[1]} if binary else {"average": "macro", "labels": classes}
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
    checks: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "candidate": self.candidate,
            "champion": self.champion,
            "reason": self.reason,
            "checks": self.checks,
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
    significance: Significance | None = None,
    fairness: Fairness | None = None,
    groups: Any = None,
) -> GateResult:
    """Score both models on ``(X, y)`` and apply ``promote_if(candidate, champion)``.

    With a champion, the optional checks must pass too: ``significance`` (the candidate is
    better beyond noise) and ``fairness`` (its demographic-parity gap over ``groups``, one value
    per row, is not wider than allowed). Each check's numbers go to ``GateResult.checks``.

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
    checks: dict[str, Any] = {}
    if champion is not None and (significance is not None or fairness is not None):
        y_true = np.asarray(y)
        cand_pred, champ_pred = np.asarray(candidate.predict(X)), np.asarray(champion.predict(X))
        if significance is not None:
            checks["significance"] = significance.check(y_true, cand_pred, champ_pred, task=task)
        if fairness is not None:
            if groups is None:
                raise ValueError(f"fairness constraint on {fairness.attribute!r} but no groups given")
            positive = _positive_class(candidate, y_true)
            checks["fairness"] = fairness.check(np.asarray(groups), cand_pred, champ_pred, positive)
    for check in checks.values():
        reason += f"; {check['reason']}"
        promoted = promoted and bool(check["passed"])
    return GateResult(promoted=promoted, candidate=cand, champion=champ, reason=reason, checks=checks)


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
            raise KeyError(f"metric {metric!r} missing (candidate {sorted(candidate)}, champion {sorted(champion)})")
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

    >>> import pandas as pd
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


# -- optional checks: significance and fairness ------------------------------------------------

#: Resamples scored at once by the paired bootstrap: bounds memory to ~block x rows indices.
BOOTSTRAP_BLOCK = 200
#: Groups with fewer held-out rows than this are left out of a parity gap: their rates are noise.
MIN_GROUP_ROWS = 30


@dataclass(frozen=True)
class Significance:
    """The candidate must beat the champion beyond noise, on the same (paired) held-out rows.

    ``mcnemar`` (classification): McNemar's exact test on the discordant pairs — rows only the
    candidate gets right (b) against rows only the champion gets right (c); one-sided binomial
    p-value of b successes in b + c fair coin flips. ``bootstrap``: resample the rows with
    replacement ``resamples`` times (seeded, so the gate is reproducible) and count how often
    the candidate is not better on ``metric``. Passes when ``p < alpha``.

    >>> y = np.array([0, 1] * 50)
    >>> champ = y.copy(); champ[:20] = 1 - champ[:20]          # champion: 20 mistakes
    >>> close = champ.copy(); close[:2] = y[:2]                # 2 fewer mistakes: noise
    >>> Significance("mcnemar").check(y, close, champ)["passed"]
    False
    >>> Significance("mcnemar").check(y, y, champ)["p_value"] < 0.001   # 20 fewer: significant
    True
    >>> Significance("bootstrap", seed=1).check(y, y, champ)["passed"]
    True
    """

    test: Literal["mcnemar", "bootstrap"] = "mcnemar"
    alpha: float = 0.05
    metric: str = "accuracy"
    resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.test not in ("mcnemar", "bootstrap"):
            raise ValueError(f"significance test must be 'mcnemar' or 'bootstrap', got {self.test!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"significance alpha must be in (0, 1), got {self.alpha!r}")
        if self.resamples < 1:
            raise ValueError(f"significance resamples must be >= 1, got {self.resamples!r}")

    def check(self, y: Any, candidate: Any, champion: Any, *, task: Task | None = None) -> dict[str, Any]:
        """Test predictions ``candidate`` against ``champion`` on labels ``y`` (all paired)."""
        y, cand, champ = np.asarray(y), np.asarray(candidate), np.asarray(champion)
        task = task or infer_task(y)
        if self.test == "mcnemar":
            if task != "classification":
                raise ValueError("McNemar's test needs class predictions; use 'bootstrap'")
            from scipy.stats import binomtest

            right_c, right_h = cand == y, champ == y
            b = int(np.sum(right_c & ~right_h))
            c = int(np.sum(~right_c & right_h))
            p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="greater").pvalue)
            info: dict[str, Any] = {
                "test": "mcnemar",
                "only_candidate_right": b,
                "only_champion_right": c,
            }
        else:
            diffs = _bootstrap_differences(self, y, cand, champ, task)
            p = float((np.sum(diffs <= 0) + 1) / (len(diffs) + 1))
            info = {
                "test": "bootstrap",
                "metric": self.metric,
                "resamples": self.resamples,
                "seed": self.seed,
                "mean_improvement": round(float(diffs.mean()), 6),
            }
        passed = p < self.alpha
        verdict = "significant" if passed else "not significant"
        info.update(
            p_value=round(p, 6),
            alpha=self.alpha,
            passed=passed,
            reason=f"{info['test']} p={p:.4f} {'<' if passed else '>='} {self.alpha:g}: improvement {verdict}",
        )
        return info


def _bootstrap_differences(
    sig: Significance, y: np.ndarray, cand: np.ndarray, champ: np.ndarray, task: Task
) -> np.ndarray:
    """Per resample: how much better the candidate is on ``sig.metric`` (positive = better)."""
    metric = sig.metric
    allowed = ("accuracy", "precision", "recall", "f1") if task == "classification" else ("mae", "rmse")
    if metric not in allowed:
        raise ValueError(f"bootstrap metric must be one of {list(allowed)} for {task}, got {metric!r}")
    n = len(y)
    rng = np.random.default_rng(sig.seed)
    out: list[np.ndarray] = []
    if task == "classification":
        positive = np.unique(y)[-1]
    for start in range(0, sig.resamples, BOOTSTRAP_BLOCK):
        idx = rng.integers(0, n, size=(min(BOOTSTRAP_BLOCK, sig.resamples - start), n))
        yy = y[idx]
        if task == "regression":
            ec, eh = cand[idx] - yy, champ[idx] - yy
            if metric == "mae":
                out.append(np.abs(eh).mean(1) - np.abs(ec).mean(1))
            else:
                out.append(np.sqrt((eh**2).mean(1)) - np.sqrt((ec**2).mean(1)))
            continue
        values = []
        for pred in (cand[idx], champ[idx]):
            if metric == "accuracy":
                values.append((pred == yy).mean(1))
                continue
            tp = ((pred == positive) & (yy == positive)).sum(1)
            fp = ((pred == positive) & (yy != positive)).sum(1)
            fn = ((pred != positive) & (yy == positive)).sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                if metric == "precision":
                    v = tp / (tp + fp)
                elif metric == "recall":
                    v = tp / (tp + fn)
                else:
                    v = 2 * tp / (2 * tp + fp + fn)
            values.append(np.nan_to_num(v))
        out.append(values[0] - values[1])
    return np.concatenate(out)


@dataclass(frozen=True)
class Fairness:
    """The candidate must not widen the demographic-parity gap of a group attribute.

    The gap is the largest difference between groups in the rate of positive predictions (the
    positive class is the larger label), over groups with at least :data:`MIN_GROUP_ROWS`
    held-out rows. Passes when the candidate's gap is at most the champion's plus
    ``max_increase`` and, with ``max_gap``, at most ``max_gap``.

    >>> g = np.array(["a"] * 50 + ["b"] * 50)
    >>> fair = np.array([0, 1] * 50)                  # both groups at 50 %
    >>> biased = np.r_[np.ones(50), np.zeros(50)]     # group a always approved, b never
    >>> Fairness("sex", max_increase=0.05).check(g, biased, fair, positive=1)["passed"]
    False
    >>> Fairness("sex").check(g, fair, biased, positive=1)["candidate_gap"]
    0.0
    """

    attribute: str
    max_increase: float = 0.0
    max_gap: float | None = None

    def check(self, groups: Any, candidate: Any, champion: Any, positive: Any) -> dict[str, Any]:
        groups = np.asarray(groups)
        cand_gap, cand_rates = parity_gap(np.asarray(candidate), groups, positive)
        champ_gap, champ_rates = parity_gap(np.asarray(champion), groups, positive)
        passed = cand_gap <= champ_gap + self.max_increase + 1e-12 and (
            self.max_gap is None or cand_gap <= self.max_gap + 1e-12
        )
        limit = f"champion's {champ_gap:.4f} + {self.max_increase:g}"
        if self.max_gap is not None:
            limit += f" and {self.max_gap:g}"
        return {
            "attribute": self.attribute,
            "metric": "demographic_parity_difference",
            "candidate_gap": round(cand_gap, 6),
            "champion_gap": round(champ_gap, 6),
            "candidate_rates": cand_rates,
            "champion_rates": champ_rates,
            "passed": passed,
            "reason": f"{self.attribute} parity gap {cand_gap:.4f} {'within' if passed else 'exceeds'} {limit}",
        }


def parity_gap(pred: np.ndarray, groups: np.ndarray, positive: Any) -> tuple[float, dict[str, float]]:
    """Demographic-parity difference of ``pred`` across ``groups`` and each group's rate.

    >>> parity_gap(np.array([1, 1, 0, 0]), np.array(["a", "a", "b", "b"]), 1)
    (0.0, {})
    """
    rates: dict[str, float] = {}
    for g in np.unique(groups.astype(str)):
        mask = groups.astype(str) == g
        if mask.sum() >= MIN_GROUP_ROWS:
            rates[str(g)] = round(float(np.mean(pred[mask] == positive)), 6)
    if len(rates) < 2:
        return 0.0, rates
    return float(max(rates.values()) - min(rates.values())), rates


def _positive_class(model: Any, y: np.ndarray) -> Any:
    classes = getattr(model, "classes_", None)
    return np.asarray(classes)[-1] if classes is not None else np.unique(y)[-1]
