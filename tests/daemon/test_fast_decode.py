"""The columnar fast path (daemon/columnar.py) and the per-record path give the same events,
dead letters, signals and decisions; a batch the fast path cannot take falls back whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.batch_decoder import decode_batch
from driftwarden.daemon.io.events import decode
from driftwarden.daemon.io.sources import FileSource, Record
from driftwarden.daemon.runtime import Daemon
from driftwarden.policies.loader import load_policy

from tests.golden.stream import POLICY, write_stream

ODD = [
    b'{"model": "g", "id": 1, "features": [1]}',  # nested value: dead letter
    b"{oops",  # not JSON
    b'{"model": "g", "id": "iso", "ts": "2026-11-27T17:00:00.123Z", "features": {"x0": 1}, "prediction": 1}',
    b'{"model": "g", "id": "map", "features": {"x0": 2}, "prediction": 1, "score": {"1": 0.7, "0": 0.3}}',
    b'{"model": "g", "id": "iso", "label": 1, "attributes": {"region": "eu"}}',
    b'{"model": "", "id": "x"}',
    b"[1, 2]",
    b'{"model": "g", "id": "empty"}',
    b'{"model": "g", "id": "brace", "features": {"c0": "{[", "x0": 0.5}, "prediction": 0}',  # exact nesting check
    b'{"model": "g", "id": 7, "ts": 5, "features": {"x0": true, "c0": null}, "prediction": "yes", "score": 1}',
]


def _as_tuples(decoded: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    events = [
        (e.model, e.id, e.index, e.ts, e.kind, e.features, e.attributes, e.prediction, e.score, e.label)
        for rows in decoded.by_model.values()
        for e in rows
    ]
    return sorted(events, key=lambda e: e[2]), [(d.index, d.offset, d.reason, d.raw) for d in decoded.dead]


@pytest.mark.parametrize("odd", [None, *ODD])
def test_fast_and_per_record_decoding_agree(tmp_path: Path, odd: bytes | None) -> None:
    lines = write_stream(tmp_path / "events.jsonl", n=300, drift_at=150).read_bytes().splitlines()
    if odd is not None:
        lines.insert(123, odd)
    records = [Record(v, "p", i) for i, v in enumerate(lines)]
    fast = decode_batch(records, first_index=5, arrival=9.0)
    slow = decode_batch(records, first_index=5, arrival=9.0, fast=False)
    assert not slow.fast
    if slow.dead or (odd is not None and b'"score": {' in odd):  # these batches take the per-record path
        assert not fast.fast
    else:
        assert fast.fast
    assert _as_tuples(fast) == _as_tuples(slow)
    events, dead = decode(records, first_index=5, arrival=9.0)
    assert fast.events == len(events) and [d.reason for d in fast.dead] == [d.reason for d in dead]


SHAPES = [
    b'{"model": "a", "id": 1, "ts": 5, "features": {"x": 1.5, "c": "v"}, "prediction": 1, "score": 0.25}',
    b'{"model": "b", "id": "l1", "label": 0}',
    b'{"model": "a", "id": 2, "ts": 6.5, "features": {"x": 2}, "attributes": {"team": "t"}, "prediction": 0}',
    b'{"model": "c", "id": "p", "prediction": "yes"}',
    b'{"model": "b", "id": "s", "ts": "2026-11-27T17:00:00Z", "score": 1}',
    b'{"model": "a", "id": "n", "features": null, "attributes": null, "label": "x"}',
    # a field named with an escape (no byte search may miss it), field names as values
    b'{"model": "c", "id": "e", "features": {"x": 1}, "\\u0061ttributes": {"team": "u"}, "prediction": 1}',
    b'{"model": "a", "id": "v", "features": {"c": "attributes", "d": "\\"label\\""}, "prediction": 1}',
]


@pytest.mark.parametrize("shapes", [[s] for s in SHAPES] + [SHAPES[:6], SHAPES, SHAPES[1::2], SHAPES[:2]])
def test_batches_of_several_models_and_shapes_decode_alike_on_both_paths(shapes: list[bytes]) -> None:
    values = [v for _ in range(3) for v in shapes]
    records = [Record(v, "p", i) for i, v in enumerate(values)]
    fast = decode_batch(records, first_index=2, arrival=9.0)
    slow = decode_batch(records, first_index=2, arrival=9.0, fast=False)
    assert fast.fast and not fast.dead
    assert _as_tuples(fast) == _as_tuples(slow)
    assert list(fast.by_model) == list(slow.by_model)  # models in order of first appearance
    for rows in fast.by_model.values():  # no event shares a mapping with another (each may be changed alone)
        assert len({id(m) for m in rows.features + rows.attributes}) == 2 * len(rows)
    if SHAPES[6] in shapes:
        assert {"team": "u"} in fast.by_model["c"].attributes


def _replay(events: Path, state: Path, fast: bool, batch_size: int) -> list[bytes]:
    out: list[bytes] = []
    daemon = Daemon(
        Settings(state_dir=state, batch_size=batch_size, execute=False),
        FileSource(events),
        [load_policy(POLICY)],
        listener=lambda o: out.append(orjson.dumps(o, default=str)),
    )
    daemon.fast_decode = fast
    stats = daemon.run()
    daemon.close()
    out.append(orjson.dumps(stats.summary() | {"seconds": 0}))
    return out


def test_fast_path_and_fallback_give_identical_signals_and_decisions(tmp_path: Path) -> None:
    events = write_stream(tmp_path / "events.jsonl", n=8_000, drift_at=4_000)
    lines = events.read_bytes().splitlines()
    for at, odd in zip(range(500, 8_000, 700), ODD, strict=False):  # some batches fall back, most do not
        lines.insert(at, odd)
    events.write_bytes(b"\n".join(lines) + b"\n")
    fast = _replay(events, tmp_path / "fast", fast=True, batch_size=500)
    slow = _replay(events, tmp_path / "slow", fast=False, batch_size=500)
    assert any(b'"dead_letter"' in line for line in fast)
    assert any(b'"decision"' in line for line in fast)
    assert fast == slow
