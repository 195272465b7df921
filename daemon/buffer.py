"""The recent labeled events of one model, kept for retraining as Parquet segments on disk.

Rows arrive through :meth:`add` and wait in memory until :meth:`flush` (called before the
store's checkpoint transaction) writes them as one segment; only then do they leave memory, so
the buffer's memory is bounded by one checkpoint interval, whatever ``max_rows`` is. Segments
wholly older than the newest ``max_rows`` rows are deleted. On restart, rows past the index the
checkpoint recorded are dropped, since the source replays them.

>>> import tempfile
>>> from daemon.join import LabeledRows
>>> buf = LabeledBuffer(tempfile.mkdtemp(), max_rows=3)
>>> for i in range(5): buf.extend(LabeledRows.of([(i, float(i), str(i), {"x": float(i)}, {}, 1, None, i % 2)]))
>>> buf.flush(); frame = buf.frame(); list(frame["x"]), list(frame["__label"])
([2.0, 3.0, 4.0], [0, 1, 0])
>>> LabeledBuffer(buf.root, max_rows=3, upto=3).frame()["__index"].tolist()
[1, 2, 3]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from daemon.join import LabeledRows

DEFAULT_MAX_ROWS = 50_000
"""Labeled rows kept per model unless a retrain action asks for more."""

MAX_SEGMENTS = 64
"""Segments before the oldest are merged, so a restart or an export reads few files."""


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    first: int
    last: int
    rows: int


class LabeledBuffer:
    def __init__(self, root: str | Path, max_rows: int = DEFAULT_MAX_ROWS, upto: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._unflushed: list[LabeledRows] = []
        self._segments: list[Segment] = []
        self._load(upto)

    def __len__(self) -> int:
        return min(self.max_rows, sum(s.rows for s in self._segments) + sum(map(len, self._unflushed)))

    @property
    def last_index(self) -> int:
        if self._unflushed:
            return self._unflushed[-1].index[-1]
        return self._segments[-1].last if self._segments else -1

    def extend(self, rows: LabeledRows) -> None:
        """Add labeled rows (kept in memory until the next :meth:`flush`)."""
        if len(rows):
            self._unflushed.append(rows)

    def frame(self, upto: int | None = None, last: int | None = None) -> pd.DataFrame:
        """The newest ``last`` rows (default ``max_rows``) with index <= ``upto``, oldest first."""
        want = min(last or self.max_rows, self.max_rows)
        parts: list[pd.DataFrame] = []
        pending = LabeledRows.concat(self._unflushed) if self._unflushed else None
        if pending is not None and upto is not None:
            pending = pending.upto(upto)
        have = len(pending) if pending is not None else 0
        if pending is not None and have:
            parts.append(rows_table(pending).to_pandas())
        for seg in reversed(self._segments):
            if have >= want:
                break
            if upto is not None and seg.first > upto:
                continue
            part = pd.read_parquet(seg.path)
            if upto is not None and seg.last > upto:
                part = part[part["__index"] <= upto]
            parts.insert(0, part)
            have += len(part)
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        return frame.iloc[-want:].reset_index(drop=True)

    def flush(self) -> None:
        """Write the rows added since the last flush as a new segment, then forget them."""
        if not self._unflushed:
            return
        self._segments.append(self._write(rows_table(LabeledRows.concat(self._unflushed))))
        self._unflushed = []
        self._prune()

    def _write(self, table: pa.Table | pd.DataFrame) -> Segment:
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        index = table.column("__index")
        first, last = int(index[0].as_py()), int(index[-1].as_py())
        path = self.root / f"{first:012d}.parquet"
        tmp = path.with_suffix(".tmp")
        # Dictionary encoding pays for repeated strings only; on float columns it costs half the write.
        strings = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        pq.write_table(table, tmp, use_dictionary=strings)
        tmp.replace(path)
        return Segment(path, first, last, table.num_rows)

    def _prune(self) -> None:
        total = sum(s.rows for s in self._segments)
        while len(self._segments) > 1 and total - self._segments[0].rows >= self.max_rows:
            total -= self._segments[0].rows
            self._segments.pop(0).path.unlink(missing_ok=True)
        if len(self._segments) > MAX_SEGMENTS:
            half = self._segments[: MAX_SEGMENTS // 2]
            merged = self._write(pd.concat([pd.read_parquet(s.path) for s in half], ignore_index=True))
            for s in half:
                if s.path != merged.path:
                    s.path.unlink(missing_ok=True)
            self._segments = [merged, *self._segments[MAX_SEGMENTS // 2 :]]

    def _load(self, upto: int | None) -> None:
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink()
        for path in sorted(self.root.glob("*.parquet")):
            first = int(path.stem)
            if upto is not None and first > upto:
                path.unlink()  # written after the last checkpoint: the source replays these rows
                continue
            index = pq.read_table(path, columns=["__index"]).column("__index").to_numpy()
            if upto is not None and index[-1] > upto:
                frame = pd.read_parquet(path)
                frame = frame[frame["__index"] <= upto]
                frame.to_parquet(path, index=False)
                index = frame["__index"].to_numpy()
            if len(index):
                self._segments.append(Segment(path, int(index[0]), int(index[-1]), len(index)))
            else:
                path.unlink()
        self._prune()


def rows_table(rows: LabeledRows) -> pa.Table:
    """Labeled rows as one Arrow table: features under their names, then ``__label``, ``__prediction``,
    ``__id``, ``__ts``, ``__index`` and ``__attr_<name>``. Arrow converts the dicts in C++."""
    meta = {"__label": rows.label, "__prediction": rows.prediction, "__id": rows.ids, "__ts": rows.ts,
            "__index": rows.index}
    try:
        table = pa.Table.from_pylist(rows.features)
        for name, values in meta.items():
            table = table.append_column(name, pa.array(values))
        if any(rows.attributes):
            attrs = pa.Table.from_pylist(rows.attributes)
            for name in attrs.column_names:
                table = table.append_column(f"__attr_{name}", attrs.column(name))
        return table
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # Mixed types in one column (a type violation upstream): let pandas store it as text.
        frame = pd.DataFrame.from_records([{**f, **{k: v[i] for k, v in meta.items()},
                                            **{f"__attr_{a}": x for a, x in attrs.items()}}
                                           for i, (f, attrs) in enumerate(zip(rows.features, rows.attributes,
                                                                              strict=True))])
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = frame[col].map(lambda v: v if v is None or isinstance(v, str) else str(v))
        return pa.Table.from_pandas(frame, preserve_index=False)
