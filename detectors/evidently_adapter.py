"""The one door to Evidently: its per-column drift numbers and its HTML drift report.

Evidently is imported lazily, inside the functions, with its telemetry switched off first, so
``import detectors`` stays fast and nothing phones home. Its results become our own frozen
:class:`ColumnDrift` at once; nothing of Evidently leaks out of this module.

The hot path does not come here: :mod:`driftwarden.detectors.stats` computes the same numbers ~100x faster.
This module is for HTML reports and for checking the fast path against Evidently in tests.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(size=300)})
>>> cur = pd.DataFrame({"x": rng.normal(0.5, size=300)})
>>> d = evidently_column_drift(ref, cur, {"x": "wasserstein"})["x"]
>>> d.method, d.p_value, round(d.statistic, 3), d.threshold, d.drift
('wasserstein', None, 0.526, 0.1, True)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftwarden.detectors.stats import METHODS, P_VALUE_METHODS

__all__ = ["ColumnDrift", "evidently_column_drift", "render_drift_report"]

_TELEMETRY_OFF = {
    # evidently.telemetry: any value of DO_NOT_TRACK disables its event logger ...
    "DO_NOT_TRACK": "1",
    # ... and evidently.legacy._config reads this one for the legacy collector/UI.
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
}


@dataclass(frozen=True, slots=True)
class ColumnDrift:
    """Evidently's verdict on one column.

    Evidently reports one drift score per column: the p-value of ``ks``, ``chisquare`` and
    ``z`` (then ``statistic`` is None: Evidently does not expose the test statistic), or the
    distance of ``psi``, ``wasserstein`` and ``jensenshannon`` (then ``p_value`` is None).
    ``method`` is the method that ran (Evidently's ``auto`` resolved).

    >>> ColumnDrift("ks", statistic=None, p_value=0.01, threshold=0.05, drift=True).score
    0.01
    """

    method: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drift: bool

    @property
    def score(self) -> float:
        """Evidently's drift score: the p-value, or the distance."""
        value = self.p_value if self.method in P_VALUE_METHODS else self.statistic
        assert value is not None
        return value


def evidently_column_drift(
    reference: Any,
    current: Any,
    methods: Mapping[str, str],
    thresholds: Mapping[str, float] | None = None,
    categorical: Sequence[str] = (),
) -> dict[str, ColumnDrift]:
    """Evidently's own drift numbers for the columns named in ``methods``, in one Report run.

    ``reference`` and ``current`` are pandas DataFrames; ``methods`` maps a column to one of
    :data:`driftwarden.detectors.stats.METHODS` or ``"auto"``; ``thresholds`` maps a column to its threshold
    (Evidently's default otherwise); columns in ``categorical`` are categorical, the others
    numeric. Each column is one ``evidently.metrics.ValueDrift`` of an Evidently 0.7 Report.

    >>> import pandas as pd
    >>> ref = pd.DataFrame({"plan": ["a", "b", "a", None] * 50})
    >>> cur = pd.DataFrame({"plan": ["a", "c", "c", "b"] * 25})
    >>> d = evidently_column_drift(ref, cur, {"plan": "auto"}, categorical=["plan"])["plan"]
    >>> d.method, d.p_value, d.drift
    ('chisquare', 0.0, True)
    """
    thresholds = dict(thresholds or {})
    _check_columns(reference, current, methods, thresholds, categorical)
    _disable_telemetry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # import-time deprecation warnings of Evidently's deps
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift

    columns = list(methods)
    numerical = [c for c in columns if c not in categorical]
    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=[c for c in columns if c in categorical]
    )
    metrics = [
        ValueDrift(
            column=c,
            method=None if methods[c] == "auto" else methods[c],
            threshold=thresholds.get(c),
        )
        for c in columns
    ]
    with warnings.catch_warnings():
        # Evidently's internals warn (numpy.core deprecation, chi-square's division by an
        # expected count of 0 for unseen categories); its numbers are what we want
        warnings.simplefilter("ignore")
        snapshot = Report(metrics, include_tests=True).run(
            Dataset.from_pandas(current[columns], data_definition=definition),
            Dataset.from_pandas(reference[columns], data_definition=definition),
        )
    names = _method_names()
    out: dict[str, ColumnDrift] = {}
    for result in snapshot.metric_results.values():
        (test,) = result.tests  # ValueDrift's own "drift" test: FAIL means drift
        params = test.metric_config.params
        method = names[params["method"]]
        score = float(result.value)
        out[params["column"]] = ColumnDrift(
            method=method,
            statistic=None if method in P_VALUE_METHODS else score,
            p_value=score if method in P_VALUE_METHODS else None,
            threshold=float(params["threshold"]),
            drift=test.status.value == "FAIL",
        )
    return {c: out[c] for c in columns}


def render_drift_report(
    reference: Any,
    current: Any,
    path: Path,
    *,
    methods: Mapping[str, str] | None = None,
    categorical: Sequence[str] = (),
    title: str | None = None,
) -> Path:
    """Write Evidently's data drift report (``DataDriftPreset``, every column) as HTML to ``path``.

    ``methods`` maps a column to a method (``"auto"`` or absent: Evidently's choice);
    ``title`` becomes the page title. Returns ``path``. Slow (about a second): run it in a worker.

    >>> import tempfile, pandas as pd
    >>> ref, cur = pd.DataFrame({"tenure": range(100)}), pd.DataFrame({"tenure": range(50, 150)})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = render_drift_report(ref, cur, Path(tmp) / "drift.html", title="churn")
    ...     "tenure" in out.read_text(encoding="utf-8")
    True
    """
    methods = dict(methods or {})
    _check_columns(reference, current, methods, {}, categorical)
    _disable_telemetry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # import-time deprecation warnings of Evidently's deps
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

    columns = list(reference.columns)
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in categorical],
        categorical_columns=[c for c in columns if c in categorical],
    )
    per_column = {c: m for c, m in methods.items() if m != "auto"}
    preset = DataDriftPreset(columns=columns, per_column_method=per_column or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Evidently's internal deprecation/numeric warnings
        snapshot = Report([preset]).run(
            Dataset.from_pandas(current[columns], data_definition=definition),
            Dataset.from_pandas(reference[columns], data_definition=definition),
        )
        html = snapshot.get_html_str(as_iframe=False)
    if title is not None:
        html = _with_title(html, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # write it ourselves: Snapshot.save_html silently writes nothing when given a Path
    path.write_text(html, encoding="utf-8")
    return path


def _disable_telemetry() -> None:
    os.environ.update(_TELEMETRY_OFF)


def _method_names() -> dict[str, str]:
    """Evidently's resolved method (its name, or its display name after ``auto``) -> our name."""
    from evidently.legacy.calculations import stattests as st

    tests = (
        st.ks_stat_test,
        st.psi_stat_test,
        st.wasserstein_stat_test,
        st.jensenshannon_stat_test,
        st.chi_stat_test,
        st.z_stat_test,
    )
    names = {t.name: t.name for t in tests}
    names.update({t.display_name: t.name for t in tests})
    return names


def _check_columns(
    reference: Any,
    current: Any,
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
    categorical: Sequence[str],
) -> None:
    if isinstance(categorical, str):
        raise ValueError(f"categorical: {categorical!r} is a string; pass a sequence of column names")
    allowed = METHODS + ("auto",)
    for column, method in methods.items():
        if method not in allowed:
            raise ValueError(f"methods[{column!r}]: {method!r} is not one of {allowed}")
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in (*methods, *thresholds, *categorical) if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: has no column {missing[0]!r}; it has {list(frame.columns)}")
        if frame.empty:
            raise ValueError(f"{name}: is empty; need at least one row and one column")


def _with_title(html: str, title: str) -> str:
    from html import escape

    tag = f"<title>{escape(title)}</title>"
    head_end = html.find("</head>")
    if head_end < 0:
        return tag + html
    start, end = html.find("<title>"), html.find("</title>")
    if 0 <= start < end < head_end:
        return html[:start] + tag + html[end + len("</title>") :]
    return html[:head_end] + tag + html[head_end:]
