"""The labeled-data buffer: what a retrain reads back after segments merge and after a restart."""

from __future__ import annotations

from pathlib import Path

from driftwarden.daemon.state.label_join import LabeledRows
from driftwarden.daemon.state.labeled_buffer import MAX_SEGMENTS, LabeledBuffer


def rows(start: int, n: int, features: dict | None = None) -> LabeledRows:
    return LabeledRows.of(
        [
            (i, float(i), f"e{i}", {"x": float(i), **(features or {})}, {"group": "a"}, i % 2, None, i % 3)
            for i in range(start, start + n)
        ]
    )


def test_many_segments_merge_and_keep_every_row_and_column(tmp_path: Path) -> None:
    buf = LabeledBuffer(tmp_path, max_rows=10_000)
    for k in range(MAX_SEGMENTS + 5):
        # from segment 10 on a new feature appears, and one segment carries a type violation as text
        extra = {"late": k} if k >= 10 else {}
        if k == 20:
            extra = {"late": "not a number"}
        buf.extend(rows(k * 10, 10, extra))
        buf.flush()
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) <= MAX_SEGMENTS
    frame = buf.frame()
    assert frame["__index"].tolist() == list(range((MAX_SEGMENTS + 5) * 10))
    assert frame["x"].tolist() == [float(i) for i in range((MAX_SEGMENTS + 5) * 10)]
    assert frame["late"].iloc[:100].isna().all()
    assert frame["__attr_group"].eq("a").all()
    assert sorted(frame["__label"].unique().tolist()) == [0, 1, 2]


def test_oldest_segments_go_once_max_rows_newer_rows_exist(tmp_path: Path) -> None:
    buf = LabeledBuffer(tmp_path, max_rows=25)
    for k in range(6):
        buf.extend(rows(k * 10, 10))
        buf.flush()
    assert len(buf) == 25
    assert buf.frame()["__index"].tolist() == list(range(35, 60))
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "000000000030-000000000039-10.json",
        "000000000040-000000000049-10.json",
        "000000000050-000000000059-10.json",
    ]


def test_restart_drops_rows_past_the_checkpoint_and_rewrites_a_straddling_segment(tmp_path: Path) -> None:
    buf = LabeledBuffer(tmp_path)
    for k in range(3):
        buf.extend(rows(k * 10, 10))
        buf.flush()
    buf.extend(rows(30, 5))  # never flushed: lost with the process, replayed by the source
    again = LabeledBuffer(tmp_path, upto=14)
    assert again.frame()["__index"].tolist() == list(range(15))
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "000000000000-000000000009-10.json",
        "000000000010-000000000014-5.json",
    ]
    assert again.last_index == 14


def test_frame_reads_unflushed_rows_and_respects_upto_and_last(tmp_path: Path) -> None:
    buf = LabeledBuffer(tmp_path)
    buf.extend(rows(0, 10))
    buf.flush()
    buf.extend(rows(10, 10))
    assert buf.frame()["__index"].tolist() == list(range(20))
    assert buf.frame(upto=12)["__index"].tolist() == list(range(13))
    assert buf.frame(last=4)["__index"].tolist() == [16, 17, 18, 19]


def test_a_mixed_type_column_reads_as_text_and_exports_to_parquet(tmp_path: Path) -> None:
    buf = LabeledBuffer(tmp_path)
    buf.extend(rows(0, 3, {"plan": 1}))
    buf.extend(rows(3, 2, {"plan": "pro"}))
    buf.flush()
    frame = buf.frame()
    assert frame["plan"].tolist() == ["1", "1", "1", "pro", "pro"]
    frame.to_parquet(tmp_path / "export.parquet")


def test_segments_written_by_earlier_versions_as_parquet_are_read(tmp_path: Path) -> None:
    import pandas as pd

    legacy = pd.DataFrame(
        {
            "x": [1.0, 2.0],
            "__label": [0, 1],
            "__prediction": [1, 1],
            "__id": ["a", "b"],
            "__ts": [1.0, 2.0],
            "__index": [4, 5],
            "__attr_group": ["f", "m"],
        }
    )
    legacy.to_parquet(tmp_path / "000000000004.parquet", index=False)
    frame = LabeledBuffer(tmp_path).frame()
    assert frame[["x", "__label", "__index", "__attr_group"]].to_dict("list") == {
        "x": [1.0, 2.0],
        "__label": [0, 1],
        "__index": [4, 5],
        "__attr_group": ["f", "m"],
    }
    assert [p.name for p in tmp_path.iterdir()] == ["000000000004-000000000005-2.json"]
