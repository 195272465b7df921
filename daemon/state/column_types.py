"""Turn rows into the column :class:`~driftwarden.detectors.base.Batch` monitors read, with a stable type per column.

A feature is numeric (float64, NaN for missing) or categorical (strings, None for missing),
decided by its first non-null value and kept from then on (the types are part of the state); a
value of the wrong type is counted as a type violation: in a numeric column it becomes missing
(a numeric string such as ``"inf"`` or ``"1e308"`` too: it is a string), in a categorical one it is
kept as its text. Predictions and labels share one type (``target``), fixed the same way, so that
they are always compared under it: one ``"1"`` or ``true`` among numbers is a violation of that
event, never a retype of its batch. Nothing depends on where batches begin.

>>> s = ColumnTypes()
>>> b = s.batch([0, 1], [0.0, 1.0], [{"x": 1, "c": "a"}, {"x": "inf", "c": 2}], [{}, {}], [1, "1"], [None, None], None)
>>> b.features["x"].tolist(), b.features["c"].tolist(), b.prediction.tolist(), s.violations
([1.0, nan], ['a', '2'], [1.0, nan], {'c': 1, 'x': 1, 'prediction': 1})
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch

NUMERIC, CATEGORICAL = "numeric", "categorical"
MAX_SHARED_STRINGS = 100_000
"""Distinct category strings shared per model before the table starts afresh (bounds its memory)."""
_NUMBER_OR_NONE = frozenset({int, float, type(None)})
_NUMERIC_TYPES = frozenset({int, float, bool, type(None)})
TARGET = "target"
"""The key of the one type that predictions and labels share."""
_STR_OR_NONE = frozenset({str, type(None)})


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float)


class ColumnTypes:
    """The learned type of every feature and attribute of one model."""

    def __init__(self, types: Mapping[str, str] | None = None) -> None:
        self.types: dict[str, str] = dict(types or {})
        self.violations: dict[str, int] = {}
        self._strings: dict[Any, Any] = {}

    def batch(
        self,
        index: Sequence[int],
        ts: Sequence[float],
        features: Sequence[Mapping[str, Any]],
        attributes: Sequence[Mapping[str, Any]],
        prediction: Sequence[Any] | None,
        score: Sequence[float | None] | None,
        label: Sequence[Any] | None,
        lazy: bool = False,
    ) -> Batch:
        """A column batch; with ``lazy`` the feature and attribute columns are built only if a monitor reads them."""
        return Batch(
            index=np.asarray(index, dtype=np.int64),
            ts=np.asarray(ts, dtype=np.float64),
            features=LazyColumns(self, features, "") if lazy else self._columns(features, ""),
            attributes=LazyColumns(self, attributes, "attr:") if lazy else self._columns(attributes, "attr:"),
            prediction=None if prediction is None else self._target(prediction, "prediction"),
            score=None if score is None else np.array(score, dtype=np.float64),
            label=None if label is None else self._target(label, "label"),
        )

    def _columns(self, rows: Sequence[Mapping[str, Any]], prefix: str) -> dict[str, np.ndarray]:
        if not any(rows):
            return {}
        known = self._known_columns(rows, prefix)
        if known is not None:
            return known
        values_of = _by_name(rows)
        out = {}
        for name in sorted(values_of):
            values = values_of[name]
            key = prefix + name
            kind = self.types.get(key)
            if kind is None:
                first = next((v for v in values if v is not None), None)
                if first is None:
                    continue
                kind = NUMERIC if _is_number(first) else CATEGORICAL
                self.types[key] = kind
            out[name] = self._numeric(name, values) if kind == NUMERIC else self._categorical(name, values)
        return out

    def _known_columns(self, rows: Sequence[Mapping[str, Any]], prefix: str) -> dict[str, np.ndarray] | None:
        """The usual batch in few C-level passes, or None: every row has the same keys, each of a known
        type. The numeric values of every row are read in one pass (a multi-key ``itemgetter`` per row)
        and packed as float64 in one call, which also checks them (numbers only: a missing value or a
        string fails it, and those columns go through :meth:`_numeric`); a categorical column is checked
        by joining it (strings only, else :meth:`_categorical`). Column by column (an ``itemgetter`` call and
        a ``type`` call per value) cost ~300 ns a value on rows in cache, this ~120."""
        names = sorted(rows[0])
        kinds = [self.types.get(prefix + name) for name in names]
        if None in kinds or set(map(len, rows)) != {len(names)}:
            return None
        numeric = [name for name, kind in zip(names, kinds, strict=True) if kind == NUMERIC]
        categorical = [name for name, kind in zip(names, kinds, strict=True) if kind != NUMERIC]
        try:  # a row without one of the names (as many keys, others) raises KeyError
            values = _values(rows, numeric)
            labels = _values(rows, categorical)
        except KeyError:
            return None
        out: dict[str, np.ndarray] = {}
        width = len(numeric)
        if numeric:
            table = np.empty((len(rows), width))
            try:
                struct.pack_into(f"{len(values)}d", table.data, 0, *values)
            except (struct.error, OverflowError):  # a missing value or a type violation: column by column
                out.update((name, self._numeric(name, values[j::width])) for j, name in enumerate(numeric))
            else:
                out.update((name, table[:, j].copy()) for j, name in enumerate(numeric))
        width = len(categorical)
        for j, name in enumerate(categorical):
            column = labels[j::width]
            try:
                "".join(column)  # TypeError unless every value is a string
            except TypeError:
                out[name] = self._categorical(name, column)
            else:
                out[name] = _categorical(column, self._strings, checked=True)
        return {name: out[name] for name in names}

    def _count(self, name: str, bad: int) -> None:
        if bad:
            self.violations[name] = self.violations.get(name, 0) + bad

    def _numeric(self, name: str, values: Sequence[Any]) -> np.ndarray:
        out = np.empty(len(values))
        try:  # numbers only (no missing value, no string): packed and checked in one call
            struct.pack_into(f"{len(values)}d", out.data, 0, *values)
            return out
        except (struct.error, OverflowError):
            pass
        if set(map(type, values)) <= _NUMERIC_TYPES:
            return np.fromiter(values, np.float64, len(values))  # None becomes NaN, booleans 0/1
        self._count(name, sum(1 for v in values if v is not None and not _is_number(v)))
        return np.array([v if _is_number(v) else math.nan for v in values], dtype=np.float64)

    def _categorical(self, name: str, values: Sequence[Any]) -> np.ndarray:
        if not set(map(type, values)) <= _STR_OR_NONE:
            self._count(name, sum(1 for v in values if v is not None and not isinstance(v, str)))
        return _categorical(values, self._strings)

    def _target(self, values: Sequence[Any], name: str) -> np.ndarray:
        kind = self.types.get(TARGET)
        if kind is None:
            first = next((v for v in values if v is not None), None)
            if first is None:
                return np.full(len(values), np.nan)
            kind = self.types[TARGET] = NUMERIC if _is_number(first) else CATEGORICAL
        return self._numeric(name, values) if kind == NUMERIC else self._categorical(name, values)

    def snapshot(self) -> dict[str, Any]:
        return {"types": self.types, "violations": self.violations}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.types = dict(state["types"])
        self.violations = dict(state["violations"])


class LazyColumns(Mapping[str, np.ndarray]):
    """Feature columns built on first use: labeled batches often feed only error and performance monitors."""

    def __init__(self, types: ColumnTypes, rows: Sequence[Mapping[str, Any]], prefix: str) -> None:
        self._types, self._rows, self._prefix = types, rows, prefix
        self._built: dict[str, np.ndarray] | None = None

    def _columns(self) -> dict[str, np.ndarray]:
        if self._built is None:
            self._built = self._types._columns(self._rows, self._prefix)
            self._rows = ()
        return self._built

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns())

    def __len__(self) -> int:
        return len(self._columns())

    def __contains__(self, name: object) -> bool:
        return name in self._columns()


def _by_name(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Each key's values, None where a row lacks it. When every row has the same keys (the usual
    case), a column is one C-level pass of ``itemgetter`` over the rows."""
    names = list(rows[0])
    if set(map(len, rows)) == {len(names)}:
        try:
            return {name: list(map(itemgetter(name), rows)) for name in names}
        except KeyError:  # the same number of keys, not the same keys
            pass
    seen: dict[str, None] = {}
    for layout in set(map(tuple, rows)):
        seen.update(dict.fromkeys(layout))
    return {name: [row.get(name) for row in rows] for name in seen}


def _values(rows: Sequence[Mapping[str, Any]], names: list[str]) -> list[Any]:
    """The values of ``names`` row after row (row-major), in one pass over the rows; KeyError if a row lacks one."""
    if len(names) == 1:
        return list(map(itemgetter(names[0]), rows))
    return list(chain.from_iterable(map(itemgetter(*names), rows))) if names else []


def _categorical(
    values: Sequence[Any] | np.ndarray, strings: dict[Any, Any] | None = None, checked: bool = False
) -> np.ndarray:
    """Strings (None for missing) in a fresh object array. With ``strings``, equal values share one
    string object: a window of categories then costs a pointer per value, not a string per value.
    ``checked``: the values are known to be strings or None."""
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if not checked and not set(map(type, items)) <= _STR_OR_NONE:
        items = [None if v is None else (v if isinstance(v, str) else str(v)) for v in items]
    if strings is not None:
        if len(strings) > MAX_SHARED_STRINGS:
            strings.clear()
        items = list(map(strings.setdefault, items, items))
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
