"""Every registered monitor kind, checked the same way.

The suite is generated from ``MONITORS``: a kind without an entry in ``PARAMS`` fails
``test_every_kind_has_test_parameters``, so adding a kind means giving it a small configuration
here, and then it is checked automatically: clone, snapshot/restore through JSON mid-stream,
determinism, batch-size invariance, untouched inputs, empty batches, repr, JSON-able signals.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pytest
from driftwarden.detectors.base import Batch, Monitor, Signal
from driftwarden.detectors.registry import MONITORS, build

WINDOW = 100

PARAMS: dict[str, dict[str, Any]] = {
    "adwin": {"series": "x"},
    "page_hinkley": {"series": "x", "warmup": 100},
    "kswin": {"series": "x"},
    "concept_drift": {},
    "ddm": {"warm_start": 30, "memory": 300},  # shorter than this stream: its re-basing is checked too
    "eddm": {"warm_start": 30},  # the default (300 errors) is longer than this stream
    "hddm_a": {},
    "hddm_w": {"lambda_val": 0.05},  # River's weight: this stream's change is short
    "cusum": {"series": "x", "warmup": 100},
    "ewma": {"series": "x", "warmup": 100},
    "feature_drift": {"window_events": WINDOW},
    "prediction_drift": {"window_events": WINDOW},
    "performance": {"metric": "roc_auc", "window_events": WINDOW},
    "estimated_performance": {"metric": "f1", "window_events": WINDOW},
    "domain_classifier": {"window_events": WINDOW, "calibration_rounds": 3},
    "anomaly_rate": {"window_events": WINDOW, "n_trees": 3, "height": 4, "tree_window": 50},
    "data_quality": {"window_events": WINDOW},
    "demographic_parity": {"attribute": "g", "window_events": WINDOW},
    "equal_opportunity": {"attribute": "g", "window_events": WINDOW},
    "equalized_odds": {"attribute": "g", "window_events": WINDOW},
    "predictive_parity": {"attribute": "g", "window_events": WINDOW},
    "group_performance": {"attribute": "g", "window_events": WINDOW},
}

N = 600
CHANGE = 300
CHUNK = 50


def stream(labeled: bool, seed: int = 11) -> Batch:
    """A seeded stream whose features, outputs and errors all change at event ``CHANGE``."""
    rng = np.random.default_rng(seed)
    after = np.arange(N) >= CHANGE
    x = rng.normal(0, 1, N) + 1.5 * after
    y = rng.normal(0, 1, N) * np.where(after, 2.0, 1.0)
    y[rng.random(N) < np.where(after, 0.2, 0.02)] = np.nan
    c = np.array(["a", "b", "c"], dtype=object)[rng.choice(3, N)]
    c[after & (rng.random(N) < 0.3)] = "new"
    g = np.array(["u", "v"], dtype=object)[rng.choice(2, N, p=[0.6, 0.4])]
    label = (rng.random(N) < 0.5).astype(float)
    score = np.clip(np.where(label > 0, rng.beta(5, 2, N), rng.beta(2, 5, N)), 0.001, 0.999)
    score = np.where(after, rng.random(N), score)
    prediction = (score >= 0.5).astype(float)
    return Batch.of(
        index=range(N),
        ts=np.arange(N) * 2.0,
        features={"x": x, "y": y, "c": c},
        attributes={"g": g},
        prediction=prediction,
        score=score,
        label=label if labeled else None,
    )


def chunks(batch: Batch, size: int = CHUNK) -> list[Batch]:
    return [batch.take(np.arange(i, min(i + size, len(batch)))) for i in range(0, len(batch), size)]


def key(signals: list[Signal]) -> bytes:
    return orjson.dumps([s.as_dict() for s in signals], option=orjson.OPT_SERIALIZE_NUMPY)


def run(monitor: Monitor, batches: list[Batch]) -> list[Signal]:
    out: list[Signal] = []
    for b in batches:
        out += monitor.update(b)
    return out


def fresh(kind: str) -> Monitor:
    return build(kind, PARAMS[kind])


def data_for(monitor: Monitor) -> Batch:
    return stream(labeled=monitor.stream == "labeled")


KINDS = sorted(MONITORS)


def test_every_kind_has_test_parameters() -> None:
    missing = sorted(set(MONITORS) - set(PARAMS))
    assert not missing, f"add a small configuration to PARAMS for: {missing}"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param not in PARAMS:
        pytest.fail(f"{request.param}: no entry in PARAMS")
    return request.param


def test_signals_are_json_and_ordered(kind: str) -> None:
    m = fresh(kind)
    signals = run(m, chunks(data_for(m)))
    assert signals, f"{kind}: the conformance stream must make it signal, or the other checks are vacuous"
    assert all(isinstance(s, Signal) and s.kind == kind for s in signals)
    ats = [s.at for s in signals]
    assert ats == sorted(ats) and 0 <= ats[0] and ats[-1] < N
    orjson.loads(key(signals))


def test_clone_is_fresh_with_equal_params(kind: str) -> None:
    m = fresh(kind)
    batches = chunks(data_for(m))
    expected = run(fresh(kind), batches)
    run(m, batches[: len(batches) // 2])
    c = m.clone()
    assert type(c) is type(m) and c is not m
    assert c.params() == m.params() == fresh(kind).params()
    assert key(run(c, batches)) == key(expected)


def test_snapshot_json_restore_mid_stream(kind: str) -> None:
    m = fresh(kind)
    batches = chunks(data_for(m))
    half = len(batches) // 2
    run(m, batches[:half])
    state = orjson.loads(orjson.dumps(m.snapshot()))
    resumed = fresh(kind)
    resumed.restore(state)
    later = run(m, batches[half:])
    assert later, f"{kind}: no signal after the snapshot point; the check would be vacuous"
    assert key(run(resumed, batches[half:])) == key(later)


def test_deterministic_and_batch_size_invariant(kind: str) -> None:
    m = fresh(kind)
    data = data_for(m)
    first = key(run(m, chunks(data)))
    assert key(run(fresh(kind), chunks(data))) == first
    assert key(run(fresh(kind), [data])) == first
    assert key(run(fresh(kind), chunks(data, 37))) == first


def _copy(batch: Batch) -> dict[str, Any]:
    cols: dict[str, Any] = {
        "index": batch.index,
        "ts": batch.ts,
        "prediction": batch.prediction,
        "score": batch.score,
        "label": batch.label,
    }
    cols.update({f"f:{k}": v for k, v in batch.features.items()})
    cols.update({f"a:{k}": v for k, v in batch.attributes.items()})
    return {k: None if v is None else v.copy() for k, v in cols.items()}


def test_inputs_are_not_mutated(kind: str) -> None:
    m = fresh(kind)
    batches = chunks(data_for(m))
    before = [_copy(b) for b in batches]
    run(m, batches)
    for b, saved in zip(batches, before, strict=True):
        for name, value in _copy(b).items():
            old = saved[name]
            if value is None:
                assert old is None
            elif value.dtype == object:
                assert value.tolist() == old.tolist(), name
            else:
                assert np.array_equal(value, old, equal_nan=True), name


def test_empty_batch_returns_nothing(kind: str) -> None:
    m = fresh(kind)
    data = data_for(m)
    empty = data.take(np.arange(0))
    assert m.update(empty) == []
    run(m, chunks(data)[:3])
    assert m.update(empty) == []


def test_repr(kind: str) -> None:
    text = repr(fresh(kind))
    assert text.startswith(type(fresh(kind)).__name__ + "(")


BASE64_LIKE = re.compile(r"^(?![0-9a-f]+$)[A-Za-z0-9+/]{16,}={0,2}$")
"""Base64 of 12 bytes or more (a hex digest is not)."""


def plain_values(value: Any, where: str = "state") -> list[str]:
    """Where ``value`` holds anything but JSON's numbers, strings, lists and maps, or a string that
    looks like encoded bytes (base64 of 12 bytes or more)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in plain_values(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in plain_values(v, f"{where}[{i}]")]
    if isinstance(value, str):
        return [f"{where}: {value[:40]!r}"] if BASE64_LIKE.match(value) else []
    if value is None or isinstance(value, bool | int | float):
        return []
    return [f"{where}: {type(value).__name__}"]


def test_snapshot_is_plain_data(kind: str) -> None:
    m = fresh(kind)
    run(m, chunks(data_for(m)))
    problems = plain_values(orjson.loads(orjson.dumps(m.snapshot())))
    assert problems == []
