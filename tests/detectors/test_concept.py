"""concept_drift's combination rule: any member, alarms the same way within ``merge`` values folded, and
after a fall in the error the members other than ADWIN start over; the rule splits batches, so batch size
and restarts must not matter."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from driftwarden.detectors.base import Batch
from driftwarden.detectors.concept import ConceptDrift
from river.drift import ADWIN
from river.drift.binary import HDDMA

from tests.detectors.test_references import BernsteinHDDMA  # River's HDDMA with Bernstein's test of the rise


def _errors(seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = np.r_[np.full(1500, 0.3), np.full(1500, 0.1), np.full(1500, 0.3), np.full(1500, 0.05)]
    return (rng.random(len(rates)) < rates).astype(float)


E = _errors()


def _batches(e: np.ndarray, size: int, start: int = 0) -> list[Batch]:
    return [
        Batch.of(
            index=range(i, min(i + size, len(e))), prediction=np.zeros(min(size, len(e) - i)), label=e[i : i + size]
        )
        for i in range(start, len(e), size)
    ]


def _signals(m: ConceptDrift, batches: list[Batch]) -> list[tuple[int, bool, str, list[str]]]:
    return [(s.at, s.drift, s.details["direction"], s.details["members"]) for b in batches for s in m.update(b)]


def reference(
    e: np.ndarray, delta: float = 0.05, confidence: float = 0.0001, merge: int = 150
) -> list[tuple[int, bool, str]]:
    """The rule written out on River's detectors, value by value."""

    def fresh() -> tuple[HDDMA, HDDMA]:
        return BernsteinHDDMA(drift_confidence=confidence), BernsteinHDDMA(drift_confidence=confidence)

    adwin, (up, down) = ADWIN(delta=delta), fresh()
    out, last = [], {}
    for i, v in enumerate(e.tolist()):
        before = adwin.estimation
        adwin.update(v)
        up.update(v)
        down.update(1.0 - v)
        way = None
        if adwin.drift_detected:
            way = "up" if adwin.estimation > before else "down"
        if up.drift_detected:
            way = "up"
        if way is None and down.drift_detected:
            way = "down"
        if way is not None:
            if way not in last or i - last[way] > merge:
                out.append((i, way == "up", way))
                last[way] = i
            if way == "down":
                up, down = fresh()
    return out


@pytest.mark.parametrize("merge", [150, 0])
def test_the_rule_is_rivers_detectors_restarted_after_a_fall(merge: int) -> None:
    expected = reference(E, merge=merge)
    assert any(not drift for _, drift, _ in expected) and any(drift for _, drift, _ in expected)
    got = _signals(ConceptDrift(merge=merge), _batches(E, 1000))
    assert [(at, drift, way) for at, drift, way, _ in got] == expected
    if merge == 0:  # the merge folds something here: the members' alarms on one rise
        assert len(expected) > len(reference(E))


@pytest.mark.parametrize("size", [97, 6000])
def test_batch_size_does_not_matter(size: int) -> None:
    whole = _signals(ConceptDrift(), _batches(E, 1000))
    assert _signals(ConceptDrift(), _batches(E, size)) == whole


def test_resumes_from_a_json_snapshot_taken_between_a_fall_and_a_rise() -> None:
    whole = _signals(ConceptDrift(), _batches(E, 500))
    first = ConceptDrift()
    head = _signals(first, _batches(E[:2500], 500))
    state = orjson.loads(orjson.dumps(first.snapshot()))
    second = ConceptDrift()
    second.restore(state)
    tail = [
        (s.at, s.drift, s.details["direction"], s.details["members"])
        for b in _batches(E, 500, start=2500)
        for s in second.update(b)
    ]
    assert head + tail == whole


def test_missing_values_are_skipped() -> None:
    e = E.copy()
    gaps = np.random.default_rng(1).random(len(e)) < 0.1
    e[gaps] = np.nan
    m = ConceptDrift(series="x", direction="up")
    got = _signals(
        m, [Batch.of(index=range(i, i + 1000), features={"x": e[i : i + 1000]}) for i in range(0, len(e), 1000)]
    )
    kept = np.flatnonzero(~gaps)
    expected = [(int(kept[i]), drift, way) for i, drift, way in reference(E[kept])]
    assert [(at, drift, way) for at, drift, way, _ in got] == expected


def test_restart_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match="restart: 'yes' is not allowed"):
        ConceptDrift(restart="yes")  # type: ignore[arg-type]
