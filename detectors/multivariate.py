"""Multivariate drift: an online domain classifier and the anomaly rate of half-space trees.

Both see all watched features of an event at once, so they catch changes of the joint
distribution (a correlation that breaks) that per-feature tests miss. Both take their
reference from ``reference`` (feature → values) or from the first window. Categorical features
enter the classifier one-hot; the anomaly rate uses numeric features only. Missing numeric
values are replaced by the reference mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Monitor, Signal, column
from driftwarden.detectors.lazy import lazy_module
from driftwarden.detectors.river_state import (
    hst_from_state,
    hst_state,
    logistic_state,
    number,
    restore_logistic,
    unnumber,
)
from driftwarden.detectors.windows import Windower

anomaly = lazy_module("river.anomaly")
compose = lazy_module("river.compose")
linear_model = lazy_module("river.linear_model")
optim = lazy_module("river.optim")
preprocessing = lazy_module("river.preprocessing")
scipy_stats = lazy_module("scipy.stats")

DEFAULT_WINDOW_EVENTS = 500
"""Live events per window: the AUC of 500 vs 500 events has a null spread of about 0.018."""

DEFAULT_ALPHA = 0.001
"""False-alarm probability per window on data like the reference (one-sided)."""

CALIBRATION_ROUNDS = 20
"""Reference-vs-reference runs that measure the AUC's null spread (about 0.5 s once)."""

MAX_REFERENCE = 5000
"""Reference rows kept (a longer reference is subsampled, evenly): bounds memory and start-up."""

LEARNING_RATE = 0.05
"""SGD step of the logistic regression: learns a 0.5-sd shift of a few features within a window."""

ANOMALY_QUANTILE = 0.99
"""An event is anomalous when its score exceeds this quantile of the reference's scores."""


def _check_features(features: Sequence[str] | str) -> Sequence[str] | str:
    if isinstance(features, str):
        if features != "all":
            raise ValueError(f"features: {features!r} is not allowed; give a list of names or 'all'")
        return features
    return list(features)


def _check_share(name: str, value: Any) -> None:
    if not (isinstance(value, int | float) and 0 < value < 1):
        raise ValueError(f"{name}: {value!r} is not allowed; it must be in (0, 1)")


def _plain(state: Mapping[str, Any], key: str) -> Any:
    """``state[key]`` unless it is a string (a pickled model of an older version): never unpickled."""
    value = state[key]
    if isinstance(value, str):
        raise ValueError(
            f"the saved {key!r} is a pickled object of an older driftwarden; it is not loaded (a pickle can run code)"
        )
    return value


def mann_whitney_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """AUC of scores of positives vs negatives, ties counted half.

    >>> mann_whitney_auc(np.array([0.9, 0.6]), np.array([0.6, 0.1]))
    0.875
    """
    from scipy.stats import rankdata

    both = np.concatenate([positive, negative])
    ranks = rankdata(both)
    n1, n0 = len(positive), len(negative)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auc_null_sd(n1: int, n0: int) -> float:
    """Standard deviation of the AUC of two samples from one distribution (Mann-Whitney)."""
    return math.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))


class _Windowed(Monitor):
    """Reference handling shared by both monitors: a reference (given or the first window)."""

    features: Sequence[str] | str
    window_events: int | None
    window_seconds: float | None
    reference: Mapping[str, Sequence[Any]] | None

    def _start(self) -> None:
        self._windows = Windower(
            events=self.window_events if self.window_seconds is None else None,
            seconds=self.window_seconds,
        )
        self._names: list[str] | None = None if self.features == "all" else list(self.features)
        self._ready = False

    def _select(self, batch: Batch) -> dict[str, np.ndarray]:
        if self._names is None:
            self._names = sorted(batch.features)
        n = len(batch)
        return {k: batch.features[k] if k in batch.features else np.full(n, np.nan) for k in self._names}

    def _given_reference(self) -> dict[str, np.ndarray] | None:
        if self.reference is None:
            return None
        cols = {k: column(v) for k, v in self.reference.items()}
        if self._names is None:
            self._names = sorted(cols)
        return {k: cols[k] for k in self._names if k in cols}


class DomainClassifier(_Windowed):
    """An online logistic regression (River, standardised features) learns to tell reference
    events (class 0) from live events (class 1); its AUC over a window is the drift score.

    For every live event the model first scores it, then learns it; then it scores and learns
    the next reference row (the reference is cycled in a seeded shuffled order). The window's
    AUC compares the live scores with the interleaved reference scores: about 0.5 while live
    data look like the reference, towards 1 when the model can tell them apart.

    Calibration on reference-vs-reference data: ``calibration_rounds`` times, the reference is
    shuffled (seeded) and split in halves, a fresh model runs the same procedure with one half
    as "live", and the AUC is recorded. The threshold is ``0.5 + z(1 - alpha) * sd``, where sd
    is the larger of the Mann-Whitney null spread for the window's sizes and the measured
    spread of the calibration AUCs scaled to those sizes. Signals carry the AUC as ``value``
    and a one-sided normal p-value. Memory: the reference (at most ``MAX_REFERENCE`` rows),
    one window and the model (one weight per feature or category).

    >>> rng = np.random.default_rng(0)
    >>> m = DomainClassifier(window_events=400, calibration_rounds=5)
    >>> X = rng.normal(size=(1200, 3))
    >>> X[800:, :2] += 0.7                      # two features move in the last window
    >>> sig = m.update(Batch.of(index=range(1200), features={f"f{i}": X[:, i] for i in range(3)}))
    >>> [(s.window_start, round(s.value, 2), s.drift) for s in sig]
    [(400, 0.49, False), (800, 0.75, True)]
    """

    kind = "domain_classifier"

    def __init__(
        self,
        features: Sequence[str] | str = "all",
        window_events: int | None = DEFAULT_WINDOW_EVENTS,
        window_seconds: float | None = None,
        alpha: float = DEFAULT_ALPHA,
        calibration_rounds: int = CALIBRATION_ROUNDS,
        learning_rate: float = LEARNING_RATE,
        reference: Mapping[str, Sequence[Any]] | None = None,
        seed: int = 0,
    ) -> None:
        self.features = _check_features(features)
        _check_share("alpha", alpha)
        if not (isinstance(calibration_rounds, int) and calibration_rounds >= 2):
            raise ValueError(f"calibration_rounds: {calibration_rounds!r} is not allowed; it must be an integer >= 2")
        if not (isinstance(learning_rate, int | float) and learning_rate > 0):
            raise ValueError(f"learning_rate: {learning_rate!r} is not allowed; it must be > 0")
        self.window_events, self.window_seconds = window_events, window_seconds
        self.alpha, self.calibration_rounds, self.learning_rate = (
            alpha,
            calibration_rounds,
            learning_rate,
        )
        self.reference, self.seed = reference, seed
        super().__init__()

    def _reset(self) -> None:
        self._start()
        self._model = self._fresh_model()
        self._rows: list[dict[str, Any]] = []
        self._order: list[int] = []
        self._next = 0
        self._null_sd_ratio = 1.0  # measured null spread / Mann-Whitney spread
        given = self._given_reference()
        if given is not None:
            self._set_reference(given)

    def _fresh_model(self) -> Any:
        return compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optim.SGD(self.learning_rate)),
        )

    def _rows_of(self, columns: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
        names = list(columns)
        n = len(next(iter(columns.values()), ()))
        lists = [columns[k].tolist() for k in names]
        rows = []
        for i in range(n):
            row: dict[str, Any] = {}
            for k, values in zip(names, lists, strict=True):
                v = values[i]
                if v is None or (isinstance(v, float) and v != v):
                    continue
                if isinstance(v, str) or columns[k].dtype == object:
                    row[f"{k}={v}"] = 1.0
                else:
                    row[k] = float(v)
            rows.append(row)
        return rows

    def _set_reference(self, columns: Mapping[str, np.ndarray]) -> None:
        rows = self._rows_of(columns)
        if len(rows) > MAX_REFERENCE:
            keep = np.linspace(0, len(rows) - 1, MAX_REFERENCE).round().astype(int)
            rows = [rows[i] for i in keep]
        self._rows = rows
        rng = np.random.default_rng(self.seed)
        self._order = rng.permutation(len(rows)).tolist()
        self._next = 0
        self._calibrate(rng)
        self._ready = True

    def _calibrate(self, rng: np.random.Generator) -> None:
        n = len(self._rows)
        half = n // 2
        if half < 10:
            return
        aucs = []
        for _ in range(self.calibration_rounds):
            perm = rng.permutation(n)
            model = self._fresh_model()
            live, ref = (
                [self._rows[i] for i in perm[:half]],
                [self._rows[i] for i in perm[half : 2 * half]],
            )
            s1, s0 = self._run(model, live, ref)
            aucs.append(mann_whitney_auc(s1, s0))
        measured = float(np.std(aucs, ddof=1))
        self._null_sd_ratio = max(1.0, measured / auc_null_sd(half, half))

    @staticmethod
    def _run(model: Any, live: list[dict[str, Any]], ref: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        s1 = np.empty(len(live))
        s0 = np.empty(len(ref))
        for i, (x1, x0) in enumerate(zip(live, ref, strict=True)):
            s1[i] = model.predict_proba_one(x1).get(True, 0.0)
            model.learn_one(x1, True)
            s0[i] = model.predict_proba_one(x0).get(True, 0.0)
            model.learn_one(x0, False)
        return s1, s0

    def update(self, batch: Batch) -> list[Signal]:
        out = []
        for w in self._windows.add(batch, self._select):
            if not self._ready:
                self._set_reference(w.columns)
                continue
            live = self._rows_of(w.columns)
            ref = []
            for _ in live:
                ref.append(self._rows[self._order[self._next]])
                self._next = (self._next + 1) % len(self._order)
            s1, s0 = self._run(self._model, live, ref)
            auc = mann_whitney_auc(s1, s0)
            sd = auc_null_sd(len(s1), len(s0)) * self._null_sd_ratio
            z = NormalDist().inv_cdf(1 - self.alpha)
            threshold = 0.5 + z * sd
            p_value = 1 - NormalDist().cdf((auc - 0.5) / sd)
            out.append(
                Signal(
                    kind=self.kind,
                    at=w.at,
                    ts=w.ts,
                    drift=bool(auc > threshold),
                    value=auc,
                    threshold=threshold,
                    p_value=p_value,
                    window_start=w.start,
                    window_end=w.end,
                    details={
                        "auc": auc,
                        "rows": len(live),
                        "null_sd": sd,
                        "null_sd_ratio": self._null_sd_ratio,
                    },
                )
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": self._windows.snapshot(),
            "names": self._names,
            "ready": self._ready,
            "model": logistic_state(self._model),
            "rows": [{k: number(v) for k, v in r.items()} for r in self._rows],
            "order": self._order,
            "next": self._next,
            "null_sd_ratio": self._null_sd_ratio,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows.restore(state["windows"])
        self._names, self._ready = state["names"], bool(state["ready"])
        self._model = restore_logistic(self._fresh_model(), _plain(state, "model"))
        self._rows = [{str(k): unnumber(v) for k, v in r.items()} for r in state["rows"]]
        self._order, self._next = list(state["order"]), int(state["next"])
        self._null_sd_ratio = float(state["null_sd_ratio"])


class AnomalyRate(_Windowed):
    """The share of anomalous events per window, by River's HalfSpaceTrees, against the reference's.

    The trees learn the reference (numeric features, scaled by the reference's min/max) and then
    stay fixed, so live data are always judged against the reference. An event is anomalous
    when its score exceeds the ``quantile`` of the reference's own scores; the reference rate
    is the share of reference events above that cut (about ``1 - quantile``). A window drifts
    when a one-sided binomial test says its anomalous count is too high for the reference rate
    (``p_value < alpha``); ``threshold`` is the smallest rate that would drift at the window's size.
    Memory: ``n_trees * 2^(height + 1)`` tree nodes, the reference mean, one window.

    >>> rng = np.random.default_rng(1)
    >>> m = AnomalyRate(window_events=500, n_trees=5, height=6)
    >>> X = rng.normal(size=(1500, 2))
    >>> X[1000:] *= 2.5                      # the spread grows in the last window
    >>> sig = m.update(Batch.of(index=range(1500), features={"a": X[:, 0], "b": X[:, 1]}))
    >>> [(s.window_start, round(s.value, 3), s.drift) for s in sig]
    [(500, 0.024, False), (1000, 0.256, True)]
    """

    kind = "anomaly_rate"

    def __init__(
        self,
        features: Sequence[str] | str = "all",
        window_events: int | None = 1000,
        window_seconds: float | None = None,
        quantile: float = ANOMALY_QUANTILE,
        alpha: float = DEFAULT_ALPHA,
        n_trees: int = 10,
        height: int = 8,
        tree_window: int = 250,
        reference: Mapping[str, Sequence[Any]] | None = None,
        seed: int = 0,
    ) -> None:
        self.features = _check_features(features)
        _check_share("quantile", quantile)
        _check_share("alpha", alpha)
        for name, value, low in (
            ("n_trees", n_trees, 1),
            ("height", height, 1),
            ("tree_window", tree_window, 2),
        ):
            if not (isinstance(value, int) and value >= low):
                raise ValueError(f"{name}: {value!r} is not allowed; it must be an integer >= {low}")
        self.window_events, self.window_seconds = window_events, window_seconds
        self.quantile, self.alpha, self.n_trees, self.height = quantile, alpha, n_trees, height
        self.tree_window, self.reference, self.seed = tree_window, reference, seed
        super().__init__()

    def _reset(self) -> None:
        self._start()
        self._trees: Any = None
        self._means: dict[str, float] = {}
        self._cut = math.inf
        self._rate = 0.0
        given = self._given_reference()
        if given is not None:
            self._set_reference(given)

    def _numeric(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in columns.items() if v.dtype != object}

    def _rows_of(self, columns: Mapping[str, np.ndarray]) -> list[dict[str, float]]:
        cols = {k: v for k, v in self._numeric(columns).items() if k in self._means}
        filled = {k: np.where(np.isnan(v), self._means[k], v).tolist() for k, v in cols.items()}
        n = len(next(iter(columns.values()), ()))
        names = list(filled)
        return [{k: filled[k][i] for k in names} for i in range(n)]

    def _set_reference(self, columns: Mapping[str, np.ndarray]) -> None:
        num = self._numeric(columns)
        limits = {}
        for k, v in num.items():
            finite = v[np.isfinite(v)]
            if len(finite) == 0:
                continue
            lo, hi = float(finite.min()), float(finite.max())
            limits[k] = (lo, hi if hi > lo else lo + 1.0)
            self._means[k] = float(finite.mean())
        self._trees = anomaly.HalfSpaceTrees(
            n_trees=self.n_trees,
            height=self.height,
            window_size=self.tree_window,
            limits=limits,
            seed=self.seed,
        )
        rows = self._rows_of(columns)
        if len(rows) > MAX_REFERENCE:
            keep = np.linspace(0, len(rows) - 1, MAX_REFERENCE).round().astype(int)
            rows = [rows[i] for i in keep]
        for _ in range(max(1, -(-self.tree_window // max(len(rows), 1)))):  # at least one full tree window
            for row in rows:
                self._trees.learn_one(row)
        scores = np.array([self._trees.score_one(r) for r in rows])
        self._cut = float(np.quantile(scores, self.quantile)) if len(scores) else math.inf
        self._rate = max(float(np.mean(scores > self._cut)) if len(scores) else 0.0, 1.0 / max(len(rows), 1))
        self._ready = True

    def update(self, batch: Batch) -> list[Signal]:
        out = []
        for w in self._windows.add(batch, self._select):
            if not self._ready:
                self._set_reference(w.columns)
                continue
            assert self._trees is not None
            rows = self._rows_of(w.columns)
            scores = np.array([self._trees.score_one(r) for r in rows])
            n = len(scores)
            k = int(np.sum(scores > self._cut))
            p_value = float(scipy_stats.binom.sf(k - 1, n, self._rate)) if n else 1.0
            critical = (float(scipy_stats.binom.isf(self.alpha, n, self._rate)) + 1) / n if n else math.nan
            out.append(
                Signal(
                    kind=self.kind,
                    at=w.at,
                    ts=w.ts,
                    drift=bool(p_value < self.alpha),
                    value=k / n if n else 0.0,
                    threshold=critical,
                    p_value=p_value,
                    window_start=w.start,
                    window_end=w.end,
                    details={
                        "anomalies": k,
                        "rows": n,
                        "reference_rate": self._rate,
                        "score_cut": self._cut,
                    },
                )
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": self._windows.snapshot(),
            "names": self._names,
            "ready": self._ready,
            "trees": None if self._trees is None else hst_state(self._trees),
            "means": self._means,
            "cut": self._cut if math.isfinite(self._cut) else None,
            "rate": self._rate,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows.restore(state["windows"])
        self._names, self._ready = state["names"], bool(state["ready"])
        trees = _plain(state, "trees")
        self._trees = (
            None if trees is None else hst_from_state(trees, self.n_trees, self.height, self.tree_window, self.seed)
        )
        self._means = dict(state["means"])
        self._cut = math.inf if state["cut"] is None else float(state["cut"])
        self._rate = float(state["rate"])
