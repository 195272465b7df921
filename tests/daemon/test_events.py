"""Decoding the wire format: good events become columns, bad ones dead letters with their reason."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.events import decode
from driftwarden.daemon.io.sources import FileSource, MemorySource, Record
from driftwarden.daemon.runtime import Daemon
from driftwarden.policies.loader import load_policy

BAD = [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "an event is a JSON object, got list"),
    (b'{"id": "x", "prediction": 1}', "missing required field 'model'"),
    (b'{"model": "m", "prediction": 1}', "missing required field 'id'"),
    (b'{"model": "", "id": "x", "prediction": 1}', "'model' must be a non-empty string"),
    (b'{"model": "m", "id": true, "prediction": 1}', "'id' must be a string or an integer"),
    (b'{"model": "m", "id": "x", "ts": "yesterday", "prediction": 1}', "'ts' is not ISO-8601: 'yesterday'"),
    (b'{"model": "m", "id": "x", "features": [1, 2]}', "'features' must be an object, got list"),
    (b'{"model": "m", "id": "x", "features": {"a": {"b": 1}}}', "features.a must be a scalar"),
    (b'{"model": "m", "id": "x", "prediction": [1]}', "'prediction' must be a scalar"),
    (b'{"model": "m", "id": "x", "score": "high"}', "'score' must be a number or a class"),
    (b'{"model": "m", "id": "x", "score": {"a": 0.2}}', "'score' map has no positive class"),
    (b'{"model": "m", "id": "x"}', "an event needs features, a prediction, a score or a label"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_bad_records_become_dead_letters_with_their_reason(raw: bytes, reason: str) -> None:
    events, dead = decode([Record(raw, "p", 41)], first_index=7, arrival=0.0)
    assert events == []
    assert len(dead) == 1
    assert dead[0].reason.startswith(reason)
    assert (dead[0].index, dead[0].offset, dead[0].raw) == (7, 41, raw)


def test_good_event_fields() -> None:
    raw = orjson.dumps(
        {
            "model": "churn",
            "id": "p-1",
            "ts": "2026-11-27T17:00:00.123Z",
            "features": {"tenure": 14, "plan": "pro"},
            "prediction": 1,
            "score": {"0": 0.2, "1": 0.8},
            "attributes": {"gender": "f"},
            "label": None,
        }
    )
    (e,), dead = decode([Record(raw, "p", 0)], first_index=0, arrival=5.0)
    assert dead == []
    assert (e.model, e.id, e.kind, e.score, e.features, e.attributes) == (
        "churn",
        "p-1",
        "prediction",
        0.8,
        {"tenure": 14, "plan": "pro"},
        {"gender": "f"},
    )
    assert e.ts == pytest.approx(1795798800.123)
    (late,), _ = decode([Record(b'{"model": "churn", "id": 5, "label": 0}', "p", 1)], first_index=1, arrival=5.0)
    assert (late.kind, late.id, late.ts, late.label) == ("label", "5", 5.0, 0)


def test_daemon_writes_dead_letters_and_carries_on(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n")
    good = [orjson.dumps({"model": "m", "id": i, "prediction": 1, "label": i % 2}) for i in range(10)]
    records = good[:5] + [b"\xff\xfe garbage", b'{"model": "m"}'] + good[5:]
    daemon = Daemon(Settings(state_dir=tmp_path / "s"), MemorySource(records), [load_policy(policy)])
    stats = daemon.run()
    daemon.close()
    assert (stats.records, stats.events, stats.dead_letters, stats.labels_joined) == (12, 10, 2, 10)
    letters = [orjson.loads(line) for line in (tmp_path / "s" / "dead_letters.jsonl").read_bytes().splitlines()]
    assert [(d["index"], d["reason"].split(":")[0]) for d in letters] == [
        (5, "not JSON"),
        (6, "missing required field 'id'"),
    ]
    # Item 5 of issue 14: the raw bytes are kept exactly (base64, as they are not UTF-8), with a reason code.
    assert (letters[0]["raw_encoding"], base64.b64decode(letters[0]["raw"])) == ("base64", b"\xff\xfe garbage")
    assert ("raw_encoding" not in letters[1], letters[1]["raw"]) == (True, '{"model": "m"}')
    assert [d["code"] for d in letters] == ["not_json", "missing_field"]


def test_csv_and_parquet_sources_read_the_same_events(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "model": ["m"] * 3,
            "id": ["a", "b", "c"],
            "ts": [1.0, 2.0, 3.0],
            "x": [0.5, None, 2.0],
            "plan": ["pro", "free", None],
            "prediction": [1, 0, 1],
            "attr.gender": ["f", "m", "f"],
        }
    )
    frame.to_csv(tmp_path / "e.csv", index=False)
    frame.to_parquet(tmp_path / "e.parquet", index=False)
    for name in ("e.csv", "e.parquet"):
        src = FileSource(tmp_path / name)
        events, dead = decode(src.poll(10, 0), 0, 0.0)
        assert dead == [] and src.exhausted
        assert [e.features for e in events] == [
            {"x": 0.5, "plan": "pro"},
            {"x": None, "plan": "free"},
            {"x": 2.0, "plan": None},
        ]
        assert [e.attributes["gender"] for e in events] == ["f", "m", "f"]
        assert [e.prediction for e in events] == [1, 0, 1]


def test_file_source_resumes_at_a_position(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(f'{{"model": "m", "id": {i}, "prediction": 1}}' for i in range(10)) + "\n")
    src = FileSource(path)
    assert [r.offset for r in src.poll(4, 0)] == [0, 1, 2, 3]
    src.seek({src.partition: 7})
    assert [r.offset for r in src.poll(10, 0)] == [7, 8, 9]
    assert src.exhausted


def test_paced_file_source_releases_records_when_their_event_time_is_due(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(f'{{"model": "m", "id": {i}, "ts": {100 + 10 * i}, "prediction": 1}}' for i in range(4)))
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    src = FileSource(path, pace=10.0, clock=lambda: now[0], sleep=sleep)  # 10 s of event time per second
    assert [r.offset for r in src.poll(10, 5.0)] == [0]
    assert [r.offset for r in src.poll(10, 5.0)] == [1] and now[0] == 1.0
    now[0] = 2.5
    assert [r.offset for r in src.poll(10, 5.0)] == [2]
    assert src.poll(10, 0.2) == [] and now[0] == 2.7  # waits at most the timeout
    assert [r.offset for r in src.poll(10, 5.0)] == [3]
    assert src.exhausted
