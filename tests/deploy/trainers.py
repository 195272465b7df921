"""Trainer entrypoints and data for the deploy tests (run in real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.tree import DecisionTreeClassifier

FEATURES = ("x0", "x1", "x2")


def make_data(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Features plus the reserved columns; the label is learnable from x0 and x1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    df = pd.DataFrame(X, columns=list(FEATURES))
    df["__label"] = ((X[:, 0] + X[:, 1]) > 0).astype(int)
    df["__id"] = [f"p-{i:06d}" for i in range(n)]
    df["__ts"] = pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC")
    df["__index"] = np.arange(n)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # order must not matter


def _bump(params: dict[str, Any]) -> int:
    """Count calls in params["counter"] (a file), returning this call's number."""
    path = Path(params["counter"])
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


def fit_tree(X: pd.DataFrame, y: pd.Series, params: dict[str, Any]) -> DecisionTreeClassifier:
    if "counter" in params:
        _bump(params)
    if "seen" in params:  # what the trainer got: its columns and the exported rows' __index
        data = pd.read_parquet(os.environ["DRIFTWARDEN_DATA"])
        Path(params["seen"]).write_text(
            json.dumps(
                {
                    "rows": len(X),
                    "columns": list(X.columns),
                    "index": data["__index"].tolist(),
                }
            )
        )
    return DecisionTreeClassifier(max_depth=params.get("max_depth", 5), random_state=0).fit(X, y)


def fit_dummy(X: pd.DataFrame, y: pd.Series, params: dict[str, Any]) -> DummyClassifier:
    return DummyClassifier(strategy="most_frequent").fit(X, y)


def fit_raises(X: pd.DataFrame, y: pd.Series, params: dict[str, Any]) -> None:
    if "counter" in params:
        _bump(params)
    raise ValueError("boom: the trainer is broken")


def fit_tempfail(X: pd.DataFrame, y: pd.Series, params: dict[str, Any]) -> DecisionTreeClassifier:
    """Exit 75 (EX_TEMPFAIL) on the first params["fail_times"] calls, then train."""
    if _bump(params) <= params.get("fail_times", 1):
        print("resource busy, asking for a retry", flush=True)
        sys.exit(75)
    return fit_tree(X, y, {})


def fit_sleeps(X: pd.DataFrame, y: pd.Series, params: dict[str, Any]) -> None:
    """Start a grandchild, record its pid, and hang: a timeout must kill both."""
    child = subprocess.Popen(["sleep", "60"])
    Path(params["pid_file"]).write_text(str(child.pid))
    time.sleep(60)


def fit_no_predict(X: pd.DataFrame, y: pd.Series, params: dict[str, Any]) -> dict[str, int]:
    return {"not": 1}


class LinearRule:
    """A fixed rule ``w0*x0 + w1*x1 > 0`` (the data's truth is w0 = w1 = 1); with ``favor``,
    every row with x2 > ``favor`` is approved — a model that treats one group better.
    Picklable and deterministic: the gate's numbers in the tests are exact."""

    classes_ = np.array([0, 1])

    def __init__(self, w0: float = 1.0, w1: float = 1.0, favor: float | None = None) -> None:
        self.w0, self.w1, self.favor = w0, w1, favor

    def fit(self, X: Any, y: Any) -> LinearRule:
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        x = X[list(FEATURES)].to_numpy(dtype=float)
        out = (self.w0 * x[:, 0] + self.w1 * x[:, 1] > 0).astype(int)
        if self.favor is not None:
            out[x[:, 2] > self.favor] = 1
        return out

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.predict(X).astype(float) * 0.8 + 0.1
        return np.c_[1 - p, p]


def slow_copy(X: pd.DataFrame, y: pd.Series, params: dict[str, Any]) -> Any:
    """Leave a marker (one per training), sleep params["sleep"] seconds, then return the model
    pickled at params["model"]: a trainer to SIGKILL a daemon under."""
    import pickle

    marker = Path(params["markers"]) / f"trained-{os.getpid()}"
    marker.write_text(str(os.getpid()))
    time.sleep(float(params.get("sleep", 0)))
    return pickle.loads(Path(params["model"]).read_bytes())
