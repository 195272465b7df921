"""The per-batch hot path gives what the plain per-event rules give: label join, feature columns, windows."""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from typing import Any

import numpy as np
import orjson
import pytest
from driftwarden.daemon.io.events import EventRows
from driftwarden.daemon.state.column_types import ColumnTypes
from driftwarden.daemon.state.label_join import LabelJoiner
from driftwarden.detectors.base import Batch, Part
from driftwarden.detectors.windows import MAX_CHUNKS, Windower


def reference_join(events: list[tuple[Any, ...]], max_pending: int) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """The join rules, one event at a time: ``(index, id, is_prediction, label)`` in, ``(index, id, label)`` out."""
    held: dict[bool, OrderedDict[str, tuple[Any, ...]]] = {True: OrderedDict(), False: OrderedDict()}
    expired = {True: 0, False: 0}
    pairs = []
    for index, ident, is_prediction, label in events:
        if is_prediction and label is not None:
            pairs.append((index, ident, label))
            continue
        other = held[not is_prediction].pop(ident, None)
        if other is not None:
            pairs.append((index, ident, label if label is not None else other[3]))
            continue
        mine = held[is_prediction]
        mine.pop(ident, None)
        mine[ident] = (index, ident, is_prediction, label)
        while len(mine) > max_pending:
            mine.popitem(last=False)
            expired[is_prediction] += 1
    return pairs, {"predictions": expired[True], "labels": expired[False]}


@pytest.mark.parametrize("seed", range(5))
def test_batched_join_matches_the_per_event_rules(seed: int) -> None:
    rng = random.Random(seed)
    events = []
    for index in range(600):
        is_prediction = rng.random() < 0.55
        label = rng.choice([0, 1]) if not is_prediction or rng.random() < 0.1 else None
        events.append((index, f"e{rng.randrange(120)}", is_prediction, label))  # repeated ids, both orders
    joiner = LabelJoiner(ttl=1e12, max_pending=7)
    got = []
    start = 0
    while start < len(events):  # batches of random sizes, one event to a hundred
        chunk = events[start : start + rng.randrange(1, 100)]
        start += len(chunk)
        n = len(chunk)
        rows = EventRows(
            "m",
            [e[0] for e in chunk],
            [float(e[0]) for e in chunk],
            [e[2] for e in chunk],
            [e[1] for e in chunk],
            [{"x": float(e[0])} for e in chunk],
            [{}] * n,
            [1 if e[2] else None for e in chunk],
            [None] * n,
            [e[3] for e in chunk],
        )
        pairs = joiner.add_rows(rows)
        got += list(zip(pairs.index, pairs.ids, pairs.label, strict=True))
    want, expired = reference_join(events, max_pending=7)
    assert got == want
    assert joiner.expired == expired
    assert joiner.joined == len(want)


def reference_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    names = sorted({k for row in rows for k in row})
    return {name: [row.get(name) for row in rows] for name in names}


@pytest.mark.parametrize(
    "rows",
    [
        [{"a": 1.0, "c": "x"}, {"c": "y", "a": 2}],  # the same keys in another order
        [{"a": 1.0, "c": "x"}, {"a": 2.0, "d": "z"}],  # the same number of keys, not the same keys
        [{"a": 1.0}, {"a": None, "c": "y"}, {}],  # missing keys and values
        [{"a": True, "c": "3"}, {"a": 2.5, "c": None}],  # booleans as numbers
    ],
)
def test_columns_by_name(rows: list[dict[str, Any]]) -> None:
    types = ColumnTypes({"a": "numeric", "c": "categorical", "d": "categorical"})
    columns = types._columns(rows, "")
    want = reference_columns(rows)
    assert sorted(columns) == sorted(want)
    assert columns["a"].dtype == np.float64
    expected_a = [np.nan if v is None else float(v) for v in want["a"]]
    np.testing.assert_array_equal(columns["a"], np.array(expected_a))
    for name in set(want) - {"a"}:
        assert columns[name].tolist() == [None if v is None else str(v) for v in want[name]]
    assert types.violations == {}


def reference_typed(rows: list[dict[str, Any]], types: dict[str, str]) -> tuple[dict[str, list[Any]], dict[str, int]]:
    """The typing rules one value at a time: a number (booleans too) in a numeric column is a float, anything
    else missing and, unless None, a violation; a category is its text, a non-string a violation."""
    columns, violations = {}, {}
    for name, values in reference_columns(rows).items():
        numeric = types[name] == "numeric"
        ok = [v is None or (type(v) in (int, float, bool) if numeric else type(v) is str) for v in values]
        if not all(ok):
            violations[name] = ok.count(False)
        if numeric:
            columns[name] = [float(v) if type(v) in (int, float, bool) else math.nan for v in values]
        else:
            columns[name] = [None if v is None else str(v) for v in values]
    return columns, violations


@pytest.mark.parametrize("seed", range(8))
def test_columns_of_known_types_follow_the_typing_rules(seed: int) -> None:
    """Batches of the usual layout (every row the same keys, in any order), sometimes with a missing value,
    a boolean, a numeric string, a number among categories, a key swapped for another: the columns (values,
    float64 or objects, sorted by name) and the violations the rules give value by value."""
    rng = random.Random(seed)
    names = ["n0", "n1", "n2", "c0", "c1"] if seed % 2 else ["n0", "c0"]
    types = {n: "numeric" if n[0] == "n" else "categorical" for n in [*names, "other"]}
    odd: list[Any] = [None, True, "2.5", 7, "v", 1.5, -3]
    for _ in range(20):
        rows = []
        for _ in range(rng.randrange(1, 60)):
            row: dict[str, Any] = {n: rng.gauss(0, 1) if n[0] == "n" else rng.choice(["a", "b", "c"]) for n in names}
            if rng.random() < 0.05:
                row[rng.choice(names)] = rng.choice(odd)
            if rng.random() < 0.02:
                row["other"] = row.pop(rng.choice(names))
            rows.append(dict(rng.sample(list(row.items()), len(row))))
        typed = ColumnTypes(types)
        got = typed._columns(rows, "")
        want, violations = reference_typed(rows, types)
        assert list(got) == sorted(want)
        for name, values in want.items():
            assert got[name].dtype == (np.float64 if types[name] == "numeric" else object)
            np.testing.assert_array_equal(got[name], np.array(values, dtype=got[name].dtype))
        assert typed.violations == violations


def test_numeric_text_and_numbers_as_categories_are_counted_violations() -> None:
    # Issue 14, item 2: "2.5" or "inf" passed as numbers silently; a number in a categorical column was never counted.
    types = ColumnTypes({"a": "numeric", "c": "categorical"})
    columns = types._columns([{"a": True, "c": 3}, {"a": "2.5", "c": None}, {"a": " nan ", "c": "x"}], "")
    assert columns["a"].tolist()[0] == 1.0 and np.isnan(columns["a"][1:]).all()
    assert columns["c"].tolist() == ["3", None, "x"]
    assert types.violations == {"a": 2, "c": 1}


def test_type_violations_are_counted_once_per_value() -> None:
    types = ColumnTypes({"a": "numeric"})
    columns = types._columns([{"a": 1.0, "b": "u"}, {"a": "oops", "b": "v"}, {"b": "w", "a": "no"}], "")
    assert columns["a"].tolist()[0] == 1.0 and np.isnan(columns["a"][1:]).all()
    assert types.violations == {"a": 2}


def test_windower_pending_counts_rows_across_merges_and_restores() -> None:
    w = Windower(events=10 * MAX_CHUNKS)
    for i in range(MAX_CHUNKS + 3):  # more single-row chunks than MAX_CHUNKS: they get merged
        w.add(Batch.of(index=[i], features={"x": [float(i)]}))
        assert w.pending == i + 1
    v = Windower(events=10 * MAX_CHUNKS)
    v.restore(w.snapshot())
    assert v.pending == w.pending == MAX_CHUNKS + 3
    done = v.add(Batch.of(index=range(1000, 1000 + 10 * MAX_CHUNKS), features={"x": np.zeros(10 * MAX_CHUNKS)}))
    assert len(done) == 1 and len(done[0]) == 10 * MAX_CHUNKS and v.pending == MAX_CHUNKS + 3


@pytest.mark.parametrize("seed", range(3))
def test_a_window_snapshotted_often_keeps_few_chunks_and_a_lazy_restore_closes_the_same_windows(seed: int) -> None:
    """Snapshots after every small batch (a checkpoint per ~20 events, as with 1,000 models) leave a few
    chunks, not one per snapshot; a window restored from the store's Parts (read only when needed)
    closes the same windows, with the same rows, as the one that never stopped."""
    rng = np.random.default_rng(seed)

    def batch(start: int, n: int) -> Batch:
        return Batch.of(
            index=range(start, start + n),
            features={"x": rng.normal(size=n), "c": rng.choice(["a", "b", None], size=n).tolist()},
        )

    w = Windower(events=2000)
    start = 0
    for _ in range(40):
        n = int(rng.integers(5, 30))
        w.add(batch(start, n))
        start += n
        state = w.snapshot()
    assert len(state["chunks"]) <= 12 and sum(state["rows"]) == w.pending == start
    parts = orjson.loads(orjson.dumps(state))  # what the store keeps: each Part's JSON, read back as a Part
    v = Windower(events=2000)
    v.restore({**parts, "chunks": [Part(Part.content(c)) for c in parts["chunks"]]})
    assert v.pending == w.pending and all(c is None for c in v._chunks), "nothing decoded at restore"
    rest = batch(start, 4000)
    closed_w, closed_v = w.add(rest), v.add(rest)
    assert len(closed_w) == len(closed_v) == 2, "two windows close"
    for a, b in zip(closed_w, closed_v, strict=True):
        assert (a.start, a.end, a.at) == (b.start, b.end, b.at)
        assert a.columns["x"].tolist() == b.columns["x"].tolist() and a.columns["c"].tolist() == b.columns["c"].tolist()
