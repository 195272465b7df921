"""Labels join their predictions by id in either order; unmatched halves expire after the TTL and are counted."""

from __future__ import annotations

from daemon.events import Event
from daemon.join import LabelJoiner


def pred(i: str, index: int, ts: float) -> Event:
    return Event("m", i, index, ts, "prediction", features={"x": 1.0}, prediction=1)


def label(i: str, index: int, ts: float, y: int = 0) -> Event:
    return Event("m", i, index, ts, "label", label=y)


def test_label_after_prediction_and_before_it() -> None:
    j = LabelJoiner(ttl=100)
    assert j.add(pred("a", 0, 0.0)) is None
    pair = j.add(label("a", 3, 5.0, 1))
    assert pair is not None and (pair.index, pair.ts, pair.prediction, pair.label, pair.features) == (3, 5.0, 1, 1, {"x": 1.0})
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
