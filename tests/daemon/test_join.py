"""Labels join their predictions by id in either order; unmatched halves expire after the TTL and are counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from driftwarden.daemon.io.events import Event
from driftwarden.daemon.state.label_join import LabelJoiner


def pred(i: str, index: int, ts: float) -> Event:
    return Event("m", i, index, ts, "prediction", features={"x": 1.0}, prediction=1)


def label(i: str, index: int, ts: float, y: int = 0) -> Event:
    return Event("m", i, index, ts, "label", label=y)


def test_label_after_prediction_and_before_it() -> None:
    j = LabelJoiner(ttl=100)
    assert j.add(pred("a", 0, 0.0)) is None
    pair = j.add(label("a", 3, 5.0, 1))
    assert pair is not None and (pair.index, pair.ts, pair.prediction, pair.label, pair.features) == (
        3,
        5.0,
        1,
        1,
        {"x": 1.0},
    )
    assert j.add(label("b", 4, 6.0)) is None
    pair = j.add(pred("b", 9, 7.0))
    assert pair is not None and (pair.index, pair.label) == (9, 0)
    assert j.joined == 2 and j.pending == {"predictions": 0, "labels": 0}


def test_ttl_expires_and_counts_both_halves() -> None:
    j = LabelJoiner(ttl=60)
    j.add(pred("a", 0, 0.0))
    j.add(label("z", 1, 10.0))
    j.add(pred("b", 2, 50.0))
    j.expire(now=65.0)
    assert j.expired == {"predictions": 1, "labels": 0}
    j.expire(now=71.0)
    assert j.expired == {"predictions": 1, "labels": 1}
    assert j.add(label("a", 3, 72.0)) is None  # its prediction expired: the label now waits
    assert j.pending == {"predictions": 1, "labels": 1}


def test_max_pending_bounds_memory() -> None:
    j = LabelJoiner(ttl=1e9, max_pending=3)
    for i in range(5):
        j.add(pred(str(i), i, float(i)))
    assert j.pending["predictions"] == 3 and j.expired["predictions"] == 2


def test_snapshot_restore_keeps_pending_halves() -> None:
    j = LabelJoiner(ttl=100)
    j.add(pred("a", 0, 0.0))
    k = LabelJoiner(ttl=100)
    k.restore(j.snapshot())
    pair = k.add(label("a", 1, 1.0, 1))
    assert pair is not None and pair.label == 1 and k.joined == 1


@pytest.mark.parametrize("slack", [10_000, 0])
def test_pending_deltas_keep_the_stores_copy_equal_to_the_pending_halves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: int
) -> None:
    """Random traffic (repeated ids, labels first, TTL expiry, eviction), a checkpoint every few
    batches into the real SQLite store: the store's halves, in order, always equal the joiner's,
    and a joiner restored from the store joins the rest of the traffic as the original does.
    With no slack the store's log is rewritten whenever it holds twice the live halves."""
    import random

    import driftwarden.daemon.state.label_join
    from driftwarden.daemon.io.events import EventRows
    from driftwarden.daemon.state.store import Store

    monkeypatch.setattr(driftwarden.daemon.state.label_join, "LOG_SLACK", slack)

    rng = random.Random(5)
    store = Store(tmp_path / "state.db")
    joiner = LabelJoiner(ttl=400.0, max_pending=40)
    index = 0

    def batch() -> EventRows:
        nonlocal index
        rows: list[tuple] = []
        for _ in range(rng.randint(0, 12)):
            ident = f"e{rng.randint(0, 60)}"
            is_prediction = rng.random() < 0.6
            rows.append(
                (
                    index,
                    float(index),
                    is_prediction,
                    ident,
                    {"x": float(index)} if is_prediction else {},
                    {},
                    1 if is_prediction else None,
                    None,
                    None if is_prediction else index % 2,
                )
            )
            index += 1
        return (
            EventRows("m", *(list(c) for c in zip(*rows, strict=True)))
            if rows
            else EventRows("m", *([] for _ in range(9)))
        )

    replaces = 0
    for step in range(300):
        joiner.add_rows(batch())
        joiner.expire(now=float(index))
        if step % 3 == 2:
            delta = joiner.pending_delta()
            replaces += delta.replace
            store.checkpoint({}, index, {}, pending={"m": delta})
            joiner.written(delta)
            held = store.pending("m")
            assert held["predictions"] == list(joiner._predictions.values())
            assert held["labels"] == list(joiner._labels.values())
    assert replaces == 1 if slack else replaces > 10  # the first write, or also every rewrite of the log
    copy = LabelJoiner(ttl=400.0, max_pending=40)
    copy.restore(joiner.snapshot(pending=False))
    copy.restore_pending(**store.pending("m"))
    for _ in range(50):
        b = batch()
        assert copy.add_rows(b) == joiner.add_rows(b)
        now = float(index)
        joiner.expire(now)
        copy.expire(now)
    assert copy.pending == joiner.pending and copy.expired == joiner.expired


def test_deltas_while_no_half_goes_then_some_go_keep_the_stores_copy_equal(tmp_path: Path) -> None:
    """Predictions whose labels have not come (no half goes: the delta's short way), then labels, a duplicate
    and an expiry (halves go): after every checkpoint the store's halves, in order, are the joiner's."""
    from driftwarden.daemon.io.events import EventRows
    from driftwarden.daemon.state.store import Store

    store = Store(tmp_path / "state.db")
    joiner = LabelJoiner(ttl=1_000.0)

    def rows(events: list[tuple[str, bool, int]]) -> EventRows:  # (id, is a prediction, index)
        return EventRows(
            "m",
            [i for _, _, i in events],
            [float(i) for _, _, i in events],
            [p for _, p, _ in events],
            [e for e, _, _ in events],
            [{"x": float(i)} if p else {} for _, p, i in events],
            [{} for _ in events],
            [1 if p else None for _, p, _ in events],
            [None for _ in events],
            [None if p else 0 for _, p, _ in events],
        )

    steps = [
        [(f"p{i}", True, i) for i in range(0, 5)],
        [(f"p{i}", True, i) for i in range(5, 9)],  # nothing went: the short way
        [("p2", True, 9), ("p10", True, 10)],  # a duplicate moves p2 to the end: still nothing went
        [("p0", False, 11), ("p7", False, 12), ("p10", False, 13)],  # labels: three predictions go
        [("p20", True, 1_500)],  # and the TTL takes the old ones below
    ]
    for i, step in enumerate(steps):
        joiner.add_rows(rows(step))
        if i == len(steps) - 1:
            joiner.expire(now=1_500.0)
        delta = joiner.pending_delta()
        store.checkpoint({}, i, {}, pending={"m": delta})
        joiner.written(delta)
        held = store.pending("m")
        assert held["predictions"] == list(joiner._predictions.values()), i
    assert [h[1] for h in store.pending("m")["predictions"]] == ["p20"]
    store.close()
