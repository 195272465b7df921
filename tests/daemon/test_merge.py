"""Predictions and labels in separate files: merged by event time, the same as one interleaved file."""

from __future__ import annotations

from pathlib import Path

import orjson
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.merge import MergedSource
from driftwarden.daemon.io.sources import FileSource
from driftwarden.daemon.runtime import Daemon
from driftwarden.policies.loader import load_policy

POLICY = """version: 1
model: m
monitors:
  acc: {kind: performance, window: {events: 500}, threshold: 0.8}
  err: {kind: adwin, series: error}
rules:
  - {name: low, when: "acc.drift", do: alert}
"""


def streams(tmp: Path) -> tuple[Path, Path, Path]:
    preds, labels, both = [], [], []
    for i in range(3000):
        p = (i, orjson.dumps({"model": "m", "id": i, "ts": float(i), "features": {"x": i % 7}, "prediction": 1}))
        lab = (i + 5.5, orjson.dumps({"model": "m", "id": i, "ts": i + 5.5, "label": 1 if i < 1500 else 0}))
        preds.append(p[1])
        labels.append(lab[1])
        both += [p, lab]
    both.sort(key=lambda t: t[0])
    (tmp / "preds.jsonl").write_bytes(b"\n".join(preds))
    (tmp / "labels.jsonl").write_bytes(b"\n".join(labels))
    (tmp / "both.jsonl").write_bytes(b"\n".join(v for _, v in both))
    return tmp / "preds.jsonl", tmp / "labels.jsonl", tmp / "both.jsonl"


def decisions(source, tmp: Path, name: str, batch: int = 1000, count: int | None = None) -> list[tuple[str, int]]:
    (tmp / "p.yaml").write_text(POLICY)
    out: list[dict] = []
    daemon = Daemon(
        Settings(state_dir=tmp / name, batch_size=batch), source, [load_policy(tmp / "p.yaml")], listener=out.append
    )
    daemon.run(count=count)
    daemon.close()
    return [(d["rule"], d["at"]) for d in out if d["type"] == "decision"]


def test_two_files_merge_like_one_interleaved_file(tmp_path: Path) -> None:
    preds, labels, both = streams(tmp_path)
    single = decisions(FileSource(both), tmp_path, "single")
    assert len(single) == 3
    for batch in (1000, 77):
        assert (
            decisions(MergedSource([FileSource(preds), FileSource(labels)]), tmp_path, f"merged{batch}", batch)
            == single
        )


def test_merged_source_resumes_from_per_file_positions(tmp_path: Path) -> None:
    preds, labels, both = streams(tmp_path)
    whole = decisions(FileSource(both), tmp_path, "whole")
    first = decisions(MergedSource([FileSource(preds), FileSource(labels)]), tmp_path, "split", count=2500)
    rest = decisions(MergedSource([FileSource(preds), FileSource(labels)]), tmp_path, "split")
    assert first + rest == whole
