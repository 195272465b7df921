"""Issue 14 item 13: the multivariate monitors' River models are saved as plain data, never pickled.

A restart (snapshot → JSON → restore into a fresh monitor) must give the same signals as the
uninterrupted run, window after window; a state written by an older version (a base64 pickle) is
refused without being unpickled.
"""

from __future__ import annotations

import base64
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from driftwarden.detectors.base import Batch, Monitor
from driftwarden.detectors.multivariate import AnomalyRate, DomainClassifier


def _stream(n: int, seed: int) -> list[Batch]:
    """Numeric and categorical features whose distribution moves half-way, in batches of 97."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 0.8 * a + 0.6 * rng.normal(size=n)
    b[n // 2 :] = -b[n // 2 :] + 0.7  # the correlation flips and b moves
    a[rng.random(n) < 0.05] = np.nan
    c = np.array(["x", "y", "z"], dtype=object)[rng.choice(3, n)]
    full = Batch.of(index=range(n), ts=np.arange(n, dtype=float), features={"a": a, "b": b, "c": c})
    return [full.take(np.arange(i, min(i + 97, n))) for i in range(0, n, 97)]


def _signals(m: Monitor, batches: list[Batch]) -> bytes:
    return orjson.dumps([s.as_dict() for b in batches for s in m.update(b)], option=orjson.OPT_SERIALIZE_NUMPY)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DomainClassifier(window_events=200, calibration_rounds=3),
        lambda: AnomalyRate(window_events=200, n_trees=4, height=5, tree_window=60),
    ],
    ids=["domain_classifier", "anomaly_rate"],
)
@pytest.mark.parametrize("stop", [1, 5, 11])
def test_restarts_give_the_uninterrupted_results(make: Any, stop: int) -> None:
    batches = _stream(2400, seed=stop)
    whole = make()
    expected = _signals(whole, batches)
    assert b'"drift":true' in expected  # the flip is seen: the comparison is not between two empty runs
    first = make()
    before = _signals(first, batches[:stop])
    resumed = make()
    resumed.restore(orjson.loads(orjson.dumps(first.snapshot())))
    after = _signals(resumed, batches[stop:])
    assert orjson.loads(before) + orjson.loads(after) == orjson.loads(expected)


class _Payload:
    """Unpickling this writes a file: what a hostile state would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "pwned"))


@pytest.mark.parametrize("kind", ["domain_classifier", "anomaly_rate"])
def test_a_pickled_state_of_an_older_version_is_refused_not_unpickled(kind: str, tmp_path: Path) -> None:
    m: Monitor = (
        DomainClassifier(window_events=100, calibration_rounds=3)
        if kind == "domain_classifier"
        else AnomalyRate(window_events=100, n_trees=2, height=3, tree_window=20)
    )
    for b in _stream(400, seed=0):
        m.update(b)
    state = orjson.loads(orjson.dumps(m.snapshot()))
    marker = tmp_path / "ran"
    state["model" if kind == "domain_classifier" else "trees"] = base64.b64encode(
        pickle.dumps(_Payload(marker))
    ).decode()
    with pytest.raises(ValueError, match="pickled object of an older driftwarden"):
        type(m)(**m.params()).restore(state)
    assert not marker.exists()


def test_a_pickled_streaming_detector_state_is_refused_not_unpickled(tmp_path: Path) -> None:
    from driftwarden.detectors.streaming import Adwin

    m = Adwin(series="x")
    m.update(Batch.of(index=range(200), features={"x": np.arange(200.0) % 5}))
    state = orjson.loads(orjson.dumps(m.snapshot()))
    assert state["river"][0]["class"] == "river.drift.adwin:ADWIN"  # plain data, River's own class named
    marker = tmp_path / "ran"
    state["river"] = [base64.b64encode(pickle.dumps(_Payload(marker))).decode()]
    with pytest.raises(ValueError, match="pickled object of an older driftwarden"):
        Adwin(series="x").restore(state)
    state["river"] = [{"class": "builtins:eval", "attrs": {}}]  # only River's detector classes are built
    with pytest.raises(ValueError, match="not allowed"):
        Adwin(series="x").restore(state)
    assert not marker.exists()
